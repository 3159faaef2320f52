"""End to end: `repro run` through Ray and MLflow, the report from files and from MLflow, and the
errors a user meets (malformed paper, unknown model, unreachable Ray or MLflow)."""

from __future__ import annotations

import csv
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import ray

from repro import tracking
from repro.cli import main
from repro.errors import UnknownModelError
from repro.runner import RunSettings, run_papers
from tests.clones import dvc as dvc_path
from tests.clones import small_clone


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture()
def ray_local():
    """Ray started by the code under test, shut down afterwards so later tests start clean."""
    ray.shutdown()
    yield
    ray.shutdown()


def test_run_through_ray_and_mlflow_then_report(
    tiny_paper_dir: Path, tmp_path: Path, ray_local: None
) -> None:
    out = tmp_path / "measurements"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    settings = RunSettings(out_dir=out, tracking_uri=uri, papers_dir=tiny_paper_dir, num_cpus=2)
    runs = run_papers(["alpha", "beta"], settings)
    assert [r.paper for r in runs] == ["alpha", "beta"]
    assert runs[0].meta["ray_address"] == "local"
    alpha = {r["claim_id"]: r for r in _rows(out / "alpha.csv")}
    assert alpha["params"]["verdict"] == "reproduced"
    assert alpha["shape"]["verdict"] == "reproduced" and alpha["shape"]["measured"] == "10"
    assert alpha["top5"]["verdict"] == "not-run"
    assert "dataset not present" in alpha["top5"]["note"]
    beta = _rows(out / "beta.csv")
    assert beta[0]["verdict"] == "deviates" and "one parameter too many" in beta[0]["note"]

    from_mlflow = tracking.load_results(uri)
    assert {(r["paper"], r["claim_id"], r["verdict"]) for r in from_mlflow} == {
        ("alpha", "params", "reproduced"),
        ("alpha", "shape", "reproduced"),
        ("alpha", "top5", "not-run"),
        ("beta", "wrong", "deviates"),
    }

    client = mlflow.tracking.MlflowClient(uri)
    exp = client.get_experiment_by_name("repro/alpha")
    runs_ = client.search_runs([exp.experiment_id])
    measured = [r for r in runs_ if r.data.tags.get("model_key") == "lenet5"]
    assert len(measured) == 1
    assert measured[0].data.metrics["params"] == 60000
    assert measured[0].data.tags["claim.params.verdict"] == "reproduced"
    assert measured[0].data.params["model"] == "lenet5"

    report = tmp_path / "report"
    args = ["report", "--measurements", str(out), "--out", str(report), "--tracking-uri", uri]
    assert main(args) == 0
    assert len(_rows(report / "results.csv")) == 4
    assert {"paper-alpha.svg", "paper-beta.svg", "summary.svg"} <= {
        p.name for p in (report / "charts").glob("*.svg")
    }
    assert client.get_experiment_by_name("repro/report") is not None  # the report, logged
    md = (report / "README.md").read_text()
    assert "| [alpha](#alpha) | 2 | 0 | 1 | 0 | 3 |" in md
    assert "Stage timings" in md and "measure@alpha" in md
    html = (report / "index.html").read_text()
    assert "<style>" in html and "deviates" in html and "http" not in html.split("<body>")[0]

    report2 = tmp_path / "report2"
    code = main(["report", "--from", "mlflow", "--tracking-uri", uri, "--measurements",
                 str(tmp_path / "absent"), "--out", str(report2)])  # fmt: skip
    assert code == 0
    assert len(_rows(report2 / "results.csv")) == 4


def test_malformed_paper_keeps_earlier_results(
    tiny_paper_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m"
    run_papers(["alpha"], RunSettings(out_dir=out, papers_dir=tiny_paper_dir, use_ray=False))
    before = (out / "alpha.csv").read_text()
    (tiny_paper_dir / "alpha.yaml").write_text("paper: alpha\nclaims: [{table: T1}]\n")
    with pytest.raises(Exception) as err:
        run_papers(["alpha"], RunSettings(out_dir=out, papers_dir=tiny_paper_dir, use_ray=False))
    assert "alpha.yaml" in str(err.value) or "alpha.yaml" in err.value.paragraph()  # type: ignore[attr-defined]
    assert (out / "alpha.csv").read_text() == before


def test_cli_errors_are_one_paragraph(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    ray_local: None,
) -> None:
    monkeypatch.chdir(tmp_path)
    port = _free_port()
    code = main(["run", "lenet", "--no-mlflow", "--ray-address", f"127.0.0.1:{port}"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"cannot reach the Ray cluster at '127.0.0.1:{port}'" in err and "Fix:" in err
    assert "Traceback" not in err and err.count("\n") == 1
    assert not (tmp_path / "reports").exists()

    code = main(["run", "lenet", "--no-ray", "--tracking-uri", f"http://127.0.0.1:{port}"])
    err = capsys.readouterr().err
    assert code == 2 and "cannot reach the MLflow tracking server" in err and "Fix:" in err

    code = main(["run", "no_such_paper", "--no-ray", "--no-mlflow"])
    err = capsys.readouterr().err
    assert code == 2 and "no paper 'no_such_paper'" in err

    code = main(["models", "--layers", "resnet5O"])
    err = capsys.readouterr().err
    assert code == 2 and "unknown model 'resnet5O'" in err and "resnet50" in err


def test_unknown_model_in_paper_is_a_named_error(tiny_paper_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "m"
    run_papers(["beta"], RunSettings(out_dir=out, papers_dir=tiny_paper_dir, use_ray=False))
    before = (out / "beta.csv").read_text()
    text = (tiny_paper_dir / "beta.yaml").read_text().replace("model: lenet5", "model: lenet6")
    (tiny_paper_dir / "beta.yaml").write_text(text)
    with pytest.raises(UnknownModelError) as err:
        run_papers(["beta"], RunSettings(out_dir=out, papers_dir=tiny_paper_dir, use_ray=False))
    text = err.value.paragraph()
    assert "beta.yaml, entry claims[0] (wrong)" in text
    assert "unknown model 'lenet6'" in text and "lenet5" in text and "Fix:" in text
    assert (out / "beta.csv").read_text() == before


def test_unknown_layer_is_an_error_row_and_a_failing_exit(
    tiny_paper_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (tiny_paper_dir / "beta.yaml").read_text().replace("note:", "layer: C9, note:")
    (tiny_paper_dir / "beta.yaml").write_text(text)
    (run,) = run_papers(
        ["beta"], RunSettings(out_dir=tmp_path, papers_dir=tiny_paper_dir, use_ray=False)
    )
    (row,) = run.results
    assert row.verdict == "error" and "layer 'C9' is not a module of lenet5" in row.note
    assert (tmp_path / "beta.csv").exists()
    out = str(tmp_path / "cli")
    code = main(
        [
            "run",
            "beta",
            "--no-ray",
            "--no-mlflow",
            "--out",
            out,
            "--papers-dir",
            str(tiny_paper_dir),
        ]
    )
    assert code == 1
    assert "1 claim(s) could not be measured" in capsys.readouterr().err
    assert (tmp_path / "cli" / "beta.csv").exists()


def test_papers_and_models_listing(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["papers", "vgg", "--claims"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("vgg: ") and "Table 2" in out
    assert main(["models", "--paper", "vgg"]) == 0
    out = capsys.readouterr().out
    assert "vgg_d" in out and "vgg_a_lrn" in out


def test_papers_reads_papers_dir_and_checks_every_file_first(
    tiny_paper_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["papers", "--papers-dir", str(tiny_paper_dir)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("alpha: A tiny paper") and "beta: Another tiny paper" in out
    (tiny_paper_dir / "gamma.yaml").write_text("paper: gamma\nclaims: [{table: T1}]\n")
    assert main(["papers", "--papers-dir", str(tiny_paper_dir)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # no listing before the error
    assert "gamma.yaml" in captured.err and captured.err.startswith("error: ")
    assert main(["papers", "--papers-dir", str(tiny_paper_dir / "nowhere")]) == 2
    assert "is not a directory" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("git") is None, reason="git needed for dvc")
def test_dvc_pipeline_two_papers(repo: Path, tmp_path: Path) -> None:
    """`dvc repro` on a copy of the repository limited to two papers; a second run does nothing."""
    work = tmp_path / "clone"
    env = small_clone(repo, work, ["lenet", "cnn_basics"])
    dvc = dvc_path()
    first = subprocess.run([dvc, "repro"], cwd=work, capture_output=True, text=True, env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    results = _rows(work / "reports" / "results.csv")
    assert {r["paper"] for r in results} == {"lenet", "cnn_basics"}
    assert (work / "reports" / "index.html").exists() and (work / "mlflow.db").exists()
    readme = (work / "reports" / "README.md").read_text()
    assert "## Demonstrations" in readme and "demo@digits" in readme
    assert (work / "reports" / "datasets" / "index.json").exists()
    second = subprocess.run([dvc, "repro"], cwd=work, capture_output=True, text=True, env=env)
    assert second.returncode == 0
    assert "didn't change" in second.stdout and "Running stage" not in second.stdout


def test_local_run_prints_only_the_harness(tiny_paper_dir: Path, tmp_path: Path) -> None:
    """A local default run says what the harness has to say, not Ray's start-up banners."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    out = tmp_path / "m"
    argv = ["run", "alpha", "--papers-dir", str(tiny_paper_dir), "--no-mlflow", "--out", str(out)]
    proc = subprocess.run(
        [sys.executable, "-m", "repro.cli", *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Token authentication" not in proc.stderr
    assert proc.stdout.splitlines() == [
        "alpha: 1 not-run, 2 reproduced",
        f"measurements written to {out}",
    ]
