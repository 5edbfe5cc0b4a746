"""System-level search: the clocks that meet every application's latency at the least predicted power.

The whole clock grid (GPU x EMC x CPU tables) is evaluated at once with the platform model, so a
decision costs a few milliseconds. Clusters that run no application are left at their lowest clock.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from dyndnn_ros.platforms.description import PlatformDescription
from dyndnn_ros.platforms.model import AppLoad, OperatingPoint, PlatformModel
from dyndnn_ros.policies.base import ClockSetting, PolicyError
from dyndnn_ros.profiles import SubnetProfile


def _cpu_point(model: PlatformModel, c: int, used: set[int]) -> tuple[int, ...]:
    table = model.description.clocks.cpu_available_khz
    return tuple(int(table[c]) if i in used else int(table[0]) for i in range(model.clusters))


def _best_effort(model: PlatformModel, demands, power: np.ndarray, tail: np.ndarray, power_cap_w: float, used: set[int]) -> ClockChoice:
    lateness = np.zeros(power.shape)
    for i, d in enumerate(demands):
        if d.max_tail_ms > 0:
            lateness = np.maximum(lateness, tail[i] / d.max_tail_ms)
    allowed = power <= power_cap_w if power_cap_w > 0 and (power <= power_cap_w).any() else np.ones(power.shape, dtype=bool)
    worst = np.where(allowed, lateness, np.inf)
    near = allowed & (worst <= worst.min() * 1.01)
    g, e, c = np.unravel_index(int(np.argmin(np.where(near, power, np.inf))), power.shape)
    clocks = model.description.clocks
    point = OperatingPoint(_cpu_point(model, c, used), int(clocks.gpu_available_hz[g]), int(clocks.emc_available_hz[e]))
    return ClockChoice(point, float(power[g, e, c]), tuple(float(tail[i][g, e, c]) for i in range(len(demands))), met=False)


def tail_ratio(subnet: SubnetProfile) -> float:
    """p99 / mean of a profiled sub-network (>= 1)."""
    return max(1.0, subnet.latency_p99_ms / subnet.latency_mean_ms)


def as_platform_model(platform: Any) -> PlatformModel:
    """Accept a PlatformModel, a PlatformDescription, a board name or None (the Xavier NX)."""
    if isinstance(platform, PlatformModel):
        return platform
    if isinstance(platform, PlatformDescription):
        return PlatformModel(platform)
    if platform is None or isinstance(platform, str):
        return PlatformModel.load(platform or "xavier_nx")
    raise PolicyError(f"platform must be a PlatformModel, PlatformDescription or board name, got {type(platform).__name__}")


@dataclass(frozen=True)
class AppDemand:
    """One application's sub-network and target as the search sees them."""

    app: str
    reference_latency_ms: float
    tail_ratio: float
    """profile p99 / mean: turns a predicted mean latency into a predicted p99 (the goal is held on
    the p99, so fewer than 1 % of frames exceed max_latency_ms in steady state)"""
    fps: float
    cluster: int
    slowdown: float = 1.0
    max_tail_ms: float = 0.0
    """0 = no latency constraint"""

    def load(self) -> AppLoad:
        return AppLoad(self.reference_latency_ms, self.fps, self.cluster, self.slowdown)


@dataclass(frozen=True)
class ClockChoice:
    point: OperatingPoint
    power_w: float
    tail_ms: tuple[float, ...]
    met: bool = True
    """False for a best-effort point: the least worst lateness, not every target met"""


def point_to_setting(model: PlatformModel, point: OperatingPoint) -> ClockSetting:
    names = [c.name for c in model.description.clocks.cpu_clusters]
    return ClockSetting({n: int(f) for n, f in zip(names, point.cpu_khz)}, int(point.gpu_hz), int(point.emc_hz))


def setting_to_point(model: PlatformModel, setting: ClockSetting | None) -> OperatingPoint:
    """Clocks read back from the board; unknown (0) values are taken as the reference clocks."""
    ref = model.reference
    if setting is None:
        return ref
    names = [c.name for c in model.description.clocks.cpu_clusters]
    cpu = tuple(int(setting.cpu_khz.get(n, 0) or r) for n, r in zip(names, ref.cpu_khz))
    return OperatingPoint(cpu, int(setting.gpu_hz or ref.gpu_hz), int(setting.emc_hz or ref.emc_hz))


def predict(model: PlatformModel, demands: Sequence[AppDemand], point: OperatingPoint, background_gpu: float = 0.0):
    """Predicted mean latency per app and board power at one operating point."""
    state = model.steady_state([d.load() for d in demands], point.cpu_khz, point.gpu_hz, point.emc_hz, background_gpu)
    return [float(v) for v in np.ravel(state.latency_ms)] if demands else [], float(state.power_w)


def search_clocks(
    model: PlatformModel,
    demands: Sequence[AppDemand],
    power_cap_w: float = 0.0,
    background_gpu: float = 0.0,
    power_scale: float = 1.0,
    keep: OperatingPoint | None = None,
    min_saving: float = 0.0,
    best_effort: bool = False,
    keep_slack: float = 0.0,
) -> ClockChoice | None:
    """Least-power clocks meeting every demand's p99 latency and the power cap; None if none does.

    `keep`: the clocks now in force; they are kept unless the best point saves more than
    `min_saving` (a fraction) of power, so small prediction changes do not make clocks oscillate;
    they stay while every predicted p99 is within (1 + `keep_slack`) of its limit (a dead band:
    new clocks must meet the limit, clocks in force may use the slack).
    `best_effort`: when nothing meets every target, return the point with the least worst lateness
    (p99 / target over the constrained demands) within the power cap where the cap can be held,
    the least power among points within 1 % of that lateness; marked met=False."""
    clocks = model.description.clocks
    gpu = np.array(clocks.gpu_available_hz, dtype=float).reshape(-1, 1, 1)
    emc = np.array(clocks.emc_available_hz, dtype=float).reshape(1, -1, 1)
    cpu_table = np.array(clocks.cpu_available_khz, dtype=float).reshape(1, 1, -1)
    used = {d.cluster for d in demands}
    cpu = [cpu_table if c in used else float(clocks.cpu_available_khz[0]) for c in range(model.clusters)]
    state = model.steady_state([d.load() for d in demands], cpu, gpu, emc, background_gpu)
    shape = np.broadcast(gpu, emc, cpu_table).shape
    power = np.broadcast_to(state.power_w, shape) * power_scale
    tail = np.array([state.latency_ms[i] * d.tail_ratio for i, d in enumerate(demands)]).reshape((len(demands),) + shape)
    ok = np.ones(shape, dtype=bool)
    for i, d in enumerate(demands):
        if d.max_tail_ms > 0:
            ok &= tail[i] <= d.max_tail_ms
    if power_cap_w > 0:
        ok &= power <= power_cap_w
    keep_index = None
    if keep is not None and keep.gpu_hz in clocks.gpu_available_hz and keep.emc_hz in clocks.emc_available_hz:
        used_cpu = [keep.cpu_khz[i] for i in sorted(used)] or [clocks.cpu_available_khz[0]]
        if max(used_cpu) in clocks.cpu_available_khz:
            k = (clocks.gpu_available_hz.index(keep.gpu_hz), clocks.emc_available_hz.index(keep.emc_hz), clocks.cpu_available_khz.index(max(used_cpu)))
            within = all(tail[i][k] <= d.max_tail_ms * (1.0 + keep_slack) for i, d in enumerate(demands) if d.max_tail_ms > 0)
            if within and (power_cap_w <= 0 or power[k] <= power_cap_w):
                keep_index = k
    if not ok.any() and keep_index is None:
        return _best_effort(model, demands, power, tail, power_cap_w, used) if best_effort else None
    masked = np.where(ok, power, np.inf)
    g, e, c = np.unravel_index(int(np.argmin(masked)), shape)
    if keep_index is not None and power[keep_index] <= masked[g, e, c] * (1.0 + min_saving):
        g, e, c = keep_index
    point = OperatingPoint(_cpu_point(model, c, used), int(clocks.gpu_available_hz[g]), int(clocks.emc_available_hz[e]))
    return ClockChoice(point, float(power[g, e, c]), tuple(float(tail[i][g, e, c]) for i in range(len(demands))))
