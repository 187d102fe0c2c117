"""`python -m bench [--smoke] [--only NAME ...] [--output FILE]`; see bench/__init__.py.

Exit status: 0 when every measure ran (and, in a full run, met its goals), 1 when a full run
missed a goal, 2 when a measure failed to run. A smoke run judges no goal: its counts are too
small for percentiles to mean anything; it proves that every figure can still be produced.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from rich.console import Console

from bench.measure import Measure
from bench.measures import MEASURES
from bench.results import (
    MeasureResult,
    machine_info,
    results_document,
    results_table,
    write_results,
)
from bench.stack import Stack, running_stack
from tests.support.services import REPO_ROOT

BENCH_DIR = Path(__file__).resolve().parent
console = Console()


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true",
                        help="tiny counts, no goals judged (what `make test` runs)")
    parser.add_argument("--only", action="append", choices=list(MEASURES), metavar="NAME",
                        help=f"run only this measure (repeatable): {', '.join(MEASURES)}")
    parser.add_argument("--output", type=Path, default=None,
                        help="results file (default bench/results.json, "
                             "bench/results-smoke.json with --smoke)")
    return parser.parse_args(argv)


def _run_one(measure: Measure, stack: Stack, smoke: bool) -> MeasureResult:
    result = MeasureResult(measure.name, measure.title)
    console.print(f"[bold]{measure.title}[/bold] ...")
    start = time.monotonic()
    try:
        result.parameters, result.figures = measure.run(stack, smoke)
    except Exception as exc:  # noqa: BLE001 - one broken measure must not hide the others
        result.error = f"{type(exc).__name__}: {exc}"
        console.print(f"[red]{measure.title} failed[/red]")
        console.print(traceback.format_exc(), markup=False, highlight=False)
    result.duration_s = time.monotonic() - start
    missing = set(measure.figures) - {f.name for f in result.figures}
    if result.error is None and missing:
        result.error = f"figures not produced: {sorted(missing)}"
    console.print(f"  done in {result.duration_s:.1f} s")
    return result


def _terminated(signum: int, frame: FrameType | None) -> None:
    # SIGTERM (e.g. a CI timeout) unwinds like Ctrl-C, so every started process is stopped
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    signal.signal(signal.SIGTERM, _terminated)
    output: Path = args.output or BENCH_DIR / ("results-smoke.json" if args.smoke
                                               else "results.json")
    chosen = [m for name, m in MEASURES.items() if not args.only or name in args.only]
    started = datetime.now(UTC)
    work_dir = Path(tempfile.mkdtemp(prefix="agent-broker-bench-"))
    results: list[MeasureResult] = []
    redis_version = ""
    ok = False
    try:
        console.print(f"starting Redis, Cerbos, the OIDC provider and a broker (logs in "
                      f"{work_dir})")
        with running_stack(work_dir) as stack:
            redis_version = stack.redis_version()
            for measure in chosen:
                results.append(_run_one(measure, stack, args.smoke))
        ok = all(r.error is None for r in results)
    except Exception as exc:  # noqa: BLE001 - the stack did not start: say why, exit 2
        console.print(f"[red]the bench stack failed: {type(exc).__name__}: {exc}[/red]",
                      highlight=False)
        return 2
    finally:
        if ok:
            shutil.rmtree(work_dir, ignore_errors=True)
        else:
            console.print(f"[yellow]logs kept in {work_dir}[/yellow]")
    machine = machine_info(REPO_ROOT, redis=redis_version)
    document = results_document(results, smoke=args.smoke, started=started, machine=machine)
    write_results(output, document)
    console.print(results_table(results, smoke=args.smoke))
    console.print(f"results written to {output}")
    if not ok:
        return 2
    return 0 if args.smoke or document["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
