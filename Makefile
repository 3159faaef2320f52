# Quick start: `make reproduce` (the default pipeline) and `make test`. Both create .venv if needed.
VENV ?= .venv
PYTHON ?= $(shell command -v python3.11 || command -v python3)
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: reproduce test test-slow test-all faults lint report clean-results chromium browser screenshot retime-speed retrain-accuracy mlflow-screenshot fashion-mnist

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## reproduce: run the DVC pipeline (every paper in params.yaml, the demos) and render reports/.
## The MLflow store is an output DVC cannot track: without it (a fresh clone) every stage is
## forced, so the measurements are logged again; with it, unchanged stages are skipped.
## The stages share one local Ray instance (repro.execution.shared) unless an address is set.
reproduce: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m repro.execution.shared \
		$(BIN)/dvc repro $(if $(wildcard mlflow.db),,--force)

## test: the default test suite (slow tests excluded; `make test-slow` runs them)
test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

## faults: fault injection (MLflow server killed, Ray node lost, workers killed, checkpoints
## corrupted, dvc repro interrupted) and the seeded fuzz of every reader; writes
## benchmarks/results/faults.csv and fuzz.csv. CI runs the fast subset within `make test`.
faults: $(STAMP)
	$(BIN)/python -m pytest -q -m faults -p no:cacheprovider tests --faults-csv benchmarks/results/faults.csv
	$(BIN)/python -m benchmarks.fuzz --inputs 1000 --out benchmarks/results/fuzz.csv

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m ''

## lint: ruff, and the architecture's import contracts (pyproject.toml [tool.importlinter])
lint: $(STAMP)
	$(BIN)/ruff check repro pipelines benchmarks tests
	$(BIN)/ruff format --check repro pipelines benchmarks tests
	$(BIN)/lint-imports

## chromium: Debian's chromium package for the browser tests, installed when absent (apt-get,
## as root or through sudo). Where it cannot be installed the browser tests are skipped, saying so.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	{ echo "installing Debian's chromium (apt-get install chromium)"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 || \
	  { $(SUDO) apt-get update -q >/dev/null 2>&1 && \
	    $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1; } || \
	  echo "could not install chromium: the browser tests will be skipped"; }

## fashion-mnist: Debian's dataset-fashion-mnist (Fashion-MNIST's IDX files under
## /usr/share/datasets/fashion-mnist, params.yaml data.fashion_mnist), installed when absent
## (apt-get, as root or through sudo without a prompt). Where it cannot be installed the claims of
## repro/papers/fashion_mnist.yaml stay not-run and its real-data tests are skipped, saying so.
FASHION_MNIST := /usr/share/datasets/fashion-mnist
APT := $(if $(SUDO),sudo -n,)
fashion-mnist:
	@test -d $(FASHION_MNIST) || \
	{ echo "installing Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist)"; \
	  $(APT) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q dataset-fashion-mnist \
	    >/dev/null 2>&1 || \
	  { $(APT) apt-get update -q >/dev/null 2>&1 && \
	    $(APT) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q dataset-fashion-mnist \
	      >/dev/null 2>&1; } || \
	  echo "could not install dataset-fashion-mnist: its claims stay not-run, its tests skip"; }

## browser: the report in headless Chromium (every chart rendered, console empty, screenshot
## not blank); .ci/run runs it
browser: $(STAMP) chromium
	$(BIN)/python -m pytest -q -m browser tests/test_browser.py tests/test_mlflow_ui.py

## screenshot: check reports/index.html in headless Chromium and save reports/screenshot.png
screenshot: $(STAMP) chromium
	$(BIN)/repro screenshot --page reports/index.html --out reports/screenshot.png

## mlflow-screenshot: the vgg experiment's runs in the MLflow UI over ./mlflow.db -> reports/mlflow_runs.png
MLFLOW_PORT ?= 5055
mlflow-screenshot: $(STAMP) chromium
	@$(BIN)/mlflow server --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 \
		--port $(MLFLOW_PORT) --workers 1 >/tmp/repro-mlflow-ui.log 2>&1 & pid=$$!; \
	url=$$($(BIN)/python -c "from repro import tracking; import time; \
		uri = 'http://127.0.0.1:$(MLFLOW_PORT)'; \
		exec('for _ in range(90):\n if tracking.reachable(uri, 1): break\n time.sleep(1)'); \
		print(tracking.experiment_links(uri, ['vgg'])['vgg'])"); \
	$(BIN)/repro screenshot --page "$$url" --out reports/mlflow_runs.png --width 1400 \
		--height 900; status=$$?; kill $$pid; exit $$status

## retime-speed: re-time the papers' speed claims here (the DVC speed stage; ~10 min on 2 cores)
retime-speed: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" REPRO_RETIME_SPEED=always $(BIN)/dvc repro --force --single-item speed
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dvc repro report

## retrain-accuracy: train Fashion-MNIST's recipes here and judge their claims (the DVC accuracy
## stage, ~15 min on 2 cores) into benchmarks/accuracy_claims/, then render the report
retrain-accuracy: $(STAMP) fashion-mnist
	PATH="$(abspath $(BIN)):$$PATH" REPRO_RETRAIN_ACCURACY=always $(BIN)/dvc repro --force --single-item accuracy
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dvc repro report

## report: re-render reports/ from MLflow alone
report: $(STAMP)
	$(BIN)/repro report --from mlflow
