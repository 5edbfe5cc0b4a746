"""`dyndnn demo`: the whole system on a simulated Jetson, showing each hop of the control loop.

1. the inference node announces its sub-networks (profiled at start-up);
2. a target that asks for accuracy makes the manager switch up, and the node's stats show it;
3. a tight latency target makes the manager switch down;
4. the manager's DVFS command makes the DVFS node write the clock files, and it reports what it set;
5. on shutdown the DVFS node puts every clock file back as it found it.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Callable

from rich.console import Console
from rich.table import Table

from dyndnn_ros.cli.ros_client import DyndnnClient
from dyndnn_ros.cli.status_view import render

STARTUP_TIMEOUT_S = 90.0
STEP_TIMEOUT_S = 20.0


def clock_files(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text().strip() for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()}


def run_demo(args: argparse.Namespace, start_system: Callable, console: Console) -> int:
    group, root, _ = start_system(args, echo=False)
    boot = clock_files(root)
    results: list[tuple[str, bool, str]] = []

    def check(step: str, ok: bool, detail: str) -> bool:
        results.append((step, ok, detail))
        console.print(f"{'[green]✓' if ok else '[red]✗'}[/] {step}: {detail}")
        return ok

    try:
        with DyndnnClient(node_name="dyndnn_demo") as client:
            console.rule("1. the inference node announces its sub-networks")
            if not check("model announced", client.wait_until(lambda: bool(client.profiles), STARTUP_TIMEOUT_S),
                         "profile received" if client.profiles else f"nothing within {STARTUP_TIMEOUT_S:g} s"):
                return 1
            announced = next(iter(client.profiles.values()))
            model = announced.model_id
            table = Table("sub-network", "accuracy", "p50 latency", "p95 latency", "MACs", title=f"model {model!r} ({announced.backend})")
            for s in announced.subnets:
                table.add_row(s.id, f"{s.accuracy:.1%}", f"{s.latency_p50_ms:.2f} ms", f"{s.latency_p95_ms:.2f} ms", f"{s.macs:,}")
            console.print(table)
            by_accuracy = sorted(announced.subnets, key=lambda s: (s.accuracy, -s.latency_p95_ms))
            best, fastest = by_accuracy[-1], min(announced.subnets, key=lambda s: s.latency_p95_ms)

            def target_round(step: str, expected: str, **limits: float) -> None:
                console.rule(step)
                console.print(f"publishing target for app 'classifier': {limits}")
                client.set_target("classifier", model, **limits)
                got = client.wait_for_stats(model, lambda s: s.active_subnet == expected, STEP_TIMEOUT_S)
                switch = next((m for m in reversed(client.switches) if m.model_id == model), None)
                if switch:
                    console.print(f"manager -> SubnetSwitch {switch.subnet_id!r}: {switch.reason}")
                check(step, got is not None,
                      f"InferenceStats show {expected!r} ({got.latency_ms:.2f} ms/frame)" if got else f"stats never showed {expected!r}")

            target_round("2. an accuracy target switches up", best.id,
                         min_accuracy=best.accuracy, max_latency_ms=round(best.latency_p95_ms * 20, 1))
            target_round("3. a tight latency target switches down", fastest.id,
                         max_latency_ms=round(fastest.latency_p95_ms * 1.5, 2))

            console.rule("4. DVFS: manager command -> clock files -> applied report")
            applied = client.wait_until(lambda: any(m.mode == 0 for m in client.dvfs_applied), STEP_TIMEOUT_S)
            if client.dvfs_commands:
                command = client.dvfs_commands[-1]
                console.print(f"manager -> DvfsCommand: CPU {dict(zip(command.cpu_cluster_names, command.cpu_frequencies_khz))} kHz, "
                              f"GPU {command.gpu_frequency_hz} Hz, EMC {command.emc_frequency_hz} Hz")
            changed = {k: (boot.get(k), v) for k, v in clock_files(root).items() if boot.get(k) != v and ("freq" in k or "rate" in k)}
            for name, (before, after) in sorted(changed.items()):
                console.print(f"  {name}: {before} -> {after}")
            check("clock files written", applied and bool(changed), f"{len(changed)} clock files changed under {root}")
            console.print(render(client))
    finally:
        console.rule("5. shutdown")
        codes = group.stop()
        check("clean exit", all(code == 0 for code in codes.values()), str(codes))
        restored = clock_files(root) == boot
        check("clocks restored", restored, "every clock file is back to its boot value" if restored else "clock files differ from boot")
    failed = [step for step, ok, _ in results if not ok]
    console.rule("summary")
    console.print(f"{len(results) - len(failed)}/{len(results)} steps passed" + (f"; failed: {failed}" if failed else ""))
    console.print(f"simulated board: {root}")
    return 1 if failed else 0
