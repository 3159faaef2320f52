"""What the harness sends away and what it runs: secrets never uploaded by `repro submit`, no
shell given user text, nothing unpacked outside its target, servers on loopback."""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

import pytest

from repro.errors import ReproError
from repro.execution.upload import upload_files

REPO = Path(__file__).resolve().parents[1]
SECRETS = [
    ".env", ".env.production", "deploy.pem", "tls/server.key", "id_rsa", "id_ed25519.pub",
    ".ssh/config", ".ray/auth_token", "auth_token", ".netrc", ".pypirc", ".aws/credentials",
    ".config/gcloud/application_default_credentials.json", "credentials", "credentials.json",
    "gcp-credentials-prod.json", "secrets.yaml", ".kube/config", ".docker/config.json",
    "client.p12",
]  # fmt: skip
KEPT = ["repro/__init__.py", "params.yaml", "repro/papers/lenet.yaml", "environment.md",
        "repro/credentialed_note.txt"]  # fmt: skip


def _git(work: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(work), *args], check=True, capture_output=True)


def test_submit_refuses_tracked_secrets_and_uploads_the_rest(tmp_path: Path) -> None:
    """Even tracked, a secret stops the upload, named; untracked, it stays behind unnamed."""
    work = tmp_path / "work"
    for name in [*SECRETS, *KEPT]:
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text("SECRET" if name in SECRETS else "code")
    _git(work, "init", "-q")
    _git(work, "add", "-A")
    with pytest.raises(ReproError) as refused:
        upload_files(work)
    named = {line.split(": ")[0].strip() for line in refused.value.excerpt.splitlines()}
    assert named == set(SECRETS), sorted(named ^ set(SECRETS))
    _git(work, "rm", "-q", "--cached", *SECRETS)
    upload = upload_files(work)
    assert sorted(f.name for f in upload.files) == sorted(KEPT)
    assert upload.untracked == len(SECRETS)


def test_submit_refuses_the_home_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(ReproError, match="home directory"):
        upload_files(tmp_path)
    with pytest.raises(ReproError, match="home directory"):
        upload_files(Path("/"))


def _calls(tree: ast.AST) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)]


def _name(call: ast.Call) -> str:
    f = call.func
    if isinstance(f, ast.Attribute):
        base = f.value.id if isinstance(f.value, ast.Name) else ""
        return f"{base}.{f.attr}"
    return f.id if isinstance(f, ast.Name) else ""


@pytest.mark.parametrize(
    "path",
    sorted(p.relative_to(REPO).as_posix() for d in ("repro", "pipelines")
           for p in (REPO / d).rglob("*.py")),
)  # fmt: skip
def test_no_shell_no_unchecked_unpacking(path: str) -> None:
    tree = ast.parse((REPO / path).read_text())
    for call in _calls(tree):
        name = _name(call)
        assert name not in ("os.system", "os.popen", "subprocess.getoutput"), (path, name)
        for kw in call.keywords:
            if kw.arg == "shell":
                assert isinstance(kw.value, ast.Constant) and kw.value.value is False, path
        assert not name.endswith((".extractall", ".extract")), (path, name, "unpacks an archive")


def test_local_services_listen_on_loopback() -> None:
    """The local Ray the harness starts serves no dashboard, or serves it on 127.0.0.1."""
    source = (REPO / "repro/execution/tasks.py").read_text()
    start = source[source.index("def _start_local") :]
    start = start[: start.index("\ndef ")]
    assert "include_dashboard=False" in start or 'dashboard_host="127.0.0.1"' in start
