"""repro/papers/fashion_mnist.yaml: the README's rows encoded as top-1 error, the TensorFlow
tutorial's recipe against the convnet.py the package ships, the costly rows gated on a GPU or a
budget, and the plan with the dataset absent and present (never an `error` for a missing root).
The checks against the package's own files skip, with the reason, where it is not installed."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from repro.claims import Claim, load_paper
from repro.config import AccuracySettings
from repro.data.synth import write_mnist
from repro.recipes import Source
from repro.runner.plan import plan_paper
from repro.runner.settings import RunSettings
from repro.suites.dataset import dataset_not_run_reason, measure_dataset_claims

PAPER = load_paper("fashion_mnist")
DOC = Path("/usr/share/doc/dataset-fashion-mnist")
ROOT = Path("/usr/share/datasets/fashion-mnist")
TRAIN_IMAGES = 60_000
# accuracy claim -> a word of its README row that no other row of the table shares with it
ROW_KEYS = {
    "tf-cnn-accuracy": "Tensorflow's doc",
    "tf-cnn-accuracy-cpu-budget": "Tensorflow's doc",
    "lenet5-2conv-accuracy": "Kashif Rasul",
    "alexnet-accuracy": "AlexNet with Triplet loss",
    "googlenet-accuracy": "GoogleNet with cross-entropy loss",
    "vgg16-accuracy": "VGG16 26M parameters",
    "resnet18-accuracy": "|ResNet18 |",
}
COSTLY = {"alexnet-accuracy", "googlenet-accuracy", "vgg16-accuracy", "resnet18-accuracy"}


def accuracy_claims():
    return [c for c in PAPER.claims if c.kind == "accuracy"]


def row_accuracy(row: str) -> float:
    match = re.search(r": (0\.\d+)$", row)
    assert match, f"row {row!r} ends with the README's accuracy"
    return float(match.group(1))


def test_every_claim_cites_the_paper_and_its_readme() -> None:
    assert PAPER.venue == "arXiv:1708.07747" and PAPER.year == 2017
    for item in (*PAPER.claims, *PAPER.recipes):
        assert not item.source.seed and "arXiv:1708.07747" in item.source.document
        assert "README" in item.source.document


def test_accuracy_rows_are_top1_error_within_one_point() -> None:
    assert {c.id for c in accuracy_claims()} == set(ROW_KEYS)
    for claim in accuracy_claims():
        assert claim.metric == "top1_error" and claim.unit == "%"
        assert claim.value == pytest.approx(100 * (1 - row_accuracy(claim.row)), abs=1e-9)
        assert claim.tolerance.abs == 1.0 and not claim.tolerance.rel
        recipe = PAPER.recipe_for(claim)
        assert recipe is not None and claim.model is not None
        assert recipe.model == claim.model.name
        assert recipe.dataset == claim.dataset == "fashion_mnist"
        assert (recipe.train_split, recipe.eval_split) == ("train", "test")
        assert recipe.evaluation.metric == "top1_error" and recipe.evaluation.crops == 1


def test_the_lenet_claim_says_its_network_is_not_the_rows() -> None:
    claim = next(c for c in PAPER.claims if c.id == "lenet5-2conv-accuracy")
    assert "differs from the row's" in claim.note
    assert "harness's choice" in PAPER.recipe_for(claim).note


def test_the_cpu_budget_tf_cnn_claim_says_how_its_recipe_differs() -> None:
    row, budget = (next(c for c in PAPER.claims if c.id == i) for i in ROW_KEYS if "tf-cnn" in i)
    assert (budget.row, budget.value, budget.model) == (row.row, row.value, row.model)
    assert "differs from" in budget.note and "not tuned on the" in budget.note
    faithful, cheap = PAPER.recipe_for(row), PAPER.recipe_for(budget)
    same = ("model", "dataset", "dropout", "input_size", "augmentation", "evaluation", "schedule")
    assert all(getattr(faithful, k) == getattr(cheap, k) for k in same)
    assert cheap.optimizer.name == "adam" and not cheap.needs_gpu
    # 10 epochs of batch 100: 6,000 steps where the row's recipe takes 200,000
    assert cheap.epochs * TRAIN_IMAGES / cheap.batch_size == 6000
    assert faithful.epochs * TRAIN_IMAGES / faithful.batch_size == pytest.approx(200_000, abs=1)


def test_costly_rows_train_only_with_a_gpu_or_a_budget() -> None:
    for claim in accuracy_claims():
        recipe = PAPER.recipe_for(claim)
        if claim.id in COSTLY or claim.id == "tf-cnn-accuracy":
            assert recipe.needs_gpu, claim.id
            reason = recipe.cost_reason(use_gpu=False)
            assert reason and recipe.name in reason and "accuracy.use_gpu" in reason
            assert "accuracy.epochs" in reason and "Cost:" in recipe.note
            assert recipe.cost_reason(use_gpu=True) is None
            assert recipe.cost_reason(use_gpu=False, epochs=2) is None
        else:
            assert not recipe.needs_gpu and recipe.cost_reason(use_gpu=False) is None


def test_source_names_exactly_one_origin() -> None:
    assert Source(document="a README", section="s").cited == "a README"
    assert Source(seed="000_x.txt", section="s").cited == "000_x.txt"
    for bad in ({"section": "s"}, {"seed": "000_x.txt", "document": "a README", "section": "s"}):
        with pytest.raises(ValidationError, match="exactly one of `seed` and `document`"):
            Source.model_validate(bad)
    # a seed source dumps as it did before `document` existed (reports, MLflow params)
    assert Source(seed="000_x.txt", section="s").model_dump() == {
        "seed": "000_x.txt",
        "section": "s",
    }
    assert "needs_gpu" not in PAPER.recipes[1].model_dump()  # the LeNet-5 recipe: no flag
    assert PAPER.recipes[0].model_dump()["needs_gpu"] is True


def test_without_the_dataset_its_claims_are_not_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REPRO_DATA_FASHION_MNIST", raising=False)
    absent = tmp_path / "absent"
    settings = RunSettings(
        ("analytic", "dataset", "accuracy"),
        {"fashion_mnist": str(absent)},
        accuracy=AccuracySettings(),
    )
    plan = plan_paper(PAPER, settings)
    assert [c.id for c in plan.of("analytic")] == ["vgg16-params"]
    assert not plan.of("dataset") and not plan.of("accuracy")
    assert len(plan.not_run) == len(PAPER.claims) - 1
    for result in plan.not_run:
        assert result.verdict == "not-run"
        assert result.note.startswith(f"dataset not present: fashion_mnist at {absent}")


def test_with_a_root_each_claim_runs_or_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REPRO_DATA_FASHION_MNIST", raising=False)
    settings = RunSettings(
        ("analytic", "dataset", "accuracy"),
        {"fashion_mnist": str(tmp_path)},
        accuracy=AccuracySettings(),
    )
    plan = plan_paper(PAPER, settings)
    planned = {c.id for suite in ("dataset", "accuracy") for c in plan.of(suite)}
    reasons = {r.claim_id: r.note for r in plan.not_run}
    assert planned.isdisjoint(reasons)
    for claim in PAPER.claims:
        if claim.kind == "analytic":
            continue
        assert claim.id in planned or reasons[claim.id], claim.id
        assert not reasons.get(claim.id, "").startswith("dataset not present"), claim.id
    if "image-side" in reasons:  # until the dataset suite measures image sides
        assert reasons["image-side"].startswith("the dataset suite counts")
    # on a CPU without a budget, the costly rows say why and LeNet-5 trains
    assert "lenet5-2conv-accuracy" in planned
    for claim_id in (*COSTLY, "tf-cnn-accuracy"):
        assert "too costly for a CPU" in reasons[claim_id], claim_id
    budget = RunSettings(
        ("accuracy",), {"fashion_mnist": str(tmp_path)}, accuracy=AccuracySettings(epochs=1)
    )
    assert {c.id for c in plan_paper(PAPER, budget).of("accuracy")} >= {"tf-cnn-accuracy", *COSTLY}


def test_a_dataset_claim_counts_the_split_its_params_name(tmp_path: Path) -> None:
    """`params: {split: test}` counts the test split (the default is train), on a tiny MNIST
    set in the same IDX format."""
    root = write_mnist(tmp_path / "mnist", per_split={"train": 9, "test": 4})
    base = next(c for c in PAPER.claims if c.id == "test-images").model_dump()
    claims = [
        Claim.model_validate({**base, "id": split, "dataset": "mnist", "value": value, **extra})
        for split, value, extra in (
            ("test", 4, {}),
            ("train", 9, {"params": {"split": "train"}}),
            ("default", 9, {"params": {}}),
        )
    ]
    outcome = measure_dataset_claims("p", claims, {"mnist": str(root)})
    assert {r.claim_id: (r.verdict, r.measured) for r in outcome.results} == {
        "test": ("reproduced", "4"),
        "train": ("reproduced", "9"),
        "default": ("reproduced", "9"),
    }


# --- against the package's own files (skipped where dataset-fashion-mnist is not installed) ---


def _doc(name: str) -> str:
    path = DOC / name
    if not path.is_file():
        pytest.skip(f"{path} not present (install it: make fashion-mnist)")
    return gzip.decompress(path.read_bytes()).decode()


def test_the_readme_table_holds_each_row() -> None:
    readme = _doc("README.md.gz")
    table = [line for line in readme.splitlines() if line.startswith("|")]
    for claim in accuracy_claims():
        key, accuracy = ROW_KEYS[claim.id], row_accuracy(claim.row)
        (line,) = [x for x in table if key in x and f"{accuracy}" in x.replace(" ", "")]
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert float(cells[2]) == accuracy, line  # the "Fashion test accuracy" column
    assert "60,000 examples" in readme and "10,000 examples" in readme
    assert "28x28 grayscale image" in readme and "10 classes" in readme


def test_the_tf_cnn_recipe_is_convnet_py() -> None:
    code = _doc("benchmark/convnet.py.gz")

    def number(pattern: str) -> float:
        (found,) = re.findall(pattern, code)
        return float(found)

    recipe = next(r for r in PAPER.recipes if r.model == "tf_cnn")
    assert "tf.train.GradientDescentOptimizer(learning_rate=" in code
    assert recipe.optimizer.name == "sgd" and recipe.optimizer.momentum == 0
    assert recipe.optimizer.weight_decay == 0 and recipe.schedule.name == "constant"
    assert recipe.optimizer.lr == number(r"GradientDescentOptimizer\(learning_rate=([\d.]+)\)")
    batch = number(r"batch_size=(\d+),\s*num_epochs=None")
    assert recipe.batch_size == batch
    steps = number(r"steps=(\d+)\)") * number(r"for j in range\((\d+)\)")
    assert recipe.epochs == pytest.approx(steps * batch / TRAIN_IMAGES, abs=0.005)
    assert recipe.dropout == number(r"inputs=dense, rate=([\d.]+)")
    assert "validation_size=0" in code  # trained on all 60,000 training images
    # the network: two 5x5 "same" ReLU convs of 32 and 64, 2x2/2 pools, dense 1024 ReLU, 10
    assert re.findall(r"filters=(\d+)", code) == ["32", "64"]
    assert (
        code.count('kernel_size=[5, 5],\n        padding="same",\n        activation=tf.nn.relu')
        == 2
    )
    assert code.count("pool_size=[2, 2], strides=2") == 2
    assert "units=1024, activation=tf.nn.relu" in code and "units=10)" in code


def test_real_data_dataset_claims() -> None:
    """The dataset claims on the installed set, once the dataset suite reads it."""
    if not ROOT.is_dir():
        pytest.skip(f"{ROOT} not present (install it: make fashion-mnist)")
    claims = [c for c in PAPER.claims if c.kind == "dataset" and c.id != "image-side"]
    reason = next(filter(None, map(dataset_not_run_reason, claims)), None)
    if reason is not None:
        pytest.skip(f"not measurable yet: {reason}")
    outcome = measure_dataset_claims("fashion_mnist", claims, {"fashion_mnist": str(ROOT)})
    verdicts = {r.claim_id: (r.verdict, r.measured) for r in outcome.results}
    assert verdicts == {
        "train-images": ("reproduced", "60000"),
        "test-images": ("reproduced", "10000"),
        "classes": ("reproduced", "10"),
    }, verdicts


def test_make_installs_it_and_ci_never_fails_on_it(repo: Path) -> None:
    makefile = (repo / "Makefile").read_text()
    target = makefile[makefile.index("\nfashion-mnist:") :].split("\n\n")[0]
    assert "fashion-mnist" in makefile.split(".PHONY:")[1].splitlines()[0]
    assert "test -d $(FASHION_MNIST) ||" in target  # nothing to do when it is there
    assert target.count("apt-get install -y -q dataset-fashion-mnist") == 2  # before/after update
    assert "apt-get update" in target
    assert target.rstrip().endswith('echo "could not install dataset-fashion-mnist: its claims '
                                    'stay not-run, its tests skip"; }')  # fmt: skip
    assert f"FASHION_MNIST := {ROOT}" in makefile
    steps = [
        line for line in (repo / ".ci/run").read_text().splitlines() if line.startswith("make")
    ]
    assert steps.index("make fashion-mnist") < steps.index("make test")
