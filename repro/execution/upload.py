"""What `repro submit` uploads with a Ray job: an allow-list, packed here without Ray.

The files git tracks in the working directory (less generated output and local stores) plus
the paths named with --include; never a file whose name, folder or content says it holds a
secret (tracked or named), never a link that leaves the directory. The upload is one zip, which
the job client sends as it is (Ray unpacks a local package without its excludes or .gitignore).
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import stat
import subprocess
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from repro.errors import ReproError

# Never packed from what git tracks or from a named directory: environments, local stores, caches
# and generated output (a file named exactly with --include still goes).
UPLOAD_EXCLUDES = [
    ".venv/",
    ".git/",
    "mlflow.db",
    "mlartifacts/",
    "mlruns/",
    ".dvc/cache/",
    ".dvc/tmp/",
    "reports/",
    "__pycache__/",
    "*.egg-info/",
    ".pytest_cache/",
    ".ruff_cache/",
    ".mlflow-spool/",
]

# Never packed, tracked or named: credentials by file name (case-insensitive globs) ...
SECRET_NAMES = (
    ".git-credentials", ".netrc", "_netrc", ".pgpass", ".npmrc", ".pypirc", ".vault-token",
    ".databrickscfg", ".dockercfg", "kubeconfig", "kubeconfig.*", "*.kubeconfig",
    "terraform.tfstate", "terraform.tfstate.*", "*.tfstate", "*.tfstate.backup",
    "*service-account*.json", "*service_account*.json", "id_rsa*", "id_dsa*", "id_ecdsa*",
    "id_ed25519*", ".env", ".env.*", ".envrc", "*.pem", "*.key", "*.p12", "*.pfx", "*.ppk",
    "auth_token", "credentials", "credentials.*", "*credentials*.json", "secrets.*",
    "credentials.db", "access_tokens.db", "application_default_credentials.json",
)  # fmt: skip
# ... by the folder they sit in (globs over "/" + the path) ...
SECRET_PATHS = (
    "*/.ssh/*", "*/.aws/*", "*/.azure/*", "*/.kube/*", "*/.ray/*", "*/.gnupg/*",
    "*/.config/gcloud/*", "*/.docker/config.json",
)  # fmt: skip
# ... and by content: an OpenSSH, PEM or PGP private key, or a PuTTY key file.
PRIVATE_KEY = re.compile(
    rb"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|PuTTY-User-Key-File-\d+:"
)
_CHUNK = 1 << 20
_LISTED = 50  # refused paths named in one error; the rest counted


@dataclass(frozen=True)
class UploadFile:
    name: str  # its path in the package: relative to the working directory, with "/"
    source: Path  # the file read (a link inside the working directory resolved)
    size: int


@dataclass(frozen=True)
class Upload:
    root: Path
    files: tuple[UploadFile, ...]
    skipped: tuple[str, ...]  # paths with no file to read (deleted, link loops, links to folders)
    untracked: int  # files git does not track here and no --include named: left behind
    without_git: str  # why git listed nothing ("not a git checkout"), or ""

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


def shown_path(name: str) -> str:
    """A path as printed: control characters (a newline, a terminal escape) spelled out."""
    return name if name.isprintable() else ascii(name)


def _matches(name: str, pattern: str) -> bool:
    return fnmatch.fnmatchcase(name, pattern)


def _excluded(rel: PurePosixPath) -> bool:
    """Whether UPLOAD_EXCLUDES (gitignore-like: "x/" a folder, "a/b/" anchored) leaves it out."""
    for pattern in UPLOAD_EXCLUDES:
        body = pattern.rstrip("/")
        folders = rel.parts[:-1] if pattern.endswith("/") else rel.parts
        if "/" in body:
            n = len(body.split("/"))
            if len(folders) >= n and all(map(_matches, folders[:n], body.split("/"))):
                return True
        elif any(_matches(part, body) for part in folders):
            return True
    return False


def _secret_name(rel: str) -> bool:
    lowered = rel.lower()
    name = lowered.rsplit("/", 1)[-1]
    return any(_matches(name, p) for p in SECRET_NAMES) or any(
        _matches("/" + lowered, p) for p in SECRET_PATHS
    )


def _holds_private_key(path: Path) -> bool:
    overlap = 64  # a header cut by a chunk boundary is still found
    tail = b""
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            if PRIVATE_KEY.search(tail + chunk):
                return True
            tail = chunk[-overlap:]
    return False


def _git_files(root: Path, *options: str) -> list[str] | str:
    """Paths git lists under root (relative to it), or why there are none: not a checkout."""
    try:
        done = subprocess.run(
            ["git", "-C", str(root), "ls-files", "-z", *options],
            capture_output=True,
            timeout=120,
            check=False,
        )
    except FileNotFoundError:
        return "git is not installed"
    except subprocess.TimeoutExpired:
        raise ReproError(
            f"`git ls-files` in {root} did not answer in 120 s; nothing was uploaded.",
            "check the repository (`git status`), or name what to upload with --include.",
        ) from None
    if done.returncode != 0:
        message = " ".join(os.fsdecode(done.stderr).split())
        if "not a git repository" in message:
            return "not a git checkout"
        raise ReproError(
            f"`git ls-files` in {root} failed: {message}; nothing was uploaded.",
            "do what git asks (e.g. `git config --global --add safe.directory DIR`), or name "
            "what to upload with --include.",
        )
    return [os.fsdecode(p) for p in done.stdout.split(b"\0") if p]


def _named(root: Path, raw: str) -> str:
    """An --include path, relative to the working directory (without following links)."""
    path = Path(raw) if Path(raw).is_absolute() else root / raw
    rel = os.path.relpath(os.path.normpath(path), root)
    if rel == ".." or rel.startswith("../") or os.path.isabs(rel):
        raise ReproError(
            f"--include {raw} is outside the working directory {root}.",
            "name paths inside --working-dir (relative to it), or copy the file there.",
        )
    if not os.path.lexists(root / rel):
        raise ReproError(
            f"--include {raw}: no such file or folder in {root}.",
            "name an existing path, relative to --working-dir.",
        )
    return Path(rel).as_posix()


def _walk(root: Path, rel: str) -> list[str]:
    """The files under a named folder, links to folders as entries (not followed)."""
    out = []
    for folder, dirs, files in os.walk(root / rel):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
            out.append(Path(os.path.relpath(os.path.join(folder, name), root)).as_posix())
    return [p for p in out if not _excluded(PurePosixPath(p))]


def _resolved(path: Path) -> Path | None:
    """The file a path reaches, links followed; None for a link loop."""
    try:
        return path.resolve()
    except (RuntimeError, OSError):  # "Symlink loop" (RuntimeError until Python 3.13)
        return None


def _refused(root: Path, rel: str, real: Path) -> tuple[str, str] | None:
    """Why a path may not go, as (kind, words): a link leaving the directory, a secret (by
    name, folder or content), not a file; None when it may."""
    if not real.is_relative_to(root):
        return "outside", f"a link to {shown_path(str(real))}, outside the working directory"
    target = real.relative_to(root).as_posix()
    if _secret_name(rel) or _secret_name(target):
        via = "" if target == rel else f" (a link to {shown_path(target)})"
        return "secret", f"a secret's file name{via}"
    if real.exists() and not real.is_dir() and not real.is_file():
        return "irregular", "not a regular file"
    try:
        if real.is_file() and _holds_private_key(real):
            return "secret", "holds a private key"
    except OSError as exc:
        return "unreadable", f"cannot be read to check it ({exc.strerror})"
    return None


_FIXES = {
    "secret": "for a secret: keep it out of the upload (`git rm --cached FILE` and list it in "
    ".gitignore, or move it out of the working directory; do not --include it) and give the "
    "job what it needs with --env KEY=VALUE or the cluster's own credentials",
    "outside": "for a link leaving the directory: replace it with the file itself if that "
    "belongs with the code (and holds no secret), or take it out of the upload (`git rm "
    "--cached LINK`, or do not --include it)",
    "irregular": "for a socket, pipe or device: do not --include it",
    "unreadable": "for a file that cannot be read: make it readable, or take it out of the upload",
}


def _refusal(refused: dict[str, tuple[str, str]]) -> ReproError:
    lines = [f"{shown_path(rel)}: {words}" for rel, (_, words) in refused.items()]
    shown = lines[:_LISTED] + (
        [f"... and {len(lines) - _LISTED} more"] if len(lines) > _LISTED else []
    )
    kinds = {kind for kind, _ in refused.values()}
    return ReproError(
        f"refusing to upload {len(lines)} path(s) from the working directory; nothing was "
        "uploaded:",
        "; ".join(text for kind, text in _FIXES.items() if kind in kinds) + ".",
        excerpt="".join(f"  {line}\n" for line in shown),
    )


def upload_files(working_dir: Path, include: Sequence[str] = ()) -> Upload:
    """What `repro submit` uploads: the files git tracks in ``working_dir`` (less
    UPLOAD_EXCLUDES) and every ``include`` path (a folder: the files under it). A secret (by
    name, folder or content) or a link leaving the directory refuses the whole upload."""
    if not working_dir.is_dir():
        raise ReproError(
            f"working directory {working_dir} does not exist.",
            "pass an existing --working-dir (default: the current directory).",
        )
    root = working_dir.resolve()
    home = Path.home().resolve()
    if root in (home, *home.parents):
        raise ReproError(
            f"--working-dir {working_dir} is your home directory or above it; uploading it "
            "would send keys, tokens and caches to the cluster.",
            "pass the repository's directory (default: the current one).",
        )
    named = [_named(root, raw) for raw in include]
    tracked = _git_files(root, "--cached", "--recurse-submodules")
    if isinstance(tracked, str) and not named:
        raise ReproError(
            f"cannot list what git tracks in --working-dir {working_dir} ({tracked}), and "
            "`repro submit` uploads the files git tracks plus those named with --include.",
            "run it from the repository, name what to upload with --include PATH (repeatable), "
            "or pass --no-upload to run the code installed on the cluster.",
        )
    candidates = (
        {}
        if isinstance(tracked, str)
        else dict.fromkeys(p for p in tracked if not _excluded(PurePosixPath(p)))
    )
    for rel in named:
        real = _resolved(root / rel)
        inside_folder = real is not None and real.is_dir() and real.is_relative_to(root)
        candidates.update(dict.fromkeys(_walk(root, rel) if inside_folder else [rel]))
    files, skipped, refused = [], [], {}
    for rel in sorted(candidates):
        real = _resolved(root / rel)
        why = None if real is None else _refused(root, rel, real)
        if why:
            refused[rel] = why
        elif real is None or not real.exists() or real.is_dir():
            skipped.append(rel)
        else:
            files.append(UploadFile(rel, real, real.stat().st_size))
    if refused:
        raise _refusal(refused)
    if isinstance(tracked, str):
        return Upload(root, tuple(files), tuple(skipped), 0, tracked)
    untracked = _git_files(root, "--others", "--exclude-standard")
    left_behind = 0 if isinstance(untracked, str) else len(set(untracked) - set(candidates))
    return Upload(root, tuple(files), tuple(skipped), left_behind, "")


def write_package(upload: Upload, target: Path) -> Path:
    """The upload as one zip (fixed timestamps, so unchanged code is one package Ray already
    holds), each file with its permission bits."""
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as package:
        for item in upload.files:
            info = zipfile.ZipInfo(item.name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            try:
                mode = stat.S_IMODE(item.source.stat().st_mode)
                info.external_attr = (stat.S_IFREG | mode) << 16
                with item.source.open("rb") as src, package.open(info, "w") as dst:
                    shutil.copyfileobj(src, dst, _CHUNK)
            except OSError as exc:
                raise ReproError(
                    f"{shown_path(item.name)} changed while it was packed ({exc.strerror}); "
                    "nothing was uploaded.",
                    "submit again once nothing writes into the working directory.",
                ) from None
    return target


def _mib(size: int) -> str:
    if size < 2**10:
        return f"{size} B"
    return f"{size / 2**20:.1f} MiB" if size >= 2**20 else f"{size / 2**10:.1f} KiB"


def _count(n: int, what: str) -> str:
    return f"{n} {what}" + ("" if n == 1 else "s")


def upload_notes(upload: Upload) -> list[str]:
    """What goes and what stays, for the terminal: the count and size, then any skips."""
    notes = [f"{_count(len(upload.files), 'file')}, {_mib(upload.size)}, from {upload.root}"]
    if upload.without_git:
        notes.append(f"{upload.without_git}: only the --include paths go")
    if upload.skipped:
        listed = ", ".join(map(shown_path, upload.skipped[:5]))
        more = " ..." if len(upload.skipped) > 5 else ""
        notes.append(
            f"{_count(len(upload.skipped), 'path')} with no file to read (deleted, a link "
            f"loop, or a link to a folder) skipped: {listed}{more}"
        )
    if upload.untracked:
        notes.append(
            f"{_count(upload.untracked, 'file')} git does not track stay behind (`git add` "
            "them, or name them with --include)"
        )
    return notes
