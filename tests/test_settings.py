"""The one settings model of params.yaml: unknown and misspelt keys, wrong types and bad
environment values are errors that name them; flag over environment over file over default."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines import datasets, demo, measure, report, speed
from repro import config
from repro.cli import main
from repro.config import load_settings, parse_settings
from repro.errors import ReproError

REPO = Path(__file__).resolve().parents[1]


def test_the_repositorys_params_yaml_is_valid() -> None:
    s = load_settings(REPO / "params.yaml", env={})
    assert "lenet" in s.papers and s.suites == ["analytic", "dataset"]
    assert s.tracking_uri == config.DEFAULT_TRACKING_URI and s.ray_address is None
    assert s.speed == config.SpeedSettings() and s.demos.digits_workers == [0]


def test_repro_run_with_a_misspelt_top_level_key_exits_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("papers: [lenet]\n\nsuits:\n  - analytic\n")
    assert main(["run", "lenet", "--plan", "--params", str(params)]) != 0
    err = capsys.readouterr().err
    assert f"{params}, line 3: unknown key `suits`" in err and "did you mean `suites`?" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "stage, argv",
    [(measure, ["lenet"]), (speed, []), (datasets, []), (demo, ["digits"]), (report, [])],
)
def test_every_dvc_stage_refuses_a_misspelt_key(
    stage, argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("params.yaml").write_text("suits: [analytic]\n")
    assert stage.main([*argv, "--params", "params.yaml"]) == 2
    err = capsys.readouterr().err
    assert "unknown key `suits`" in err and "`suites`" in err and "Traceback" not in err


def test_a_nested_misspelling_names_the_section_key_and_line() -> None:
    text = "papers: [lenet]\naccuracy:\n  workers: 1\n  batchsize: 8\n"
    with pytest.raises(ReproError) as err:
        parse_settings(text, "p.yaml", env={})
    assert err.value.cause == "p.yaml, line 4: unknown key `accuracy.batchsize`."
    assert err.value.fix.startswith("did you mean `batch_size`?")
    with pytest.raises(ReproError, match="unknown key `data.imagnet`") as err:
        parse_settings("data:\n  imagnet: /data\n", env={})
    assert "did you mean `imagenet`?" in err.value.fix


def test_of_several_problems_the_first_in_the_file_is_named() -> None:
    text = "papers: [lenet]\nsuits: [analytic]\naccuracy:\n  batchsize: 8\n"
    with pytest.raises(ReproError) as err:
        parse_settings(text, "p.yaml", env={})
    assert err.value.cause == "p.yaml, line 2: unknown key `suits` (and 1 more)."
    assert err.value.fix.startswith("did you mean `suites`?")


def test_a_wrong_type_names_the_field_and_the_expected_type() -> None:
    with pytest.raises(ReproError, match=r"line 2: `accuracy.seeds` expects an integer, found 'x'"):
        parse_settings("papers: []\naccuracy: {seeds: x}\n", env={})
    with pytest.raises(ReproError, match="`suites` expects a list, found 'analytic'"):
        parse_settings("suites: analytic\n", env={})
    with pytest.raises(ReproError, match="`ray.address` expects text"):
        parse_settings("ray: {address: 6379}\n", env={})
    with pytest.raises(ReproError, match="`speed.warmup` should be greater than or equal to 0"):
        parse_settings("speed: {warmup: -1}\n", env={})


@pytest.mark.parametrize(
    "variable, value, field",
    [
        ("REPRO_ACCURACY_SEEDS", "many", "accuracy.seeds"),
        ("REPRO_ACCURACY_USE_GPU", "perhaps", "accuracy.use_gpu"),
        ("REPRO_SPEED_MIN_REPEAT_S", "soon", "speed.min_repeat_s"),
        ("REPRO_RETIME_SPEED", "sometimes", "speed_stage.retime"),
    ],
)
def test_a_bad_environment_value_names_the_variable(variable: str, value: str, field: str) -> None:
    with pytest.raises(ReproError) as err:
        parse_settings("accuracy: {seeds: 2}\n", env={variable: value})
    assert err.value.cause.startswith(f"environment variable {variable}: `{field}`")
    assert repr(value) in err.value.cause and variable in err.value.fix


def test_flag_over_environment_over_file_over_default() -> None:
    text = "mlflow: {tracking_uri: 'sqlite:///file.db'}\naccuracy: {seeds: 3}\n"
    env = {"MLFLOW_TRACKING_URI": "sqlite:///env.db", "REPRO_ACCURACY_SEEDS": "4"}
    assert parse_settings("", env={}).tracking_uri == config.DEFAULT_TRACKING_URI
    assert parse_settings("", env={}).accuracy.seeds == 1
    assert parse_settings(text, env={}).tracking_uri == "sqlite:///file.db"
    assert parse_settings(text, env={}).accuracy.seeds == 3
    assert parse_settings(text, env=env).tracking_uri == "sqlite:///env.db"
    assert parse_settings(text, env=env).accuracy.seeds == 4
    flagged = parse_settings(text, env=env, tracking_uri="sqlite:///flag.db", seeds=5)
    assert flagged.tracking_uri == "sqlite:///flag.db" and flagged.accuracy.seeds == 5
    # an empty variable is unset; an empty value in the file is the default
    assert parse_settings("ray: {address: ''}\n", env={"RAY_ADDRESS": ""}).ray_address is None
    assert parse_settings("accuracy: {workers: }\n", env={}).accuracy.workers == 1


def test_weights_and_data_from_every_source(tmp_path: Path) -> None:
    f = tmp_path / "w.pt"
    f.write_bytes(b"x")
    env = {"REPRO_WEIGHTS_VGG_D": str(f), "REPRO_DATA_VOC2007": "/env/voc"}
    s = parse_settings(f"weights: {{alexnet: {f}}}\ndata: {{coco: /c}}\n", env=env)
    fashion = "/usr/share/datasets/fashion-mnist"  # the one root with a default (Debian's)
    assert s.data_roots == {"voc2007": "/env/voc", "coco": "/c", "fashion_mnist": fashion}
    assert sorted(s.accuracy_settings().weights) == ["alexnet", "vgg_d"]
    s = parse_settings("weights: {alexnet: /nope.pt}\n", env={}, weights=[f"alexnet={f}"])
    assert s.accuracy_settings().weights == {"alexnet": str(f.resolve())}
