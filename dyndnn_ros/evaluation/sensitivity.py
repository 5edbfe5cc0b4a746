# SPDX-License-Identifier: Apache-2.0
"""How the conclusions move when the platform model's uncertain constants do.

Each variant changes one assumption of the board description (config/platforms/<board>.yaml):
`host_wait_busy` (does the CUDA host thread spin or block while the GPU runs: CUDA's
cudaDeviceScheduleAuto may pick either) at 0, 0.5 and 1, and each power group (base, CPU, GPU,
EMC: leakage and dynamic together) at -30 % and +30 %. Scaling every constant together would
change no ratio, so each group moves alone. Amdahl's parallel fraction of CPU inference (0.7 and
0.97 beside the board's value) moves only scenarios with an app on the CPU.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Sequence

from dyndnn_ros.evaluation.report import LATENESS_MARGIN, ORACLE_MARGIN, SERVED_MARGIN_PCT
from dyndnn_ros.platforms.description import PlatformDescription, parse_platform
from dyndnn_ros.platforms.model import PlatformModel

POWER_GROUPS = {
    "base": (("power", "base_w"),),
    "CPU": (("power", "cpu", "leakage_w"), ("power", "cpu", "dynamic_w_per_core")),
    "GPU": (("power", "gpu", "leakage_w"), ("power", "gpu", "dynamic_w")),
    "EMC": (("power", "emc", "leakage_w"), ("power", "emc", "dynamic_w")),
}


@dataclass(frozen=True)
class Variant:
    label: str
    host_wait_busy: float | None = None
    """set performance.host_wait_busy to this (None: as the board file says)"""
    power_group: str = ""
    power_scale: float = 1.0
    parallel_fraction: float | None = None
    """set performance.devices.cpu.parallel_fraction to this (None: as the board file says)"""

    def applies_to(self, has_cpu_app: bool) -> bool:
        """Whether this variant can move a scenario's result."""
        return self.parallel_fraction is None or has_cpu_app

    def apply(self, description: PlatformDescription) -> PlatformModel:
        doc: dict[str, Any] = copy.deepcopy(description.raw)
        if self.host_wait_busy is not None:
            doc["performance"]["host_wait_busy"] = self.host_wait_busy
        if self.parallel_fraction is not None:
            doc["performance"]["devices"]["cpu"]["parallel_fraction"] = self.parallel_fraction
        for path in POWER_GROUPS.get(self.power_group, ()):
            node = doc
            for key in path[:-1]:
                node = node[key]
            node[path[-1]] = float(node[path[-1]]) * self.power_scale
        return PlatformModel(parse_platform(doc))


def variants() -> list[Variant]:
    found = [Variant(f"host_wait_busy {v:g}", host_wait_busy=v) for v in (0.0, 0.5, 1.0)]
    for group in POWER_GROUPS:
        found += [
            Variant(f"{group} power {100 * (s - 1):+.0f} %", power_group=group, power_scale=s)
            for s in (0.7, 1.3)
        ]
    found += [
        Variant(f"CPU parallel fraction {p:g}", parallel_fraction=p) for p in (0.7, 0.97)
    ]
    return found


def sensitivity_table(
    rows: Sequence[tuple[str, str, dict[str, float]]], scenarios: Sequence[str]
) -> list[str]:
    """Markdown: per variant and scenario, hierarchical's energy per frame on goal against the
    schedutil baseline, the thesis' baseline and the oracle; then which signs hold under every
    variant.

    rows: (variant label, scenario, {"vs schedutil": %, "vs largest": %, "vs oracle": %,
    "beats oracle": 1.0 or 0.0, report.beats_oracle})."""
    keys = ("vs schedutil", "vs largest", "vs oracle")
    lines = [
        "",
        "## Sensitivity: hierarchical's energy per frame on goal under other assumptions",
        "",
        "Each cell: vs schedutil / vs largest / vs oracle (%). A conclusion 'holds' when its sign",
        "is the same under every variant.",
        "",
        "| variant | " + " | ".join(scenarios) + " |",
        "|---|" + "---:|" * len(scenarios),
    ]
    cells: dict[tuple[str, str], dict[str, float]] = {(v, s): d for v, s, d in rows}
    for label in dict.fromkeys(v for v, _, _ in rows):
        lines.append(
            f"| {label} | "
            + " | ".join(
                " / ".join(f"{cells[label, s][k]:+.1f}" for k in keys)
                if (label, s) in cells
                else ""
                for s in scenarios
            )
            + " |"
        )
    lines += [
        "",
        "| scenario | less energy per frame on goal than schedutil | than largest |",
        "|---|---|---|",
    ]
    for s in scenarios:
        values = [d for (_, sc), d in cells.items() if sc == s]
        schedutil = _verdict([d["vs schedutil"] for d in values])
        lines.append(f"| {s} | {schedutil} | {_verdict([d['vs largest'] for d in values])} |")
    beaten = [
        f"{label} / {s}: {d['vs oracle']:+.1f} %"
        for (label, s), d in cells.items()
        if d["beats oracle"]
    ]
    lines += [
        "",
        "Variants where hierarchical beats the oracle (energy per frame on goal lower by more"
        f" than {100 * ORACLE_MARGIN:g} %, each priority's frames on goal and in time within"
        f" {SERVED_MARGIN_PCT:g} point, its lateness within {100 * LATENESS_MARGIN:g} % of the"
        " goal): " + ("; ".join(beaten) if beaten else "none") + ".",
    ]
    return lines


def _verdict(changes: Sequence[float]) -> str:
    if all(c < 0 for c in changes):
        return f"holds under all ({max(changes):+.1f} % at worst)"
    if all(c >= 0 for c in changes):
        return f"never ({min(changes):+.1f} % at best)"
    return f"depends on the assumption ({min(changes):+.1f} to {max(changes):+.1f} %)"
