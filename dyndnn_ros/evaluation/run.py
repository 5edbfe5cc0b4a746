# SPDX-License-Identifier: Apache-2.0
"""Run every policy on every scenario faster than real time; write a markdown report, metrics.json
and PNG plots, with a sensitivity table over the platform model's uncertain constants.

    python -m dyndnn_ros.evaluation.run --out build/eval [--scenarios NAME_OR_FILE ...]
        [--board NAME_OR_FILE] [--policies LABEL ...] [--no-sensitivity] [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from tqdm import tqdm

from dyndnn_ros.evaluation.report import beats_oracle, metrics, metrics_table, write_report
from dyndnn_ros.evaluation.runner import (
    BASELINE_LABEL,
    DEFAULT_SPECS,
    THESIS_BASELINE_LABEL,
    PolicySpec,
    RunResult,
    run_policy,
)
from dyndnn_ros.evaluation.scenario import ScenarioError, all_scenarios, load_scenario
from dyndnn_ros.evaluation.sensitivity import Variant, sensitivity_table, variants
from dyndnn_ros.platforms.description import PlatformError, load_platform
from dyndnn_ros.platforms.model import PlatformModel

SENSITIVITY_LABELS = (BASELINE_LABEL, THESIS_BASELINE_LABEL, "hierarchical", "oracle")


def _run(job: tuple[str, PolicySpec, str, int, Variant | None]) -> RunResult:
    scenario_ref, spec, board, seed, variant = job
    model = variant.apply(load_platform(board)) if variant else PlatformModel.load(board)
    return run_policy(load_scenario(scenario_ref), spec, model, seed)


def _pct(new: float, ref: float) -> float:
    return 100.0 * (new - ref) / ref if ref else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="build/eval", type=Path)
    parser.add_argument(
        "--scenarios",
        nargs="*",
        help="scenario names or YAML files (default: every config/scenarios/*.yaml)",
    )
    parser.add_argument("--policies", nargs="*", help="policy labels to run (default: all)")
    parser.add_argument(
        "--board", default="xavier_nx", help="board name (config/platforms) or description file"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--jobs", type=int, default=2, help="worker processes (runs are independent)"
    )
    parser.add_argument(
        "--no-sensitivity", action="store_true", help="skip the runs under varied model constants"
    )
    args = parser.parse_args(argv)

    refs = args.scenarios or [str(s.name) for s in all_scenarios()]
    try:  # fail early, with the known names, on a bad scenario or board
        board = load_platform(args.board)
        clusters = board.clocks.cluster_names
        devices = sorted(PlatformModel(board).devices)
        names = []
        for ref in refs:
            scenario = load_scenario(ref)
            scenario.check_board(board.name, clusters, devices)
            names.append(scenario.name)
    except (ScenarioError, PlatformError) as exc:
        parser.error(str(exc))
    specs = [s for s in DEFAULT_SPECS if not args.policies or s.label in args.policies]
    jobs = [(ref, spec, args.board, args.seed, None) for ref in refs for spec in specs]
    has_cpu_app = {ref: any(a.device == "cpu" for a in load_scenario(ref).apps) for ref in refs}
    sensitivity = (
        []
        if args.no_sensitivity
        else [
            (ref, spec, args.board, args.seed, v)
            for v in variants()
            for ref in refs
            if v.applies_to(has_cpu_app[ref])
            for spec in DEFAULT_SPECS
            if spec.label in SENSITIVITY_LABELS
        ]
    )
    started = time.monotonic()
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        everything = list(
            tqdm(
                pool.map(_run, jobs + sensitivity),
                total=len(jobs) + len(sensitivity),
                desc="runs",
                unit="run",
            )
        )
    elapsed = time.monotonic() - started
    results, varied = everything[: len(jobs)], everything[len(jobs) :]
    rows, varied_metrics = [], []
    for k in range(0, len(varied), len(SENSITIVITY_LABELS)):
        group = {r.spec.label: metrics(r) for r in varied[k : k + len(SENSITIVITY_LABELS)]}
        variant = sensitivity[k][4]
        h = group["hierarchical"].energy_per_frame_on_goal_mj
        changes = {
            "vs schedutil": _pct(h, group[BASELINE_LABEL].energy_per_frame_on_goal_mj),
            "vs largest": _pct(h, group[THESIS_BASELINE_LABEL].energy_per_frame_on_goal_mj),
            "vs oracle": _pct(h, group["oracle"].energy_per_frame_on_goal_mj),
            "beats oracle": float(beats_oracle(group["hierarchical"], group["oracle"])),
        }
        scenario = varied[k].scenario.name
        rows.append((variant.label, scenario, changes))
        varied_metrics.append({"variant": variant.label, "scenario": scenario, **changes})
    command = "python -m dyndnn_ros.evaluation.run " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    lines = sensitivity_table(rows, names) if rows else []
    report = write_report(results, args.out, command.strip(), elapsed, lines)
    document = {"runs": metrics_table(results), "sensitivity": varied_metrics}
    (args.out / "metrics.json").write_text(json.dumps(document, indent=1, default=float))
    print(report.read_text())
    print(f"report: {report}  ({len(everything)} runs, {elapsed:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
