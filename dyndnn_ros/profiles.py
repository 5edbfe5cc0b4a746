# SPDX-License-Identifier: Apache-2.0
"""Sub-network profiles: the table a profiler writes and the resource manager reads.

One file per (model, device): for every sub-network its measured accuracy, latency distribution,
throughput, memory, parameters and MACs. YAML, so people can read and diff it.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ProfileError(ValueError):
    """A profile file is missing, malformed or names a sub-network twice."""


@dataclass(frozen=True)
class SubnetProfile:
    id: str
    accuracy: float
    """Top-1 accuracy as a fraction in [0, 1]."""
    latency_p50_ms: float
    latency_p95_ms: float
    latency_p99_ms: float
    latency_mean_ms: float
    throughput_fps: float = 0.0
    peak_memory_mb: float = 0.0
    params: int = 0
    macs: int = 0
    energy_mj: float | None = None
    """Energy per inference where it was measured or modelled; None where unknown."""


@dataclass(frozen=True)
class ModelProfile:
    model: str
    device: str
    """Where it was profiled: 'cpu', 'gpu', or a simulated board device such as 'xavier_nx/gpu'."""
    subnets: tuple[SubnetProfile, ...]
    family: str = ""
    threads: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ids = [s.id for s in self.subnets]
        if not ids:
            raise ProfileError(f"profile of {self.model!r} lists no sub-networks")
        if len(set(ids)) != len(ids):
            raise ProfileError(f"profile of {self.model!r} names a sub-network twice: {ids}")
        for s in self.subnets:
            numbers = (
                s.accuracy,
                s.latency_p50_ms,
                s.latency_p95_ms,
                s.latency_p99_ms,
                s.latency_mean_ms,
            )
            if (
                not all(math.isfinite(v) for v in numbers)
                or s.latency_p50_ms <= 0
                or not 0 <= s.accuracy <= 1
            ):
                raise ProfileError(
                    f"profile of {self.model!r}: sub-network {s.id!r} has invalid figures {s}"
                )

    def subnet(self, subnet_id: str) -> SubnetProfile:
        for s in self.subnets:
            if s.id == subnet_id:
                return s
        raise ProfileError(
            f"model {self.model!r} has no sub-network {subnet_id!r}; known: {self.ids}"
        )

    @property
    def ids(self) -> list[str]:
        return [s.id for s in self.subnets]


def smallest_subnet(profile: ModelProfile) -> str:
    """The sub-network with the least work per frame: fewest MACs where every sub-network has a
    count, else fewest parameters, else the lowest median latency."""
    subnets = profile.subnets
    if all(s.macs > 0 for s in subnets):
        return min(subnets, key=lambda s: s.macs).id
    if all(s.params > 0 for s in subnets):
        return min(subnets, key=lambda s: s.params).id
    return min(subnets, key=lambda s: s.latency_p50_ms).id


def profile_to_dict(profile: ModelProfile) -> dict[str, Any]:
    doc = asdict(profile)
    doc["subnets"] = [asdict(s) for s in profile.subnets]
    return doc


def profile_from_dict(doc: dict[str, Any]) -> ModelProfile:
    try:
        subnets = tuple(SubnetProfile(**{**s, "id": str(s["id"])}) for s in doc["subnets"])
        return ModelProfile(
            model=str(doc["model"]),
            device=str(doc["device"]),
            subnets=subnets,
            family=str(doc.get("family", "")),
            threads=int(doc.get("threads", 0)),
            metadata=dict(doc.get("metadata") or {}),
        )
    except (KeyError, TypeError) as exc:
        raise ProfileError(f"malformed profile: {exc}") from exc


def save_profile(profile: ModelProfile, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(profile_to_dict(profile), sort_keys=False))
    return path


def load_profile(path: str | Path) -> ModelProfile:
    path = Path(path)
    if not path.is_file():
        raise ProfileError(f"no profile file at {path}")
    return profile_from_dict(yaml.safe_load(path.read_text()))
