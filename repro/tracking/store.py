"""A sqlite tracking store made safe for more than one process: created and migrated under a
file lock, mended when a migration was cut off, and retried while other writers hold it.

MLflow creates a new sqlite store's tables (and migrates them) in whichever process opens it
first, without a lock: two first runs against one new file both fail half-way through the
migration and leave it half-migrated. Here the creation happens under a lock beside the file
(``<file>.lock``), once per process and file, before MLflow opens it. A store found half-migrated
(a schema revision other than this MLflow's, leftover ``_alembic_tmp_*`` tables) is mended when
nothing can be lost (leftover copies whose table exists are dropped; a store holding no runs is
moved aside and created anew) and is otherwise named with the fix. Writers that find the file
locked are retried a bounded number of times; past that the error carries MLflow's own advice:
a tracking server for concurrent use.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from filelock import FileLock, Timeout

from repro.errors import ReproError

log = logging.getLogger("repro.tracking")
LOCK_SECONDS = 300.0  # a first creation takes ~10 s on a loaded 2-core machine
TMP_PREFIX = "_alembic_tmp_"  # alembic's copy of a table being altered on sqlite
LOCKED_TRIES = 4  # attempts of one call that finds the database locked (each waits 20 s in sqlite)
_READY: set[tuple[str, int]] = set()  # (file, inode) made ready in this process


class StoreError(ReproError):
    """The store itself is unusable (half-migrated, its lock held): retrying will not help."""


class StoreBusy(ReproError):
    """Other writers held the sqlite file through every retry."""


def sqlite_file(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (None: another kind of store, or in memory)."""
    if urlparse(uri).scheme != "sqlite":
        return None
    path = uri.removeprefix("sqlite:///").split("?")[0]
    return Path(path).resolve() if path and path != ":memory:" else None


def prepare(uri: str) -> None:
    """Create, migrate or mend the sqlite store of ``uri`` under its file lock, once per process
    and file; other stores are left to MLflow. Raises :class:`StoreError` for a store that
    cannot be used without the user's decision."""
    path = sqlite_file(uri)
    if path is None or _ready_key(path) in _READY:
        return
    path.parent.mkdir(parents=True, exist_ok=True)  # as MLflow does for a sqlite file
    lock = FileLock(f"{path}.lock", timeout=LOCK_SECONDS)
    try:
        with lock:
            _make_ready(path)
    except PermissionError:  # a read-only folder: nothing can be created or mended there
        return
    except Timeout:
        raise StoreError(
            f"another process held {lock.lock_file} for {LOCK_SECONDS:.0f} s while creating or "
            f"migrating MLflow database {path}.",
            "wait for the other repro or mlflow command to finish; if none is running, delete "
            "the lock file.",
        ) from None
    _READY.add(_ready_key(path))


def _ready_key(path: Path) -> tuple[str, int]:
    try:
        return str(path), path.stat().st_ino
    except OSError:
        return str(path), -1


def _make_ready(path: Path) -> None:
    import sqlalchemy  # with MLflow: only where something is logged

    engine = sqlalchemy.create_engine(f"sqlite:///{path}")
    try:
        _mend(engine, path)
    except sqlalchemy.exc.DatabaseError as exc:
        raise StoreError(
            f"MLflow database {path} cannot be read as a sqlite database "
            f"({str(exc.orig or exc).splitlines()[0]}).",
            f"move it aside (mv {path} {path}.broken) to start a new store, or pass "
            "--tracking-uri sqlite:///<another file>.",
        ) from None
    finally:
        engine.dispose()


def _mend(engine: Any, path: Path) -> None:
    """Create a new store's tables; drop a finished migration's leftover copies; rebuild a
    half-migrated store that holds no runs; name one that holds runs."""
    import sqlalchemy
    from mlflow.store.db import utils as db

    tables = set(sqlalchemy.inspect(engine).get_table_names())
    if not tables - {"alembic_version"}:
        db._initialize_tables(engine)
        return
    head, found = db._get_latest_schema_revision(), db._get_schema_version(engine)
    leftovers = sorted(t for t in tables if t.startswith(TMP_PREFIX))
    if found == head:
        _drop_copies(engine, path, leftovers, tables)
        return
    if _holds_runs(engine, tables):
        raise _half_migrated(path, found, head, leftovers, tables)
    engine.dispose()
    aside = path.with_name(f"{path.name}.half-migrated-{int(time.time())}")
    path.rename(aside)
    log.warning(
        "MLflow database %s was left half-migrated (schema revision %s, not %s) and held no "
        "runs: moved to %s and created anew", path, found, head, aside,
    )  # fmt: skip
    new = sqlalchemy.create_engine(f"sqlite:///{path}")
    try:
        db._initialize_tables(new)
    finally:
        new.dispose()


def _drop_copies(engine: Any, path: Path, leftovers: list[str], tables: set[str]) -> None:
    """Drop alembic's leftover copies whose own table exists (the copy of a migration that did
    not finish; the table holds the data); a copy without its table is named with the fix."""
    import sqlalchemy

    orphans = [t for t in leftovers if t.removeprefix(TMP_PREFIX) not in tables]
    if orphans:
        raise StoreError(
            f"MLflow database {path} holds {', '.join(orphans)}, the only copy of a table "
            "that a cut-off migration dropped.",
            f"back the file up, then rename each copy to its table (sqlite3 {path} "
            f"'ALTER TABLE {orphans[0]} RENAME TO {orphans[0].removeprefix(TMP_PREFIX)}').",
        )
    with engine.begin() as conn:
        for table in leftovers:
            conn.execute(sqlalchemy.text(f'DROP TABLE "{table}"'))
    if leftovers:
        log.warning(
            "MLflow database %s: dropped %s, left by a migration that was cut off (each "
            "table it copied is whole)", path, ", ".join(leftovers),
        )  # fmt: skip


def _holds_runs(engine: Any, tables: set[str]) -> bool:
    import sqlalchemy

    with engine.connect() as conn:
        runs = "runs" in tables and conn.execute(sqlalchemy.text("SELECT 1 FROM runs")).first()
        experiments = (
            "experiments" in tables
            and conn.execute(
                sqlalchemy.text("SELECT 1 FROM experiments WHERE experiment_id != 0")
            ).first()
        )
    return bool(runs or experiments)


def _half_migrated(
    path: Path, found: str | None, head: str, leftovers: list[str], tables: set[str]
) -> StoreError:
    import mlflow

    cut = f", and {', '.join(leftovers)} left by a migration that was cut off" if leftovers else ""
    drop = [t for t in leftovers if t.removeprefix(TMP_PREFIX) in tables]
    first = f"drop {', '.join(drop)} (sqlite3 {path} 'DROP TABLE {drop[0]}'), " if drop else ""
    return StoreError(
        f"MLflow database {path} is at schema revision {found}, not {head} that MLflow "
        f"{mlflow.__version__} uses{cut}; it holds runs, so repro does not rebuild it.",
        f"back the file up (cp {path} {path}.bak), {first}then run `mlflow db upgrade "
        f"sqlite:///{path}`; or pass --tracking-uri sqlite:///<a new file> to log elsewhere.",
    )


def _locked(exc: BaseException) -> bool:
    return "database is locked" in str(exc)


def retry_locked(uri: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` retried (a bounded number of times, with jittered backoff) while the sqlite file
    is locked by other writers; an attempt that found it locked wrote nothing (MLflow rolls its
    session back), so a retry cannot log twice."""

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        began = time.monotonic()
        for attempt in range(LOCKED_TRIES - 1):
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                if not _locked(exc):
                    raise
            time.sleep(0.25 * 2**attempt + random.random() * 0.25)
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if not _locked(exc):
                raise
            raise StoreBusy(
                f"MLflow database {sqlite_file(uri)} stayed locked by other writers "
                f"({LOCKED_TRIES} tries, {time.monotonic() - began:.0f} s): sqlite takes one "
                "writer at a time, and MLflow advises a tracking server for concurrent use",
                f"run `mlflow server --backend-store-uri {uri}` and pass --tracking-uri "
                "http://127.0.0.1:5000; what was not logged waits for `repro sync`.",
            ) from exc

    return call


class LockRetrying:
    """An MlflowClient of a sqlite store whose calls are retried while the file is locked
    (:func:`retry_locked`); attributes pass through."""

    def __init__(self, client: Any, uri: str) -> None:
        self._client, self._uri = client, uri

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        return retry_locked(self._uri, attr) if callable(attr) else attr
