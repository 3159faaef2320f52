"""The `repro` command: list papers and models, measure claims, render the report."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from repro import config, submit, tracking
from repro.bench import cli as bench_cli
from repro.claims import SUITE_NAMES, list_papers, load_paper
from repro.data import cli as data_cli
from repro.demos import cli as demos_cli
from repro.environment import collect, format_lines
from repro.errors import ReproError
from repro.evaluation import cli as eval_cli
from repro.files import printable
from repro.report import cli as report_cli
from repro.report import log_report, write_report
from repro.report.cli import compare_with_current, mlflow_results
from repro.report.content import demo_seconds, read_demos, read_measurements
from repro.report.rows import skipped_line
from repro.tracking import spool
from repro.tracking.client import EXIT_TRACKING_DEGRADED
from repro.train import cli as train_cli

if TYPE_CHECKING:
    from repro.runner.settings import RunSettings

EPILOG = """examples:
  repro papers                       list papers, their tables and claim counts
  repro papers vgg --claims          every claim of the VGG paper
  repro run vgg resnet               measure two papers (local Ray, MLflow in ./mlflow.db)
  repro run --all --ray-address ray://head:10001 --tracking-uri http://mlflow:5000
  repro report                       reports/README.md, index.html and results.csv
  repro report --from mlflow         the same, rebuilt from the MLflow runs alone
  repro run resnet --suite accuracy  train/evaluate accuracy claims on datasets present
  repro run --all --resume           after an interruption: measure only the papers missing
  repro data verify voc2007 --root ~/data/VOCdevkit/VOC2007
  repro eval detections --metric voc07 --gt VOCdevkit/VOC2007 --detections results/
  repro demo digits                  LeNet-5 on scikit-learn's digits, 1 vs 2 Ray workers
  repro sync                         log what was spooled while MLflow was down
  repro env                          the versions, GPU, driver and git commit behind results
  repro compare old/results.csv reports/results.csv   verdicts changed, values moved
  repro compare bench_a.csv bench_b.csv              images/s ratio B/A per model
  repro screenshot                   open reports/index.html in headless Chromium, check, PNG

exit status: 0 done; 1 some claims failed (their rows say why); 2 bad input or settings;
3 tracking degraded (results written, MLflow logs spooled: run `repro sync`); 4 `repro compare`
found a claim regressed (its gate: --fail-on); 130 interrupted (Ctrl-C), 143 terminated
(SIGTERM): the papers finished are kept (`repro run --resume`).
"""


def _cmd_papers(args: argparse.Namespace) -> int:
    papers_dir = Path(args.papers_dir) if args.papers_dir else None
    if papers_dir is not None and not papers_dir.is_dir():
        raise ReproError(
            f"--papers-dir {papers_dir} is not a directory.",
            "pass the directory that holds the paper YAML files (default: repro/papers).",
        )
    keys = args.papers or list_papers(papers_dir)
    papers = [load_paper(key, papers_dir) for key in keys]  # every file checked before output
    for paper in papers:
        kinds = Counter(c.kind for c in paper.claims)
        kind_text = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
        print(
            printable(
                f"{paper.paper}: {paper.title} ({paper.year}) - "
                f"{len(paper.claims)} claims ({kind_text})"
            )
        )
        tables: dict[str, list] = {}
        for c in paper.claims:
            tables.setdefault(c.table, []).append(c)
        for table, claims in tables.items():
            print(printable(f"    {table}: {len(claims)} claims"))
            if args.claims:
                for c in claims:
                    value = "x".join(map(str, c.value)) if isinstance(c.value, list) else c.value
                    model = f" on {c.model.key()}" if c.model else ""
                    layer = f" [{c.layer}]" if c.layer else ""
                    print(
                        printable(
                            f"        {c.id}: {c.row} {c.metric} = {value} {c.unit} "
                            f"({c.kind}{model}{layer})"
                        )
                    )
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from repro.models import build_model, get_model_spec, list_models

    if args.layers:
        model = build_model(args.layers)
        for path, module in model.named_modules():
            if path:
                print(f"{path}  ({type(module).__name__})")
        return 0
    for name in list_models(paper=args.paper):
        s = get_model_spec(name)
        size = "x".join(map(str, s.input_size))
        print(
            f"{name:22} paper={s.paper:12} input={size:12} {s.task:14} {s.source:11} "
            f"{s.description}"
        )
    return 0


def _print_plan(keys: list[str], settings: RunSettings) -> int:
    """Which claims of ``keys`` the suites would measure, and why the others would not run;
    nothing is measured (no Ray, no MLflow)."""
    from repro.runner.plan import check_claims, plan_paper

    totals: Counter[str] = Counter()
    papers = [load_paper(key, settings.papers_dir) for key in keys]
    check_claims(papers, settings.claims)
    for key, paper in zip(keys, papers, strict=True):
        plan = plan_paper(paper, settings)
        reasons = {r.claim_id: r.note for r in plan.not_run}
        for claim in paper.claims:
            if claim.kind not in settings.suites:
                continue
            reason = reasons.get(claim.id)
            state = "run" if reason is None else "not-run"
            totals[state] += 1
            print(f"{key}\t{claim.id}\t{claim.kind}\t{state}\t{reason or ''}")
    summary = ", ".join(f"{n} {state}" for state, n in sorted(totals.items()))
    print(
        f"# {len(keys)} paper(s), suites {', '.join(settings.suites)}: {summary}", file=sys.stderr
    )
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from repro import runner  # the suites, torch: not on `repro --help`

    flags = ("tracking_uri", "no_mlflow", "ray_address", "no_ray", "weights", "seeds", "papers_dir")
    settings = runner.RunSettings.resolve(
        args.params,
        suites=args.suite,
        out_dir=args.out,
        claims=[c for text in args.claims or () for c in text.split(",") if c.strip()],
        resume=args.resume,
        **{k: getattr(args, k) for k in flags},
    )
    keys = args.papers or (list_papers(settings.papers_dir) if args.all else None)
    if not keys:
        raise ReproError("no papers given.", "name papers (see `repro papers`) or pass --all.")
    if args.plan:
        return _print_plan(keys, settings)
    try:
        runs = runner.run_papers(keys, settings)
    except runner.RunInterrupted as stop:
        print(stop.message(), file=sys.stderr)
        return stop.exit_code
    for run in runs:
        counts = Counter(r.verdict for r in run.results)
        text = ", ".join(f"{n} {v}" for v, n in sorted(counts.items()))
        print(f"{run.paper}: {text}" + (" (reused, --resume)" if run.reused else ""))
        for r in run.results:
            if r.verdict in ("deviates", "error") and args.verbose:
                print(printable(f"    {r.verdict}: {r.table} / {r.row} / {r.metric}: {r.note}"))
    uri = settings.tracking_uri
    print(f"measurements written to {args.out}" + (f"; logged to MLflow at {uri}" if uri else ""))
    spooled = runner.degraded(runs)
    if uri and not spooled:
        _print_links(uri, [run.paper for run in runs])
    problem = runner.failures(runs)
    if problem:
        print(problem, file=sys.stderr)
    if spooled:
        print(spooled, file=sys.stderr)
    return 1 if problem else EXIT_TRACKING_DEGRADED if spooled else 0


def _cmd_sync(args: argparse.Namespace) -> int:
    entries = spool.pending(args.spool)
    folder = spool.spool_dir(args.spool)
    if not entries:
        print(f"nothing to sync: {folder} holds no spooled MLflow entries.")
        return 0
    outcome = spool.replay(args.tracking_uri, args.spool)
    target = args.tracking_uri or "the store each entry was meant for"
    print(
        f"replayed {len(outcome.replayed)} of {len(entries)} spooled entr(y/ies) to {target}: "
        f"{outcome.summary()}."
    )
    if outcome.remaining:
        print(
            f"tracking still degraded: {len(outcome.remaining)} entr(y/ies) remain in {folder} "
            f"({outcome.error}); start the store or pass --tracking-uri, then rerun `repro sync`.",
            file=sys.stderr,
        )
        return EXIT_TRACKING_DEGRADED
    return 0


def _cmd_env(args: argparse.Namespace) -> int:
    env = collect()
    print(json.dumps(env, indent=2) if args.json else "\n".join(format_lines(env)))
    return 0


def _print_links(uri: str, papers: list[str]) -> None:
    """Where to look in the MLflow UI (its runs table; a store that went away costs nothing)."""
    try:
        links = tracking.experiment_links(uri, papers)
    except Exception:  # noqa: BLE001 - the results are written and logged already
        return
    if not uri.startswith(("http://", "https://")) and links:
        print(f"MLflow UI: mlflow ui --backend-store-uri {uri}, then")
    for paper, link in links.items():
        print(f"  {paper}: {link}")


def _cmd_report(args: argparse.Namespace) -> int:
    if args.source == "mlflow":
        uri, read = mlflow_results(args.tracking_uri, args.params, args.run, args.papers or None)
        if not read.rows and not read.skipped:
            raise ReproError(f"MLflow at {uri} holds no repro runs.", "run `repro run` first.")
        rows, skipped = read.rows, read.skipped
        metas: list[dict] = []
        if Path(args.measurements).is_dir():
            metas = read_measurements(Path(args.measurements)).metas
    else:
        rows, metas, skipped = read_measurements(Path(args.measurements))
        if args.papers:
            rows = [r for r in rows if r["paper"] in args.papers]

    demos = Path(args.out) / "demos"
    comparison = None
    if args.compare:
        comparison = compare_with_current(args.compare, rows, args.tracking_uri, args.params)
        print("\n".join(comparison.lines))
    paths = write_report(
        rows, metas, Path(args.out), read_demos(demos), demo_seconds(demos), demos_dir=demos,
        comparison=comparison, skipped=skipped,
    )  # fmt: skip
    print("wrote " + ", ".join(str(p) for p in paths.values()) + skipped_line(skipped))
    if not args.no_mlflow:
        uri = config.settings_of(args).tracking_uri
        logged, line = log_report(paths, uri)
        if logged:  # else the warning said it (once), and the spool keeps the report's logging
            print(line)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="repro",
        description="Reproduce the numeric claims of the classic CNN papers: claims are data, "
        "measured on the papers' own networks through Ray, logged to MLflow, and judged.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("papers", help="list papers, tables and claims")
    p.add_argument("papers", nargs="*", help="paper keys (default: all)")
    p.add_argument("--claims", action="store_true", help="list every claim")
    p.add_argument("--papers-dir", help="directory of paper YAML files (default: repro/papers)")
    p.set_defaults(func=_cmd_papers)

    p = sub.add_parser("models", help="list registered models, or one model's layers")
    p.add_argument("--paper", help="only this paper's models")
    p.add_argument("--layers", metavar="MODEL", help="print MODEL's module paths (for `layer:`)")
    p.set_defaults(func=_cmd_models)

    p = sub.add_parser(
        "run",
        help="measure papers' claims",
        description="Measure the claims of the given papers: each model is one Ray task; results "
        "go to OUT/<paper>.csv and MLflow (one experiment per paper, one run per model).",
    )
    p.add_argument("papers", nargs="*", help="paper keys (see `repro papers`)")
    p.add_argument("--all", action="store_true", help="every paper in repro/papers/")
    p.add_argument(
        "--suite",
        action="append",
        choices=SUITE_NAMES,
        help="suite to run (repeatable; default: params.yaml suites, else analytic)",
    )
    config.add_settings_flags(p)
    p.add_argument("--no-ray", action="store_true", help="measure in this process, without Ray")
    p.add_argument(
        "--weights",
        action="append",
        metavar="MODEL=PATH",
        help="accuracy suite: evaluate this state-dict file for MODEL instead of training it by "
        "the paper's recipe (repeatable; also params.yaml weights:)",
    )
    p.add_argument(
        "--seeds",
        type=int,
        help="accuracy suite: training runs per recipe (verdicts then use a 95%% confidence "
        "interval; default params.yaml accuracy.seeds)",
    )
    p.add_argument(
        "--claims",
        action="append",
        metavar="ID[,ID]",
        help="measure only these claims (ids as `repro papers PAPER --claims` lists them; "
        "repeatable); the others are not-run, not selected",
    )
    p.add_argument(
        "--out",
        default="reports/measurements",
        help="measurement directory; each paper's files are written there as soon as it is "
        "measured, so an interrupted run keeps every finished paper",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="measure only what is missing: reuse a paper's files in --out when its metadata "
        "records exactly this configuration (suites, --claims, data roots, speed and accuracy "
        "settings, weights, the paper file, repro's code); any other is measured again, and "
        "why is said",
    )
    p.add_argument("--papers-dir", help="directory of paper YAML files (default: repro/papers)")
    p.add_argument("-v", "--verbose", action="store_true", help="print every deviation")
    p.add_argument(
        "--plan",
        action="store_true",
        help="measure nothing: print, one claim a line (paper, claim, kind, run|not-run, "
        "reason), what the suites would measure with these data roots and weights",
    )
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser(
        "sync",
        help="log to MLflow what was spooled while the tracking store was away",
        description="Replay the spooled MLflow entries (written when the tracking store stopped "
        "answering during `repro run`, training, `repro bench` or `repro report`), oldest "
        "first; each entry is deleted once logged, and one cut off half-way is completed, not "
        "logged twice. Exit status 3 while entries remain.",
    )
    p.add_argument(
        "--tracking-uri",
        help="log to this store instead of the one each entry was spooled for",
    )
    p.add_argument("--spool", help="spool folder (default: $REPRO_MLFLOW_SPOOL or ./.mlflow-spool)")
    p.set_defaults(func=_cmd_sync)

    p = sub.add_parser("report", help="render reports/ from measurements or MLflow")
    p.add_argument("papers", nargs="*", help="only these papers (default: all)")
    p.add_argument(
        "--from",
        dest="source",
        choices=["measurements", "mlflow"],
        default="measurements",
        help="where the results come from",
    )
    p.add_argument(
        "--run",
        metavar="RUN_OR_SESSION",
        help="with --from mlflow: one reproduction, by its parent run id, a run id or its "
        "session (the repro.session tag); default: the newest session of each paper",
    )
    p.add_argument("--measurements", default="reports/measurements", help="measurement directory")
    p.add_argument("--out", default="reports", help="output directory")
    p.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI: read from it with --from mlflow; the report is logged to it "
        "(experiment repro/report) either way",
    )
    p.add_argument("--no-mlflow", action="store_true", help="do not log the report to MLflow")
    p.add_argument("--params", help="params file (default: ./params.yaml if present)")
    p.add_argument(
        "--compare",
        metavar="OTHER",
        help="add a comparison section: OTHER (a results table, mlflow:KEY, or a bench CSV, "
        "then compared with benchmarks/results/bench_*.csv) against these results; see "
        "`repro compare --help`",
    )
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser(
        "env",
        help="print the environment every result records (versions, GPU, driver, git commit)",
        description="The environment gathered once per process and stored with every MLflow "
        "run, benchmark row and report: repro, the git commit and whether tracked files were "
        "changed, Python, torch, torchvision, CUDA, cuDNN, GPU(s) and driver (NVML), CPU, OS, "
        "Ray, MLflow and DVC. Paste it into a bug report.",
    )
    p.add_argument("--json", action="store_true", help="one JSON object instead of aligned lines")
    p.set_defaults(func=_cmd_env)

    # Commands that live beside the library parts they drive; each module imports its heavy
    # dependencies only when its command runs.
    for module in (bench_cli, train_cli, submit, data_cli, eval_cli, demos_cli, report_cli):
        module.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ReproError as exc:  # its text may quote a hostile file: no terminal escapes
        lines = exc.paragraph().split("\n")
        print("\n".join(printable(line) for line in lines), file=sys.stderr)
        return 2
    except BrokenPipeError:  # `repro papers | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("interrupted; measurement files already written are kept.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
