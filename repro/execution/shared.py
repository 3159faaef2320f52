"""`python -m repro.execution.shared CMD ...`: run CMD (e.g. `dvc repro`) with one local Ray
instance that every stage joins through RAY_ADDRESS, instead of each stage starting and stopping
its own (about 5 s each). The instance belongs to this process and ends with it; an address the
user set (RAY_ADDRESS, params.yaml ray.address) is left alone and used as is. Ctrl-C at a
terminal reaches CMD as well: CMD meets it (its stages keep what they finished) while this waits,
then stops Ray; SIGTERM, sent to this process alone, is passed on to CMD the same way.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from repro import config
from repro.errors import ReproError
from repro.execution.state import EXIT_CODES, Terminated, signal_name, sigterm_interrupts


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        print("usage: python -m repro.execution.shared CMD [ARGS ...]", file=sys.stderr)
        return 2
    env = dict(os.environ)
    started, token_dir = False, None
    try:
        settings = config.load_settings()
    except ReproError as exc:
        print(exc.paragraph(), file=sys.stderr)
        return 2
    if not settings.ray_address:
        # Ray 2.60 turns token authentication on when it finds ~/.ray/auth_token, and drivers
        # joining by address do not follow: give the instance and its stages a token of its own.
        token_dir = tempfile.mkdtemp(prefix="repro-ray-")
        token = Path(token_dir) / "token"
        token.write_text(secrets.token_hex(32))
        token.chmod(0o600)
        for key, value in (("RAY_AUTH_MODE", "token"), ("RAY_AUTH_TOKEN_PATH", str(token))):
            os.environ[key] = env[key] = value
        import ray  # after the settings above: Ray reads them when it loads

        ray.init(
            num_cpus=os.cpu_count(),
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
        env["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address
        started = True
    try:
        return _call(argv, env)
    finally:
        if started:
            ray.shutdown()
        if token_dir:
            shutil.rmtree(token_dir, ignore_errors=True)


def _call(argv: list[str], env: dict[str, str]) -> int:
    """CMD's exit status; 130 or 143 once CMD has met Ctrl-C or SIGTERM (a second Ctrl-C
    kills it)."""
    proc = subprocess.Popen(argv, env=env)
    with sigterm_interrupts():
        try:
            return proc.wait()
        except KeyboardInterrupt as exc:
            if isinstance(exc, Terminated):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait()
            except KeyboardInterrupt:
                proc.kill()
                proc.wait()
            return EXIT_CODES[signal_name(exc)]


if __name__ == "__main__":
    sys.exit(main())
