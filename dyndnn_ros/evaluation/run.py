"""Run every policy on every scenario faster than real time; write a markdown report and PNG plots.

    python -m dyndnn_ros.evaluation.run --out build/eval [--scenarios a_changing_target ...] [--jobs 2]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from tqdm import tqdm

from dyndnn_ros.evaluation.report import metrics_table, write_report
from dyndnn_ros.evaluation.runner import DEFAULT_SPECS, PolicySpec, RunResult, run_policy
from dyndnn_ros.evaluation.scenario import all_scenarios, load_scenario
from dyndnn_ros.platforms.model import PlatformModel


def _run(job: tuple[str, PolicySpec, str, int]) -> RunResult:
    scenario_name, spec, board, seed = job
    return run_policy(load_scenario(scenario_name), spec, PlatformModel.load(board), seed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="build/eval", type=Path)
    parser.add_argument("--scenarios", nargs="*", help="scenario names (default: every config/scenarios/*.yaml)")
    parser.add_argument("--policies", nargs="*", help="policy labels to run (default: all)")
    parser.add_argument("--board", default="xavier_nx")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (runs are independent)")
    args = parser.parse_args(argv)

    names = args.scenarios or [s.name for s in all_scenarios()]
    specs = [s for s in DEFAULT_SPECS if not args.policies or s.label in args.policies]
    jobs = [(name, spec, args.board, args.seed) for name in names for spec in specs]
    started = time.monotonic()
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = list(tqdm(pool.map(_run, jobs), total=len(jobs), desc="runs", unit="run"))
    elapsed = time.monotonic() - started
    command = "python -m dyndnn_ros.evaluation.run " + " ".join(sys.argv[1:] if argv is None else argv)
    report = write_report(results, args.out, command.strip(), elapsed)
    (args.out / "metrics.json").write_text(json.dumps(metrics_table(results), indent=1))
    print(report.read_text())
    print(f"report: {report}  ({len(results)} runs, {elapsed:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
