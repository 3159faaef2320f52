"""Paper files and params.yaml as a hostile user (or a careless one) writes them: a paper key
that is a path, files that are not regular files or are too large, YAML aliases that multiply a
small file, keys given twice, claim values no metric can have. Each ends in a named error (the
file, the entry and the field) quickly and with bounded memory, never a hang or a traceback."""

from __future__ import annotations

import contextlib
import io
import os
import threading
import time
import tracemalloc
from pathlib import Path

import pytest

from repro import cli, config
from repro.claims import (
    CLAIM_PARAMS,
    KEY_RULE,
    Claim,
    Tolerance,
    check_key,
    load_paper,
    load_paper_file,
)
from repro.data.anchors import PARAMS
from repro.errors import ClaimFileError, ReproError
from repro.files import MAX_FILE_BYTES, load_yaml

pytestmark = pytest.mark.faults  # `make faults` records them in benchmarks/results/faults.csv

HEAD = "paper: {key}\ntitle: t\nauthors: a\nyear: 2000\nclaims:\n"
ENTRY = (
    "  - {{id: {id}, table: T1, row: A, metric: {metric}, unit: {unit}, value: {value},\n"
    "     kind: analytic, tolerance: {tolerance}, source: {{seed: s, section: s}},\n"
    "     model: {model}{extra}}}\n"
)


def entry(**fields: object) -> str:
    values = {"id": "x", "metric": "params", "unit": "M", "value": 1, "tolerance": "exact",
              "model": "vgg_a", "extra": "", **fields}  # fmt: skip
    return ENTRY.format(**values)


def paper_file(folder: Path, key: str, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{key}.yaml"
    path.write_text(HEAD.format(key=key) + body)
    return path


def _raised(call) -> ReproError | None:
    """The ReproError ``call`` raised, or None when it returned."""
    try:
        call()
    except ReproError as exc:
        return exc
    return None


def cli_run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = cli.main(list(argv))
    return code, out.getvalue()


# --- the paper key --------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["../outside", "a/b", "/etc/passwd", "Alexnet", "", "x..y", "a-"])
def test_a_paper_key_that_is_not_a_key_is_named_before_any_path(tmp_path: Path, key: str) -> None:
    with pytest.raises(ClaimFileError, match="is not lowercase letters and digits"):
        load_paper(key, tmp_path / "papers")
    with pytest.raises(ClaimFileError):
        check_key(key)


def test_a_key_with_dot_dot_does_not_read_the_yaml_outside(tmp_path: Path, fault_record) -> None:
    papers = tmp_path / "papers"
    paper_file(papers, "lenet", entry())
    paper_file(tmp_path, "outside", entry())  # a valid paper one folder up
    for argv in (["papers", "../outside"], ["run", "../outside", "--plan"]):
        began = time.perf_counter()
        code, out = cli_run(*argv, "--papers-dir", str(papers))
        named = code == 2 and "paper key '../outside'" in out
        fault_record("paper input: a paper key with ../ (repro papers, repro run)", named, 0, 0,
                     time.perf_counter() - began)  # fmt: skip
        assert code == 2, out
        assert "error: paper key '../outside' is not lowercase" in out
        assert "Traceback" not in out and "1 claims" not in out


def test_paper_keys_and_claim_ids_follow_one_rule() -> None:
    for key in ("alexnet", "yolo_v1", "fig-c1-shape", "table2-d-params", "x10"):
        assert KEY_RULE.fullmatch(key) and check_key(key) == key


# --- the file itself -----------------------------------------------------------------------


def _returns_within(seconds: float, fn) -> BaseException | None:
    """Run ``fn`` in a thread; the exception it raised (None if none), failing the test if it
    is still running after ``seconds`` (a read that blocks)."""
    raised: list[BaseException | None] = [None]

    def target() -> None:
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            raised[0] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s"
    return raised[0]


def test_a_fifo_paper_file_is_named_at_once_not_read(tmp_path: Path, fault_record) -> None:
    papers = tmp_path / "papers"
    paper_file(papers, "lenet", entry())
    os.mkfifo(papers / "pipe.yaml")
    began = time.perf_counter()
    raised = _returns_within(10, lambda: load_paper("pipe", papers))
    fault_record("paper input: a paper file that is a FIFO", isinstance(raised, ClaimFileError),
                 0, 0, time.perf_counter() - began)  # fmt: skip
    assert isinstance(raised, ClaimFileError) and "not a regular file" in str(raised)
    assert "pipe.yaml" in str(raised)
    code, out = cli_run("papers", "--papers-dir", str(papers))  # every file, the FIFO among them
    assert code == 2 and "pipe.yaml is not a regular file" in out


def test_a_folder_named_like_a_paper_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "dir.yaml").mkdir()
    with pytest.raises(ClaimFileError, match="dir.yaml is not a regular file"):
        load_paper("dir", tmp_path)


def test_a_link_leaving_the_papers_folder_is_refused_and_one_inside_is_read(
    tmp_path: Path,
) -> None:
    papers = tmp_path / "papers"
    outside = paper_file(tmp_path / "elsewhere", "lenet", entry())
    papers.mkdir()
    (papers / "lenet.yaml").symlink_to(outside)
    with pytest.raises(ClaimFileError, match="is a link to .*outside"):
        load_paper("lenet", papers)
    inside = paper_file(papers / "drafts", "vgg", entry())
    (papers / "vgg.yaml").symlink_to(inside)
    assert load_paper("vgg", papers).paper == "vgg"


def test_a_paper_file_over_the_size_limit_is_named_with_the_limit(tmp_path: Path) -> None:
    path = paper_file(tmp_path, "big", entry() + "# " + "x" * MAX_FILE_BYTES + "\n")
    with pytest.raises(ClaimFileError, match=f"big.yaml is larger than {MAX_FILE_BYTES:,} bytes"):
        load_paper_file(path)


# --- the YAML document ---------------------------------------------------------------------


def _alias_bomb(levels: int = 9) -> str:
    """model.kwargs holding 10**levels strings in a few hundred bytes."""
    lines = ["      kwargs:", "        l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels):
        lines.append(f"        l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]")
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_in_model_kwargs_is_refused_quickly_in_bounded_memory(
    tmp_path: Path, fault_record
) -> None:
    body = (
        "  - id: x\n    table: T1\n    row: A\n    metric: params\n    unit: M\n    value: 1\n"
        "    kind: analytic\n    tolerance: exact\n    source: {seed: s, section: s}\n"
        "    model:\n      name: vgg_a\n" + _alias_bomb()
    )
    path = paper_file(tmp_path, "bomb", body)
    assert path.stat().st_size < 4096
    tracemalloc.start()
    began = time.perf_counter()
    try:
        with pytest.raises(ClaimFileError, match="aliases expand the document past") as err:
            load_paper_file(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    seconds = time.perf_counter() - began
    fault_record("paper input: a 4 KB alias bomb in model.kwargs", peak < 20 * 2**20, 0, 0,
                 seconds)  # fmt: skip
    assert seconds < 5
    assert peak < 20 * 2**20, peak
    assert str(path) in err.value.paragraph()


def test_aliases_that_repeat_a_recipe_are_still_read() -> None:
    """The papers' own use of aliases (a recipe derived by a merge key) stays valid."""
    paper = load_paper("fashion_mnist")
    assert len(paper.recipes) >= 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("paper: x\nclaims: &a [*a]\n", "an alias names the list or mapping it stands in"),
        ("[" * 5000 + "]" * 5000 + "\n", "nests its lists and mappings too deeply"),
        ("paper: x\nx: *nowhere\n", "found undefined alias"),
        ("paper: x\n\x00\n", "unacceptable character #x0000"),
    ],
)
def test_malformed_documents_are_named(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "x.yaml"
    path.write_text(text)
    with pytest.raises(ClaimFileError, match=message) as err:
        load_paper_file(path)
    assert str(path) in err.value.paragraph()


def test_a_key_given_twice_in_a_paper_mapping_is_an_error(tmp_path: Path) -> None:
    """PyYAML keeps the second `value:` and drops the first without a word."""
    body = entry().replace("value: 1,", "value: 1, value: -5,")
    path = paper_file(tmp_path, "twice", body)
    with pytest.raises(ClaimFileError, match="key `value` appears a second time") as err:
        load_paper_file(path)
    assert "twice.yaml, line 6" in str(err.value)


def test_a_merge_key_then_an_override_is_not_a_duplicate() -> None:
    text = "base: &b {name: a, model: m}\nderived:\n  <<: *b\n  name: b\n"
    data, _ = load_yaml(text, "t.yaml")
    assert data["derived"] == {"name": "b", "model": "m"}
    with pytest.raises(ReproError, match="t.yaml nests its lists and mappings too deeply"):
        load_yaml("[" * 5000, "t.yaml")  # the path as text, as parse_settings may pass it


def test_a_params_yaml_section_given_twice_is_an_error_not_dropped(
    tmp_path: Path, fault_record
) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("accuracy:\n  seeds: 3\nsuites: [analytic]\naccuracy:\n  workers: 2\n")
    raised = _raised(lambda: config.load_settings(params))
    fault_record("params.yaml: a key given twice", isinstance(raised, ReproError), 0, 0, 0.0)
    assert "params.yaml, line 4: key `accuracy` appears a second" in str(raised)
    os.mkfifo(tmp_path / "fifo.yaml")
    raised = _returns_within(10, lambda: config.load_settings(tmp_path / "fifo.yaml"))
    assert isinstance(raised, ReproError) and "not a regular file" in str(raised)


# --- claim values --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"value": -5}, "cannot be params"),
        ({"value": 0}, "cannot be params"),  # a whole network has parameters
        ({"value": ".nan"}, "field value"),
        ({"value": ".inf"}, "field value"),
        ({"value": "-.inf"}, "field value"),
        ({"tolerance": "{rel: .nan}"}, "field tolerance.rel"),
        ({"tolerance": "{abs: .inf}"}, "field tolerance.abs"),
        ({"metric": "output_shape", "unit": "shape", "value": "[0, 7, 7]"}, "output_shape"),
        ({"metric": "flops", "unit": "G", "value": -1.5}, "cannot be flops"),
        ({"id": "Table/2"}, "claim id 'Table/2'"),
        ({"id": "t2", "extra": ", params: {k: 5}"}, "`params` belongs to dataset claims"),
        ({"id": "t2", "model": "{name: vgg_a, kwargs: {dropout: .nan}}"}, "not a finite number"),
    ],
)
def test_a_claim_value_no_metric_can_have_names_file_claim_and_field(
    tmp_path: Path, fields: dict[str, object], field: str, fault_record
) -> None:
    path = paper_file(tmp_path, "bad", entry(**fields))
    raised = _raised(lambda: load_paper_file(path))
    fault_record("paper input: a claim value NaN, infinite, negative or of a wrong key",
                 isinstance(raised, ClaimFileError), 0, 0, 0.0)  # fmt: skip
    assert isinstance(raised, ClaimFileError), raised
    text = raised.paragraph()
    assert str(path) in text and "claims[0]" in text and field in text, text


def test_zero_parameters_of_one_layer_is_a_claim(tmp_path: Path) -> None:
    body = entry(value=0, unit="count", extra=", layer: features.2")
    assert load_paper_file(paper_file(tmp_path, "pool", body)).claims[0].value == 0


@pytest.mark.parametrize(
    ("claim", "message"),
    [
        ("metric: num_images, unit: count, value: -1", "cannot be num_images"),
        ("metric: top5_error, unit: '%', value: 101", "between 0 and 100"),
        ("metric: num_images, unit: count, value: 9, params: {splt: test}", "unknown key splt"),
    ],
)
def test_dataset_and_rate_claims_out_of_range_are_named(
    tmp_path: Path, claim: str, message: str
) -> None:
    body = (
        f"  - {{id: d, table: T, row: r, {claim}, kind: dataset, dataset: voc2007,\n"
        "     tolerance: exact, source: {seed: s, section: s}}\n"
    )
    with pytest.raises(ClaimFileError, match=message):
        load_paper_file(paper_file(tmp_path, "data", body))


def test_a_gain_may_be_negative() -> None:
    """An ablation's gain can be a loss; only rates are held to 0..100."""
    claim = Claim.model_validate(
        {"table": "T", "row": "r", "metric": "map_gain", "unit": "%", "value": -1.5,
         "kind": "accuracy", "dataset": "voc2007", "tolerance": "exact",
         "source": {"seed": "s", "section": "s"}, "model": "vgg_a", "baseline": "vgg_d"}
    )  # fmt: skip
    assert claim.value == -1.5


def test_a_recipe_with_an_infinite_learning_rate_is_named(tmp_path: Path) -> None:
    paper = load_paper("fashion_mnist")
    text = Path(paper.path).read_text()
    assert "lr: 0.001" in text
    text = text.replace("lr: 0.001", "lr: .inf", 1)
    path = tmp_path / "fashion_mnist.yaml"
    path.write_text(text)
    with pytest.raises(ClaimFileError, match=r"recipes\[0\].*optimizer.lr.*finite"):
        load_paper_file(path)


def test_claim_params_are_the_keys_the_dataset_suite_reads() -> None:
    assert sorted(CLAIM_PARAMS) == sorted(PARAMS)


@pytest.mark.parametrize("text", ["±nan%", "±inf", "±-5", "±1e999%", "±% or ±", "nan"])
def test_a_tolerance_read_back_from_a_hostile_row_is_exact_not_a_traceback(text: str) -> None:
    """Result rows (a CSV, an MLflow run) carry the tolerance as text; what no claim could hold
    reads as exact, as other unknown text does."""
    assert Tolerance.from_description(text).exact
    assert Tolerance.from_description("±2% or ±0.5").describe() == "±2% or ±0.5"
