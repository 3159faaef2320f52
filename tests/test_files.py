"""Atomic writes (repro.files): a full disk or an unwritable folder is a clear error naming the
path, and an earlier good copy is never left half-written; through `repro run` and the report."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import pytest

from repro import files
from repro.cli import main
from repro.errors import ReproError

pytestmark = pytest.mark.faults
DISK_FULL = "disk full or output unwritable"


def _fail_with(monkeypatch: pytest.MonkeyPatch, code: int, where: str = "fsync") -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(files.os, where, fail)


@pytest.mark.parametrize(
    "code, where, fix",
    [
        (errno.ENOSPC, "fsync", "free space on the disk"),
        (errno.EACCES, "replace", "make {folder} writable"),
        (errno.EROFS, "replace", "make {folder} writable"),
        (errno.EIO, "fsync", "check that {folder} is a writable folder"),
    ],
)
def test_failed_write_names_the_path_and_keeps_the_old_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, where: str, fix: str, fault_record
) -> None:
    path = tmp_path / "out" / "results.csv"
    files.atomic_write_text(path, "good\n")
    _fail_with(monkeypatch, code, where)
    with pytest.raises(ReproError) as err:
        files.atomic_write_text(path, "half")
    monkeypatch.undo()
    kept = path.read_text() == "good\n"
    fault_record(DISK_FULL, survived=kept, lost=0 if kept else 1, duplicated=0, recovery_s=0.0)
    assert f"cannot write {path}: {os.strerror(code)}" in err.value.cause
    assert fix.format(folder=path.parent) in err.value.fix
    assert path.read_text() == "good\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["results.csv"]  # no temporary left


def test_interrupted_write_leaves_the_old_copy(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    files.atomic_write_json(path, {"a": 1})

    def crash(fh: object) -> None:
        fh.write("{partial")  # type: ignore[attr-defined]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        files.atomic_write(path, crash)
    assert path.read_text() == '{"a": 1}\n' and len(list(tmp_path.iterdir())) == 1


def test_full_disk_during_repro_run_and_report(
    tiny_paper_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, fault_record
) -> None:
    out = tmp_path / "m"
    argv = ["run", "alpha", "--papers-dir", str(tiny_paper_dir), "--no-ray", "--no-mlflow"]
    assert main([*argv, "--out", str(out)]) == 0
    before = (out / "alpha.csv").read_text()
    reports = tmp_path / "reports"
    assert main(["report", "--measurements", str(out), "--out", str(reports), "--no-mlflow"]) == 0
    readme = (reports / "README.md").read_text()
    capsys.readouterr()
    _fail_with(monkeypatch, errno.ENOSPC)
    assert main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot write {out / 'alpha.csv'}: No space left on device")
    assert (out / "alpha.csv").read_text() == before
    assert main(["report", "--measurements", str(out), "--out", str(reports), "--no-mlflow"]) == 2
    assert "cannot write" in capsys.readouterr().err
    monkeypatch.undo()
    kept = (out / "alpha.csv").read_text() == before
    kept = kept and (reports / "README.md").read_text() == readme
    # Once there is space again, the same commands write both files.
    started = time.perf_counter()
    recovered = (
        main([*argv, "--out", str(out)]) == 0
        and main(["report", "--measurements", str(out), "--out", str(reports), "--no-mlflow"]) == 0
    )
    fault_record(DISK_FULL, survived=kept and recovered, lost=0 if kept else 1, duplicated=0,
                 recovery_s=time.perf_counter() - started)  # fmt: skip
    assert kept, "an earlier good copy was changed by a failed write"
    assert recovered
