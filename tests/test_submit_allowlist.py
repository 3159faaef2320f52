"""`repro submit` uploads by allow-list (issue 27, "secrets uploaded"): what git tracks in the
working directory plus what --include names, never a secret (tracked, named, or reached through
a link), never a link leaving the directory; --dry-run lists exactly what the job would get.

No Ray cluster: the packing is tested directly, and the CLI with --dry-run or a stand-in client."""

from __future__ import annotations

import stat
import subprocess
import tempfile
import time
import zipfile
from pathlib import Path

import pytest

from repro.cli import main
from repro.errors import ReproError
from repro.execution import jobs
from repro.execution.upload import upload_files, write_package

REPO = Path(__file__).resolve().parents[1]

# The examples and the brief's list: every one must stop the upload, by its own name.
SECRET_FILES = [
    ".git-credentials", ".netrc", ".pgpass", ".npmrc", ".pypirc", ".vault-token",
    ".databrickscfg", "kubeconfig", ".kube/config", "terraform.tfstate",
    "infra/terraform.tfstate.backup", "service-account.json", "gcp-service-account-prod.json",
    "id_rsa", "id_dsa", "id_ecdsa", "id_ed25519", ".env", ".env.local", ".envrc",
    ".aws/credentials", ".config/gcloud/credentials.db",
    ".config/gcloud/application_default_credentials.json", ".azure/msal_token_cache.json",
    "certs/server.pem", "certs/server.key",
]  # fmt: skip
# Written in two pieces so that this file itself holds no key header (it is uploaded too).
_BEGIN = "-----BEGIN "
KEY_TEXT = {
    "deploy_backup": _BEGIN + "OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n",
    "settings.json": '{"key": "' + _BEGIN + 'RSA PRIVATE KEY-----\\nMIIEow"}\n',
    "notes/keys.txt": "meeting notes\n" + _BEGIN + "EC PRIVATE KEY-----\nMHcCAQEE\n",
}
CODE = {"run.py": "print('hi')\n", "pkg/model.yaml": "layers: 3\n", ".gitignore": "build/\n"}


def _git(work: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(work), *args], check=True, capture_output=True)


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    _write(work, CODE)
    _git(work, "init", "-q")
    _git(work, "add", "-A")
    return work


def _refused(exc: pytest.ExceptionInfo[ReproError] | ReproError) -> set[str]:
    """The paths an upload refusal names, one a line of its excerpt."""
    error = exc.value if isinstance(exc, pytest.ExceptionInfo) else exc
    return {line.split(": ")[0].strip() for line in error.excerpt.splitlines()}


def _names(work: Path, include: list[str] | None = None) -> list[str]:
    return [f.name for f in upload_files(work, include or []).files]


def test_every_secret_refused_by_name_when_tracked(checkout: Path) -> None:
    _write(checkout, {name: "token=abc\n" for name in SECRET_FILES} | KEY_TEXT)
    _git(checkout, "add", "-f", "-A")
    with pytest.raises(ReproError) as refused:
        upload_files(checkout)
    assert _refused(refused) == set(SECRET_FILES) | set(KEY_TEXT)
    assert "holds a private key" in refused.value.excerpt
    assert "nothing was uploaded" in refused.value.cause and "git rm --cached" in refused.value.fix


def test_every_secret_refused_by_name_when_included(checkout: Path) -> None:
    """Untracked, a secret stays behind unnamed; named with --include, it is refused."""
    _write(checkout, {name: "token=abc\n" for name in SECRET_FILES} | KEY_TEXT)
    assert sorted(_names(checkout)) == sorted(CODE)
    with pytest.raises(ReproError) as refused:
        upload_files(checkout, [*SECRET_FILES, *KEY_TEXT])
    assert _refused(refused) == set(SECRET_FILES) | set(KEY_TEXT)
    with pytest.raises(ReproError) as refused:  # a named folder: every file under it is checked
        upload_files(checkout, [".aws", "certs", "notes"])
    assert _refused(refused) == {".aws/credentials", "certs/server.pem", "certs/server.key",
                                 "notes/keys.txt"}  # fmt: skip


def test_links_leaving_the_directory_are_refused(checkout: Path, tmp_path: Path) -> None:
    """An outside .netrc or key reached through a link, tracked or named: refused, the link and
    its target named; a link to an outside folder too."""
    outside = tmp_path / "home"
    _write(outside, {".netrc": "machine x password y\n", "key": KEY_TEXT["deploy_backup"]})
    (checkout / "netrc-link").symlink_to(outside / ".netrc")
    (checkout / "pkg" / "innocent.txt").symlink_to(outside / "key")
    (checkout / "elsewhere").symlink_to(outside, target_is_directory=True)
    _git(checkout, "add", "netrc-link", "pkg/innocent.txt")
    with pytest.raises(ReproError) as refused:
        upload_files(checkout)
    assert _refused(refused) == {"netrc-link", "pkg/innocent.txt"}
    assert str(outside.resolve() / ".netrc") in refused.value.excerpt
    assert "outside the working directory" in refused.value.excerpt
    _git(checkout, "rm", "-q", "--cached", "netrc-link", "pkg/innocent.txt")
    for named in ("elsewhere", "elsewhere/.netrc", "netrc-link"):
        with pytest.raises(ReproError) as refused:
            upload_files(checkout, [named])
        assert _refused(refused) == {named}


def test_a_link_inside_to_a_secret_is_refused_by_its_target(checkout: Path) -> None:
    _write(checkout, {".env": "TOKEN=abc\n"})
    (checkout / "config.txt").symlink_to(".env")
    _git(checkout, "add", "config.txt")
    with pytest.raises(ReproError) as refused:
        upload_files(checkout)
    assert _refused(refused) == {"config.txt"} and "a link to .env" in refused.value.excerpt


def test_the_allow_list_is_tracked_files_plus_included_ones(checkout: Path) -> None:
    """Untracked and ignored files stay behind unless named; generated output stays behind even
    when tracked; links inside the directory go with their target's content and mode."""
    _write(checkout, {"scratch.txt": "x", "data/labels.csv": "a,b\n", "build/out/x.bin": "b",
                      "reports/README.md": "generated", "pkg/__pycache__/m.pyc": "c"})  # fmt: skip
    (checkout / "run.py").chmod(0o755)
    (checkout / "latest.yaml").symlink_to("pkg/model.yaml")
    _git(checkout, "add", "-f", "reports/README.md", "latest.yaml")
    upload = upload_files(checkout, ["data/labels.csv", "build"])
    expected = sorted([*CODE, "latest.yaml", "data/labels.csv", "build/out/x.bin"])
    assert [f.name for f in upload.files] == expected
    assert upload.untracked == 2  # scratch.txt and the .pyc: counted, said, not uploaded
    package = write_package(upload, checkout.parent / "code.zip")
    with zipfile.ZipFile(package) as zipped:
        assert sorted(zipped.namelist()) == expected
        assert zipped.read("latest.yaml") == b"layers: 3\n"
        assert stat.S_IMODE(zipped.getinfo("run.py").external_attr >> 16) == 0o755
    assert _names(checkout, ["reports/README.md"]) == sorted([*CODE, "latest.yaml",
                                                              "reports/README.md"])  # fmt: skip


def test_nothing_to_read_is_skipped_and_said(
    checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A tracked file deleted here, a dangling link, a link loop: counted, named, not packed."""
    (checkout / "loop-a").symlink_to("loop-b")
    (checkout / "loop-b").symlink_to("loop-a")
    (checkout / "dangling").symlink_to("gone.txt")
    _git(checkout, "add", "loop-a", "loop-b", "dangling")
    (checkout / "run.py").unlink()
    upload = upload_files(checkout, ["loop-a"])
    assert upload.skipped == ("dangling", "loop-a", "loop-b", "run.py")
    assert [f.name for f in upload.files] == [".gitignore", "pkg/model.yaml"]
    assert main(["submit", "--dry-run", "--working-dir", str(checkout)]) == 0
    err = capsys.readouterr().err
    assert "4 paths with no file to read" in err and "dangling, loop-a, loop-b, run.py" in err


def test_a_directory_that_is_not_a_git_checkout_needs_include(tmp_path: Path) -> None:
    work = tmp_path / "plain"
    _write(work, CODE | {".env": "TOKEN=x\n"})
    with pytest.raises(ReproError, match="not a git checkout") as refused:
        upload_files(work)
    assert "--include" in refused.value.fix
    upload = upload_files(work, ["run.py", "pkg"])
    assert [f.name for f in upload.files] == ["pkg/model.yaml", "run.py"]
    assert upload.without_git == "not a git checkout"


def test_include_paths_outside_or_missing_are_named(checkout: Path, tmp_path: Path) -> None:
    (tmp_path / "outside.txt").write_text("x")
    for raw in ("../outside.txt", str(tmp_path / "outside.txt")):
        with pytest.raises(ReproError, match="outside the working directory"):
            upload_files(checkout, [raw])
    with pytest.raises(ReproError, match="no such file"):
        upload_files(checkout, ["absent.csv"])
    assert "run.py" in _names(checkout, [str(checkout / "run.py")])


def test_a_private_key_cut_by_the_read_chunk_is_found(checkout: Path) -> None:
    body = b"x" * ((1 << 20) - 10) + KEY_TEXT["deploy_backup"].encode()
    (checkout / "model.bin").write_bytes(body)
    with pytest.raises(ReproError) as refused:
        upload_files(checkout, ["model.bin"])
    assert _refused(refused) == {"model.bin"}


@pytest.mark.skipif(not (REPO / ".git").exists(), reason="not run from a git checkout")
def test_this_repository_uploads_without_refusal() -> None:
    """The project's own tracked files (tests with fake keys included) pass the checks."""
    names = _names(REPO)
    assert "repro/cli.py" in names and "pyproject.toml" in names
    assert not any(n.startswith("reports/") for n in names)


def test_dry_run_lists_exactly_what_goes_and_uploads_nothing(
    checkout: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_cluster(*_: object, **__: object) -> None:
        raise AssertionError("a dry run contacted the job server")

    monkeypatch.setattr(jobs, "connect", no_cluster)
    monkeypatch.setattr(jobs, "submit", no_cluster)
    odd = "odd\x1b[31mname.txt"  # a terminal escape in a file name is printed spelled out
    _write(checkout, {odd: "x", "data/labels.csv": "a,b\n"})
    _git(checkout, "add", odd)
    code = main(["submit", "--dry-run", "--working-dir", str(checkout),
                 "--include", "data/labels.csv", "--", "repro", "run", "--all"])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    listed = out.splitlines()
    raw = sorted([*CODE, "data/labels.csv", odd])  # the order of the paths, as git spells them
    assert listed == [ascii(n) if n == odd else n for n in raw]
    assert "\x1b" not in out
    total = sum((checkout / n).stat().st_size for n in raw)
    assert f"would upload {len(listed)} files, {total} B, from {checkout.resolve()}" in err
    assert "nothing was uploaded" in err

    _write(checkout, {".envrc": "export TOKEN=x\n"})
    assert main(["submit", "--dry-run", "--working-dir", str(checkout), "--include", ".envrc"]) == 2
    err = capsys.readouterr().err
    assert ".envrc: a secret's file name" in err and "Traceback" not in err


def test_submit_sends_the_dry_runs_files(
    checkout: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The package handed to the job client holds exactly the files the dry run lists."""
    sent: dict[str, list[str]] = {}

    def fake_submit(client: object, entrypoint: str, env: dict, **_: object) -> str:
        with zipfile.ZipFile(env["working_dir"]) as package:
            sent["names"] = sorted(package.namelist())
        return "raysubmit_test"

    monkeypatch.setattr(jobs, "connect", lambda address: object())
    monkeypatch.setattr(jobs, "submit", fake_submit)
    argv = ["submit", "--working-dir", str(checkout), "--include", "pkg"]
    assert main([*argv, "--dry-run"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert main([*argv, "--no-wait", "--", "true"]) == 0
    assert sent["names"] == listed == sorted(CODE)
    assert "raysubmit_test" in capsys.readouterr().out
    assert not list(Path(tempfile.gettempdir()).glob("repro-submit-*/code.zip"))  # removed


@pytest.mark.faults
def test_fault_each_secret_alone_stops_the_upload(
    checkout: Path, tmp_path: Path, fault_record
) -> None:
    """One trial per example and way in (tracked, named with --include, a tracked link to an
    outside copy): the upload is refused naming it; a secret that would have gone counts lost."""
    outside = tmp_path / "outside"
    examples = {**{name: "token=abc\n" for name in SECRET_FILES}, **KEY_TEXT}
    _write(checkout, examples)
    _write(outside, {name.replace("/", "_"): text for name, text in examples.items()})
    outcomes = []
    for way in ("tracked", "--include", "a link to an outside file"):
        for name in examples:
            start = time.perf_counter()
            shown, include = name, []
            if way == "tracked":
                _git(checkout, "add", "-f", name)
            elif way == "--include":
                include = [name]
            else:
                shown = "link-" + name.replace("/", "_")
                (checkout / shown).symlink_to(outside / name.replace("/", "_"))
                _git(checkout, "add", shown)
            try:
                upload = upload_files(checkout, include)
                named, lost = set(), int(shown in {f.name for f in upload.files})
            except ReproError as refused:
                named, lost = _refused(refused), 0
            survived = named == {shown}
            fault_record(f"secret in the upload, {way} (repro submit)", survived, lost, 0,
                         time.perf_counter() - start)  # fmt: skip
            outcomes.append((way, name, survived))
            if way != "--include":
                _git(checkout, "rm", "-q", "--cached", shown)
    assert [o for o in outcomes if not o[2]] == []
