# SPDX-License-Identifier: Apache-2.0
"""Board descriptions loaded from YAML (config/platforms/*.yaml).

A description lists what a board offers to a DVFS component: CPU clusters and their frequency
tables, the GPU devfreq device, the memory clock (EMC). It is data, so a new board is a new YAML
file, not new code.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Tuple

import yaml

from dyndnn_ros.paths import known_configs, resolve_config


class PlatformError(ValueError):
    """A platform description is missing or malformed."""


@dataclass(frozen=True)
class CpuCluster:
    name: str
    cpus: tuple[int, ...]

    @property
    def policy_cpu(self) -> int:
        """The CPU whose cpufreq policy directory governs the whole cluster."""
        return self.cpus[0]


@dataclass(frozen=True)
class ClockTables:
    cpu_clusters: tuple[CpuCluster, ...]
    cpu_available_khz: tuple[int, ...]
    cpu_governor: str
    gpu_of_node_name: str
    gpu_devfreq_path: str
    gpu_available_hz: tuple[int, ...]
    gpu_governor: str
    emc_available_hz: tuple[int, ...]

    @property
    def cluster_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.cpu_clusters)

    def cluster_index(self, name: str | None, fallback: int) -> int:
        """Index of the cluster called `name`; for a name the board lacks (or none), the
        `fallback`-th cluster, wrapping: an app that names no cluster of this board is placed by
        its order among the apps."""
        names = self.cluster_names
        return names.index(name) if name in names else fallback % len(names)


@dataclass(frozen=True)
class PlatformDescription:
    name: str
    display_name: str
    clocks: ClockTables
    raw: dict[str, Any]
    """The whole YAML document, for sections other modules own (e.g. performance/power models)."""


def _sorted_unique(values: list[int], what: str) -> tuple[int, ...]:
    if not values or any(int(v) <= 0 for v in values):
        raise PlatformError(
            f"{what}: need a non-empty list of positive frequencies, got {values!r}"
        )
    return tuple(sorted({int(v) for v in values}))


def parse_platform(doc: dict[str, Any]) -> PlatformDescription:
    try:
        clocks = doc["clocks"]
        cpu, gpu, emc = clocks["cpu"], clocks["gpu"], clocks["emc"]
        clusters = tuple(
            CpuCluster(c["name"], tuple(int(i) for i in c["cpus"])) for c in cpu["clusters"]
        )
        tables = ClockTables(
            cpu_clusters=clusters,
            cpu_available_khz=_sorted_unique(cpu["available_khz"], "clocks.cpu.available_khz"),
            cpu_governor=str(cpu.get("governor", "schedutil")),
            gpu_of_node_name=str(gpu["of_node_name"]),
            gpu_devfreq_path=str(gpu["devfreq_path"]).strip("/"),
            gpu_available_hz=_sorted_unique(gpu["available_hz"], "clocks.gpu.available_hz"),
            gpu_governor=str(gpu.get("governor", "nvhost_podgov")),
            emc_available_hz=_sorted_unique(emc["available_hz"], "clocks.emc.available_hz"),
        )
        return PlatformDescription(
            str(doc["name"]), str(doc.get("display_name", doc["name"])), tables, doc
        )
    except (KeyError, TypeError) as exc:
        raise PlatformError(
            f"malformed platform description: missing or wrong field {exc}"
        ) from exc


def _merged(base: Dict[str, Any], over: Dict[str, Any]) -> Dict[str, Any]:
    """`over` on top of `base`, mappings merged key by key, anything else replaced."""
    out = dict(base)
    for key, value in over.items():
        both = isinstance(value, dict) and isinstance(base.get(key), dict)
        out[key] = _merged(base[key], value) if both else value
    return out


def _read_doc(name_or_path: str | Path, seen: Tuple[str, ...] = ()) -> Dict[str, Any]:
    path = resolve_config("platforms", name_or_path, "platform description", PlatformError)
    with path.open() as f:
        doc = yaml.safe_load(f) or {}
    parent = doc.pop("extends", None)
    if parent is None:
        return doc
    if parent in seen:  # a power mode's file extends its board's: a cycle is a typo
        raise PlatformError(f"{path}: 'extends' loops through {list(seen)}")
    return _merged(_read_doc(parent, seen + (str(parent),)), doc)


def load_platform(name_or_path: str | Path) -> PlatformDescription:
    """Load a description by board name (config/platforms/<name>.yaml) or by file path; a file
    with `extends: <name>` is that description with its own keys on top."""
    return parse_platform(_read_doc(name_or_path))


def known_platforms() -> List[str]:
    return known_configs("platforms")
