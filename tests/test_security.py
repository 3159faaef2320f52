"""What the harness sends away and what it runs: secrets never uploaded by `repro submit`, no
shell given user text, nothing unpacked outside its target, servers on loopback."""

from __future__ import annotations

import ast
import zipfile
from pathlib import Path

import pytest
from ray._private.runtime_env.packaging import create_package

from repro.errors import ReproError
from repro.execution import jobs

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


def test_submit_upload_leaves_secrets_behind(tmp_path: Path) -> None:
    """The package Ray would upload, built by Ray's own packaging with the job's excludes."""
    work = tmp_path / "work"
    for name in [*SECRETS, *KEPT]:
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text("SECRET" if name in SECRETS else "code")
    env = jobs.runtime_env(work, {})
    package = tmp_path / "upload.zip"
    create_package(str(work), package, include_gitignore=True, excludes=env["excludes"])
    uploaded = {n for n in zipfile.ZipFile(package).namelist() if not n.endswith("/")}
    assert uploaded == set(KEPT), sorted(uploaded)


def test_submit_refuses_the_home_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(ReproError, match="home directory"):
        jobs.runtime_env(tmp_path, {})
    with pytest.raises(ReproError, match="home directory"):
        jobs.runtime_env(Path("/"), {})


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
