# SPDX-License-Identifier: Apache-2.0
"""Terminal view of the live system (targets, active sub-networks, latency, clocks, power) with
rich."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table

from dyndnn_ros.cli.ros_client import DyndnnClient


def _limit(value: float, fmt: str) -> str:
    return fmt.format(value) if value else "-"


def target_rows(targets: dict, manager) -> list[tuple[str, object, str]]:
    """(app, target, state) per target: as the manager reports them (in force, not met, given up,
    parked) when it does, else the targets seen on the topic."""
    if manager is None:
        waiting = "[yellow]no manager status yet[/yellow]"
        return [(app, t, waiting) for app, t in sorted(targets.items())]
    given_up = {a.app_id: a.reason for a in manager.given_up}
    unmet = {a.app_id: a.reason for a in manager.unmet}
    rows = []
    for t in manager.targets:
        if t.app_id in given_up:
            state = f"[red]given up: {given_up[t.app_id]}[/red]"
        elif t.app_id in unmet:
            state = f"[red]not met: {unmet[t.app_id]}[/red]"
        else:
            state = "[green]managed[/green]"
        rows.append((t.app_id, t, state))
    parked = "[yellow]parked: model not announced[/yellow]"
    rows += [(t.app_id, t, parked) for t in manager.parked_targets]
    return sorted(rows, key=lambda row: row[0])


def render(client: DyndnnClient) -> Group:
    with client.lock:
        targets = dict(client.targets)
        profiles = dict(client.profiles)
        stats = {model: list(history)[-20:] for model, history in client.stats.items()}
        hardware = client.hardware
        applied = client.dvfs_applied[-1] if client.dvfs_applied else None
        manager = client.manager

    apps = Table(title=f"Targets (policy {manager.policy})" if manager else "Targets", expand=True)
    for column in ("app", "model", "max latency", "min accuracy", "max power", "max energy",
                   "priority", "state"):
        apps.add_column(column)
    for app, t, state in target_rows(targets, manager):
        apps.add_row(
            app,
            t.model_id,
            _limit(t.max_latency_ms, "{:g} ms"),
            _limit(t.min_accuracy, "{:.1%}"),
            _limit(t.max_power_w, "{:g} W"),
            _limit(t.max_energy_mj, "{:g} mJ"),
            str(t.priority),
            state,
        )

    models = Table(title="Models", expand=True)
    for column in (
        "model",
        "backend",
        "active sub-network",
        "latency (mean of last 20)",
        "accuracy",
        "energy/frame",
        "dropped",
    ):
        models.add_column(column)
    for model in sorted(set(profiles) | set(stats)):
        recent = stats.get(model) or []
        if recent:
            last = recent[-1]
            mean = sum(s.latency_ms for s in recent) / len(recent)
            models.add_row(
                model,
                last.backend,
                last.active_subnet,
                f"{mean:.2f} ms",
                f"{last.accuracy:.1%}",
                f"{last.energy_mj:.1f} mJ",
                str(last.frames_dropped),
            )
        else:
            models.add_row(
                model, profiles[model].backend, profiles[model].active_subnet, "-", "-", "-", "-"
            )

    board = Table(title="Board", expand=True)
    for column in ("clock", "frequency", "utilisation", "pinned by dvfs_node"):
        board.add_column(column)
    if hardware is not None:
        pinned_cpu = {c.cluster: c.frequency_khz for c in applied.cpu_clocks} if applied else {}
        for c in hardware.cpu_clusters:
            pin = pinned_cpu.get(c.name)
            board.add_row(
                f"CPU {c.name} ({c.online_cores}/{c.total_cores} cores)",
                f"{c.frequency_khz / 1000:.0f} MHz",
                f"{c.utilization:.0%}",
                f"{pin / 1000:.0f} MHz" if pin else "-",
            )
        gpu_pin = applied.gpu_frequency_hz if applied else 0
        emc_pin = applied.emc_frequency_hz if applied else 0
        board.add_row(
            "GPU",
            f"{hardware.gpu_frequency_hz / 1e6:.0f} MHz",
            f"{hardware.gpu_utilization:.0%}",
            f"{gpu_pin / 1e6:.0f} MHz" if gpu_pin else "-",
        )
        board.add_row(
            "EMC",
            f"{hardware.emc_frequency_hz / 1e6:.0f} MHz",
            f"{hardware.emc_utilization:.0%}",
            f"{emc_pin / 1e6:.0f} MHz" if emc_pin else "-",
        )
        rails = ", ".join(f"{r.name} {r.power_w:.2f} W" for r in hardware.rails)
        board.caption = f"source {hardware.source}, total power {hardware.total_power_w:.2f} W" + (
            f" ({rails})" if rails else ""
        )
    return Group(apps, models, board)
