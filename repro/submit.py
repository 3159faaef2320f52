"""`repro submit`: run a command on a Ray cluster as a Ray job, with the code uploaded by an
allow-list: the files git tracks in the working directory plus those named with --include,
never a secret nor a link leaving the directory."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from repro.errors import ReproError
from repro.execution.upload import Upload, shown_path, upload_files, upload_notes, write_package

EPILOG = """examples:
  repro submit --address http://head:8265 -- repro run --all --suite analytic
  repro submit --tracking-uri http://mlflow:5000 --data imagenet=/mnt/imagenet -- repro run vgg
  repro submit --no-wait -- repro run resnet      prints the job id and returns
  repro submit --logs raysubmit_XXXX              the job's output so far
  repro submit --status raysubmit_XXXX            its state and exit code
  repro submit --stop raysubmit_XXXX
  repro submit --dry-run --include data/labels.csv   what would be uploaded, uploading nothing

The address is the head node's dashboard (default: RAY_API_SERVER_ADDRESS, else
http://127.0.0.1:8265, e.g. after `ray dashboard cluster.yaml`). While waiting, the job's
output is streamed here and `repro submit` exits with the command's own exit status.
"""


def _pairs(values: list[str] | None, flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ReproError(
                f"{flag} {item!r} is not of the form NAME=VALUE.", f"pass {flag} NAME=VALUE."
            )
        out[key] = value
    return out


def job_env(
    tracking_uri: str | None, data: list[str] | None, extra: list[str] | None
) -> dict[str, str]:
    """Environment variables for the job: MLflow, dataset roots (paths on the cluster) and
    any --env. Nothing else is copied from this machine's environment."""
    env: dict[str, str] = {}
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    for name, root in _pairs(data, "--data").items():
        env[f"REPRO_DATA_{name.upper()}"] = root
    env.update(_pairs(extra, "--env"))
    return env


def _tracking_note(uri: str | None) -> str | None:
    if not uri:
        return (
            "note: no --tracking-uri (nor MLFLOW_TRACKING_URI): a `repro run` job logs to sqlite "
            "in its temporary working directory on the cluster; pass --tracking-uri "
            "http://MLFLOW:5000 to keep the runs."
        )
    if uri.startswith(("sqlite:", "file:")) or "://" not in uri:
        return (
            f"note: {uri} is a path on the cluster's head node, not on this machine; an MLflow "
            "server (--tracking-uri http://MLFLOW:5000) keeps the runs where you can read them."
        )
    return None


def _print_upload(upload: Upload) -> None:
    """The dry run: each path that would go on stdout, one a line; the total on stderr."""
    for item in upload.files:
        print(shown_path(item.name))
    notes = "; ".join(upload_notes(upload))
    print(f"dry run: would upload {notes}; nothing was uploaded.", file=sys.stderr)


def _cmd_submit(args: argparse.Namespace) -> int:
    if args.dry_run:
        if args.no_upload:
            print("dry run: --no-upload: nothing would be uploaded.", file=sys.stderr)
        else:
            _print_upload(upload_files(Path(args.working_dir), args.include or []))
        return 0
    from repro.execution import jobs  # Ray's side: off `repro --help`

    address = jobs.dashboard_url(args.address)
    if args.status or args.logs or args.stop:
        client = jobs.connect(address)
        if args.status:
            print(jobs.outcome(client, args.status).line())
        elif args.logs:
            sys.stdout.write(jobs.logs(client, args.logs))
        else:
            stopped = jobs.stop(client, args.stop)
            print(f"job {args.stop}: " + ("stop requested" if stopped else "already finished"))
        return 0

    # Everything the user can get wrong is checked before anything is uploaded.
    entrypoint = jobs.entrypoint_command(args.command)
    uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    env_vars = job_env(uri, args.data, args.env)
    upload = None if args.no_upload else upload_files(Path(args.working_dir), args.include or [])
    client = jobs.connect(address)
    with tempfile.TemporaryDirectory(prefix="repro-submit-") as scratch:
        package = None if upload is None else write_package(upload, Path(scratch) / "code.zip")
        env = jobs.runtime_env(package, env_vars)
        note = _tracking_note(uri)
        if note and entrypoint.lstrip().startswith("repro run"):
            print(note, file=sys.stderr)
        if upload is not None:
            print(f"uploading {'; '.join(upload_notes(upload))}", file=sys.stderr)
        job_id = jobs.submit(
            client,
            entrypoint,
            env,
            submission_id=args.job_id,
            num_cpus=args.entrypoint_num_cpus,
            num_gpus=args.entrypoint_num_gpus,
        )
    print(f"submitted job {job_id} to {address}: {entrypoint}", file=sys.stderr)
    if not args.wait:
        print(job_id)
        print(
            f"follow it with `repro submit --address {address} --logs {job_id}` "
            f"or `--status {job_id}`",
            file=sys.stderr,
        )
        return 0
    try:
        result = jobs.follow(client, job_id)
    except KeyboardInterrupt:
        print(
            f"\nstopped following; job {job_id} keeps running on the cluster. "
            f"`repro submit --address {address} --logs {job_id}` shows its output, "
            f"`--stop {job_id}` stops it.",
            file=sys.stderr,
        )
        return 130
    print(result.line(), file=sys.stderr)
    return jobs.exit_code(result)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "submit",
        help="run a command on a Ray cluster as a Ray job",
        description="Submit COMMAND (after `--`) to a Ray cluster through Ray Jobs: the files git "
        "tracks in the working directory (less reports/, mlflow.db and other local stores) and "
        "those named with --include are uploaded, and nothing else; a file that looks like a "
        "secret (.env*, .envrc, *.pem, *.key, SSH keys, .netrc, .git-credentials, .pgpass, "
        ".npmrc, .pypirc, .vault-token, .databrickscfg, kubeconfig, terraform.tfstate, "
        "*service-account*.json, cloud credentials, a private key inside any file) or a link "
        "leaving the directory stops the submission, naming it (the home directory itself is "
        "refused; --dry-run lists what would go); the command runs on the head "
        "node (or on a node with the --entrypoint-num-* resources) with RAY_ADDRESS set to the "
        "cluster, so `repro run` inside it spreads its Ray tasks over the cluster's nodes.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("command", nargs="*", help="the command to run on the cluster, after `--`")
    p.add_argument(
        "--address",
        help="the head node's dashboard, http://HEAD:8265 (default: RAY_API_SERVER_ADDRESS, "
        "else http://127.0.0.1:8265)",
    )
    p.add_argument(
        "--wait",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="stream the job's output and exit with its exit status (default), or return "
        "as soon as it is submitted",
    )
    p.add_argument(
        "--working-dir",
        default=".",
        help="the directory whose git-tracked files go with the job (default: .)",
    )
    p.add_argument(
        "--include",
        action="append",
        metavar="PATH",
        help="also upload PATH (relative to --working-dir; a folder: every file under it), "
        "tracked or not (repeatable; needed where --working-dir is not a git checkout)",
    )
    p.add_argument(
        "--no-upload",
        action="store_true",
        help="upload nothing: run the command in the code installed on the cluster",
    )
    p.add_argument(
        "--tracking-uri", help="MLFLOW_TRACKING_URI for the job (default: MLFLOW_TRACKING_URI here)"
    )
    p.add_argument(
        "--data",
        action="append",
        metavar="NAME=PATH",
        help="dataset root on the cluster, e.g. imagenet=/mnt/imagenet "
        "(sets REPRO_DATA_NAME; repeatable)",
    )
    p.add_argument(
        "--env",
        action="append",
        metavar="KEY=VALUE",
        help="another environment variable (repeatable)",
    )
    p.add_argument("--job-id", help="the job's submission id (default: generated)")
    p.add_argument("--entrypoint-num-cpus", type=float, help="CPUs reserved for the command itself")
    p.add_argument(
        "--entrypoint-num-gpus",
        type=float,
        help="GPUs reserved for the command itself (puts it on a GPU node)",
    )
    query = p.add_mutually_exclusive_group()
    query.add_argument(
        "--dry-run",
        action="store_true",
        help="print the paths that would be uploaded, one a line, and their total size; "
        "upload and submit nothing",
    )
    query.add_argument("--status", metavar="JOB_ID", help="print a job's state and exit code")
    query.add_argument("--logs", metavar="JOB_ID", help="print a job's output so far")
    query.add_argument("--stop", metavar="JOB_ID", help="stop a job")
    p.set_defaults(func=_cmd_submit)
