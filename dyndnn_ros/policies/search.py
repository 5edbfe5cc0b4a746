# SPDX-License-Identifier: Apache-2.0
"""System-level search: the clocks that meet every application's latency at the least predicted
energy per processed frame (board power / frames per second of all apps together).

The whole clock grid (GPU x EMC x CPU tables) is evaluated at once with the platform model, so a
decision costs a few milliseconds. Clusters that run no application are left at their lowest clock.
The clusters that run apps share one CPU clock index in the manager's search; the oracle searches
each cluster's clock on its own axis (`per_cluster=True`). An app on a CPU device adds an axis of
thread counts; the further clusters its threads fill take its first cluster's clock (its layers
run at the slowest clock of the cores they use, so a faster one would only cost power) and fall to
the lowest clock when a smaller thread count leaves them idle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any, Sequence

import numpy as np
from scipy.special import ndtr  # the standard normal CDF, vectorised

from dyndnn_ros.platforms.description import PlatformDescription
from dyndnn_ros.platforms.model import AppLoad, OperatingPoint, PlatformModel, typical_latency_ms
from dyndnn_ros.policies.base import ClockSetting, PolicyError
from dyndnn_ros.profiles import SubnetProfile

NEAR_BEST = 1.01
"""points within 1 % of the least lateness count as equally late (then the cheapest is taken)"""


class ClockGrid:
    """Every clock combination as numpy axes: GPU, EMC, then one CPU axis per searched cluster
    (one shared axis for all used clusters, or one per used cluster). `cpu_budget` > 0 bounds the
    work of a per-cluster search: CPU combinations x apps stays within it, each per-cluster axis
    thinned to the same number of frequencies spread over the table (lowest and highest kept, and
    the clocks of `keep`). The whole table is searched where it fits (two apps on two clusters of
    the Xavier NX); with eight apps on three clusters, four frequencies per cluster are.
    `refine`: a point found on such a thinned grid (`refinable`); each thinned axis gets the
    table's clocks between the thinned clocks next to the point's, nearest it first, as many as
    keep the refined grid within twice the thinned one's size: all of them for two apps on two
    clusters of the AGX Orin (18 of 29 clocks per cluster thinned), one more per cluster for
    eight apps on three clusters, none where that leaves no room (`refinable` False).
    `demands` with thread options (CPU apps) add one axis each, after the CPU axes."""

    def __init__(
        self,
        model: PlatformModel,
        used: set[int],
        per_cluster: bool,
        cpu_budget: int = 0,
        keep: OperatingPoint | None = None,
        demands: Sequence["AppDemand"] = (),
        refine: OperatingPoint | None = None,
    ) -> None:
        clocks = model.description.clocks
        table = list(clocks.cpu_available_khz)
        self.model = model
        self.used = sorted(used)
        self.demands = list(demands)
        self.thread_values = [list(d.thread_options) for d in self.demands]
        self.per_cluster = per_cluster
        self.cpu_axes = len(self.used) if per_cluster else 1
        self.cpu_values: list[list[int]] = []
        self.refinable = False
        cpu_levels = 0
        if per_cluster and cpu_budget > 0:
            # the grid grows as levels ** clusters, times the thread options of each CPU app, and
            # the model's work with it times the apps
            work = max(1, len(self.demands)) * int(
                np.prod([max(1, len(v)) for v in self.thread_values])
            )
            per_app = cpu_budget / work
            cpu_levels = max(2, int(per_app ** (1.0 / max(1, len(self.used))) + 1e-9))

        def spread(values: Sequence[int], levels: int) -> set[int]:
            return {values[int(round(i))] for i in np.linspace(0, len(values) - 1, levels)}

        # a refined grid costs at most twice the thinned one
        extra = 0
        if cpu_levels and self.cpu_axes:
            extra = int((2 * cpu_levels**self.cpu_axes) ** (1 / self.cpu_axes) + 1e-9) - cpu_levels
        for k in range(self.cpu_axes):
            values = table
            if per_cluster and len(self.used) > 1 and 0 < cpu_levels < len(table):
                picked = spread(table, cpu_levels)
                self.refinable = extra > 0
                if refine is not None and extra > 0:
                    found = refine.cpu_khz[self.used[k]]
                    below = max((f for f in picked if f < found), default=table[0])
                    above = min((f for f in picked if f > found), default=table[-1])
                    inside = [f for f in table if below < f < above and f != found]
                    # the clocks nearest the point found first
                    picked.update(sorted(inside, key=lambda f: abs(f - found))[:extra])
                if keep is not None and keep.cpu_khz[self.used[k]] in table:
                    picked.add(keep.cpu_khz[self.used[k]])
                values = sorted(picked)
            self.cpu_values.append(values)
        self.thread_axis = {}  # demand index -> grid axis of its thread count
        for i, values in enumerate(self.thread_values):
            if values:
                self.thread_axis[i] = 2 + self.cpu_axes + len(self.thread_axis)
        dims = 2 + self.cpu_axes + len(self.thread_axis)

        def axis(values: Sequence[int], k: int) -> np.ndarray:
            shape = [1] * dims
            shape[k] = -1
            return np.array(values, dtype=float).reshape(shape)

        self.gpu = axis(clocks.gpu_available_hz, 0)
        self.emc = axis(clocks.emc_available_hz, 1)
        cpu_axes = [axis(values, 2 + k) for k, values in enumerate(self.cpu_values)]
        self.threads: list[Any] = [
            axis(self.thread_values[i], k) if i in self.thread_axis else None
            for i, k in ((i, self.thread_axis.get(i, 0)) for i in range(len(self.demands)))
        ]
        self.cpu = [
            cpu_axes[self._axis(c)] if c in used else float(table[0])
            for c in range(model.clusters)
        ]
        # further clusters a CPU app's threads fill (no other app there): its first cluster's
        # clock while its threads reach them, else the lowest
        self.tied: dict[int, tuple[int, int]] = {}  # cluster -> (demand index, cores before it)
        for i in self.thread_axis:
            top = replace(self.demands[i].load(), threads=max(self.thread_values[i]))
            before = 0
            for c, cores in model.occupied_cores(top):
                if c not in used and c not in self.tied:
                    self.tied[c] = (i, before)
                    self.cpu[c] = np.where(
                        self.threads[i] > before, self.cpu[self.demands[i].cluster], table[0]
                    )
                before += int(cores)
        self.shape = np.broadcast(self.gpu, self.emc, *cpu_axes, *self.cpu, *[
            t for t in self.threads if t is not None
        ]).shape

    def _axis(self, cluster: int) -> int:
        return self.used.index(cluster) if self.per_cluster else 0

    def point(self, index: tuple[int, ...]) -> OperatingPoint:
        clocks = self.model.description.clocks
        lowest = int(clocks.cpu_available_khz[0])

        def used_clock(c: int) -> int:
            return int(self.cpu_values[self._axis(c)][index[2 + self._axis(c)]])

        cpu = []
        for c in range(self.model.clusters):
            if c in self.used:
                cpu.append(used_clock(c))
            elif c in self.tied:
                i, before = self.tied[c]
                reached = self.threads_at(index)[i] > before
                cpu.append(used_clock(self.demands[i].cluster) if reached else lowest)
            else:
                cpu.append(lowest)
        return OperatingPoint(
            tuple(cpu),
            int(clocks.gpu_available_hz[index[0]]),
            int(clocks.emc_available_hz[index[1]]),
        )

    def threads_at(self, index: tuple[int, ...]) -> tuple[int, ...]:
        """Per demand: the thread count at this grid index (0 where it has no thread axis)."""
        return tuple(
            int(self.thread_values[i][index[self.thread_axis[i]]]) if i in self.thread_axis else 0
            for i in range(len(self.demands))
        )

    def index(self, point: OperatingPoint) -> tuple[int, ...] | None:
        """The grid index of clocks in force (the shared axis takes the fastest used cluster),
        with the demands' threads in force (`AppDemand.threads`)."""
        clocks = self.model.description.clocks
        if (
            point.gpu_hz not in clocks.gpu_available_hz
            or point.emc_hz not in clocks.emc_available_hz
        ):
            return None
        used_cpu = [point.cpu_khz[c] for c in self.used] or [clocks.cpu_available_khz[0]]
        cpu = (used_cpu if self.per_cluster else [max(used_cpu)])[: self.cpu_axes]
        if any(f not in values for f, values in zip(cpu, self.cpu_values)):
            return None
        cpu_index = tuple(values.index(f) for f, values in zip(cpu, self.cpu_values))
        threads = [(self.demands[i].threads, self.thread_values[i]) for i in self.thread_axis]
        if any(now not in values for now, values in threads):
            return None
        return (
            (
                clocks.gpu_available_hz.index(point.gpu_hz),
                clocks.emc_available_hz.index(point.emc_hz),
            )
            + cpu_index
            + tuple(values.index(now) for now, values in threads)
        )


def _lateness(demands, tail: np.ndarray, shape: tuple[int, ...], which) -> np.ndarray:
    """Worst p99 / target over the demands `which` selects (those with a latency target)."""
    lateness = np.zeros(shape)
    for i, d in enumerate(demands):
        if d.max_tail_ms > 0 and which(d):
            lateness = np.maximum(lateness, tail[i] / d.max_tail_ms)
    return lateness


def _least_late(mask: np.ndarray, lateness: np.ndarray) -> np.ndarray:
    """The points of `mask` whose lateness is within NEAR_BEST of the least (beyond 1 only)."""
    late = np.where(mask, np.maximum(lateness, 1.0), np.inf)
    return mask & (late <= late.min() * NEAR_BEST)


def tail_ratio(subnet: SubnetProfile) -> float:
    """p99 / mean of a profiled sub-network (>= 1)."""
    return max(1.0, subnet.latency_p99_ms / typical_latency_ms(subnet))


def as_platform_model(platform: Any) -> PlatformModel:
    """Accept a PlatformModel, a PlatformDescription, a board name or None (the Xavier NX)."""
    if isinstance(platform, PlatformModel):
        return platform
    if isinstance(platform, PlatformDescription):
        return PlatformModel(platform)
    if platform is None or isinstance(platform, str):
        return PlatformModel.load(platform or "xavier_nx")
    raise PolicyError(
        "platform must be a PlatformModel, PlatformDescription or board name,"
        f" got {type(platform).__name__}"
    )


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
    best_effort: bool = False
    """the target is held only as far as the other (hard) targets and the power cap allow: an app
    given up for higher priorities still gets the least lateness they leave it"""
    device: str = "gpu"
    threads: int = 0
    """CPU device: threads in force (0: the device's reference threads)"""
    thread_options: tuple[int, ...] = ()
    """CPU device: thread counts the search may choose (empty: `threads` stays)"""
    max_energy_mj: float = 0.0
    """energy ceiling per frame (0 = none): board power x the frame's mean latency, the rule the
    inference node reports energy by, so a frame is charged the board's power while it runs"""
    host_overhead_ms: float = 0.0
    """the node's per-frame work outside the inference (AppLoad.host_overhead_ms)"""

    def load(self) -> AppLoad:
        return AppLoad(
            self.reference_latency_ms,
            self.fps,
            self.cluster,
            self.slowdown,
            device=self.device,
            threads=self.threads,
            host_overhead_ms=self.host_overhead_ms,
        )

    def with_slowdown(self, slowdown: float) -> "AppDemand":
        return replace(self, slowdown=slowdown)


@dataclass(frozen=True)
class ClockChoice:
    point: OperatingPoint
    power_w: float
    tail_ms: tuple[float, ...]
    met: bool = True
    """False for a best-effort point: the least worst lateness, not every target met"""
    energy_per_frame_j: float = 0.0
    """predicted board power / frames per second of all the apps (power when no app runs)"""
    threads: tuple[int, ...] = ()
    """per demand: the thread count chosen (0 where it has no thread options)"""
    energy_mj: tuple[float, ...] = ()
    """per demand: predicted energy per frame (AppDemand.max_energy_mj's rule)"""


def point_to_setting(model: PlatformModel, point: OperatingPoint) -> ClockSetting:
    names = model.description.clocks.cluster_names
    return ClockSetting(
        {n: int(f) for n, f in zip(names, point.cpu_khz)}, int(point.gpu_hz), int(point.emc_hz)
    )


def setting_to_point(model: PlatformModel, setting: ClockSetting | None) -> OperatingPoint:
    """Clocks read back from the board; unknown (0) values are taken as the reference clocks."""
    ref = model.reference
    if setting is None:
        return ref
    names = model.description.clocks.cluster_names
    cpu = tuple(int(setting.cpu_khz.get(n, 0) or r) for n, r in zip(names, ref.cpu_khz))
    return OperatingPoint(
        cpu, int(setting.gpu_hz or ref.gpu_hz), int(setting.emc_hz or ref.emc_hz)
    )


def predict(
    model: PlatformModel,
    demands: Sequence[AppDemand],
    point: OperatingPoint,
    background_gpu: float = 0.0,
):
    """Predicted mean latency per app and board power at one operating point."""
    state = model.steady_state(
        [d.load() for d in demands], point.cpu_khz, point.gpu_hz, point.emc_hz, background_gpu
    )
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
    per_cluster: bool = False,
    cpu_budget: int = 0,
    refine: bool = True,
) -> ClockChoice | None:
    """Least energy-per-frame clocks meeting every hard demand's p99 latency and energy ceiling
    (`AppDemand.max_energy_mj`) and the power cap; None if none does. Best-effort demands
    (`AppDemand.best_effort`) then get the least lateness among those points, the cheapest within
    1 % of it.

    `keep`: the clocks now in force; they are kept unless the best point saves more than
    `min_saving` (a fraction) of energy per frame, so small prediction changes do not make clocks
    oscillate; they stay while every predicted p99 is within (1 + `keep_slack`) of its limit (a
    dead band: new clocks must meet the limit, clocks in force may use the slack).
    `best_effort`: when nothing meets every hard target, return the point with the least worst
    lateness (p99 / target over every demand with a target) within the power cap and the energy
    ceilings where they can be held, the cheapest among points within 1 % of that lateness; marked
    met=False.
    `per_cluster`, `cpu_budget`: see ClockGrid; where the budget thins the CPU axes, the search is
    repeated with the table's clocks around the point found (ClockGrid `refine`) unless `refine`
    is False (a search that only asks whether any point meets the goals): a thinned grid alone
    missed a cluster clock one step from the best (AGX Orin, 5.6 % more energy per frame than the
    oracle on a generated scenario)."""

    def search(around: OperatingPoint | None) -> tuple[ClockGrid, ClockChoice | None]:
        grid = ClockGrid(model, {d.cluster for d in demands}, per_cluster, cpu_budget, keep,
                         demands, around)
        return grid, _search_grid(grid, model, demands, power_cap_w, background_gpu,
                                  power_scale, keep, min_saving, best_effort, keep_slack)

    grid, choice = search(None)
    if refine and grid.refinable and choice is not None:
        _, choice = search(choice.point)
    return choice


def _search_grid(
    grid: ClockGrid,
    model: PlatformModel,
    demands: Sequence[AppDemand],
    power_cap_w: float,
    background_gpu: float,
    power_scale: float,
    keep: OperatingPoint | None,
    min_saving: float,
    best_effort: bool,
    keep_slack: float,
) -> ClockChoice | None:
    """search_clocks on one grid."""
    shape = grid.shape
    loads = [
        d.load() if threads is None else replace(d.load(), threads=threads)
        for d, threads in zip(demands, grid.threads)
    ]
    state = model.steady_state(loads, grid.cpu, grid.gpu, grid.emc, background_gpu)
    power = np.broadcast_to(state.power_w, shape) * power_scale
    rate = np.broadcast_to(np.sum(state.rate_hz, axis=0), shape) if demands else np.zeros(shape)
    cost = np.where(rate > 0, power / np.maximum(rate, 1e-12), power)
    tail = np.array(
        [np.broadcast_to(state.latency_ms[i] * d.tail_ratio, shape) for i, d in enumerate(demands)]
    )
    hard = _lateness(demands, tail, shape, lambda d: not d.best_effort)
    soft = _lateness(demands, tail, shape, lambda d: d.best_effort)
    latency = [np.broadcast_to(state.latency_ms[i], shape) for i in range(len(demands))]
    capped = power <= power_cap_w if power_cap_w > 0 else np.ones(shape, dtype=bool)
    for i, d in enumerate(demands):
        if d.max_energy_mj > 0 and not d.best_effort:
            capped = capped & (power * latency[i] <= d.max_energy_mj)  # W x ms = mJ
    ok = capped & (hard <= 1.0)
    keep_index = grid.index(keep) if keep is not None else None
    if keep_index is not None:
        within = hard[keep_index] <= 1.0 + keep_slack and capped[keep_index]
        keep_index = keep_index if within else None
    if not ok.any() and keep_index is None:
        if not best_effort:
            return None
        allowed = capped if capped.any() else np.ones(shape, dtype=bool)
        near = _least_late(allowed, np.maximum(hard, soft))
        index = np.argmin(np.where(near, cost, np.inf))
        return _choice(grid, index, power, cost, tail, latency, met=False)
    if soft.any():
        ok = _least_late(ok, soft) if ok.any() else ok
    best = np.unravel_index(int(np.argmin(np.where(ok, cost, np.inf))), shape)
    if keep_index is not None and (
        not ok.any() or cost[keep_index] <= cost[best] * (1.0 + min_saving)
    ):
        best = keep_index
    return _choice(grid, best, power, cost, tail, latency)


def _choice(
    grid: ClockGrid,
    index: Any,
    power: np.ndarray,
    cost: np.ndarray,
    tail: np.ndarray,
    latency: list[np.ndarray],
    met: bool = True,
) -> ClockChoice:
    if not isinstance(index, tuple):
        index = np.unravel_index(int(index), grid.shape)
    index = tuple(int(i) for i in index)
    return ClockChoice(
        grid.point(index),
        float(power[index]),
        tuple(float(t[index]) for t in tail),
        met,
        float(cost[index]),
        grid.threads_at(index),
        tuple(float(power[index] * m[index]) for m in latency),
    )


SHARE_STEP = 0.01
"""the least share of an app's frames on goal (or within its latency goal) that serves it at all;
among the points a tie margin leaves, shares are compared in steps of this (floored)"""
GOAL_QUANTILE = 0.99
"""a latency goal bounds this quantile of an app's frame latency (the p99: tail_ratio,
search_clocks). A priority with this share of its frames on goal (or in time) is served as its
goal asks: a larger share ranks no higher, so the conflict rule does not buy it with a lower
priority's frames"""


TIE_MARGIN = 0.01
"""shares of frames (on goal, or within the latency goal) and lateness (mean latency / the goal)
within this of the best count as equal where priorities are served in turn: a higher priority's
lead this small does not outrank a larger share of a lower one (the report's margins for
'beats the oracle', evaluation.report). Energy never buys such a lead: among the shares left,
the larger step still ranks first"""


def _steps(keys: np.ndarray) -> np.ndarray:
    return np.floor(keys / SHARE_STEP + 1e-9)


def tie_lex_filter(keys: np.ndarray, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """The rows (points; one column per key, the first ranked first, higher better) within
    `margin` of the best on the first key, of those the rows within it of their best on the
    second, and so on; and each key's threshold."""
    rows = np.arange(len(keys))
    thresholds = np.empty(keys.shape[1])
    for j in range(keys.shape[1]):
        column = keys[rows, j]
        thresholds[j] = column.max() - margin - 1e-12
        rows = rows[column >= thresholds[j]]
    return rows, thresholds


def tie_lex_best(keys: np.ndarray, ratio: np.ndarray, margin: float) -> tuple[int, np.ndarray]:
    """The row to choose: of tie_lex_filter's rows, the best on each key in steps of SHARE_STEP
    in turn, then the least ratio; and tie_lex_filter's thresholds."""
    rows, thresholds = tie_lex_filter(keys, margin)
    steps = _steps(keys[rows])
    order = np.lexsort([ratio[rows], *[-steps[:, j] for j in reversed(range(keys.shape[1]))]])
    return int(rows[order[0]]), thresholds


@dataclass(frozen=True)
class _Ranked:
    """Points most_on_goal ranks, one row each: the part (candidate and grid) and the flat index
    on its grid; the ranking keys (higher better) and power per frame on goal; whether within
    the power cap, and whether it puts SHARE_STEP of some priority's frames on goal."""

    part: np.ndarray
    flat: np.ndarray
    keys: np.ndarray
    ratio: np.ndarray
    capped: np.ndarray
    worth: np.ndarray

    def take(self, rows: np.ndarray) -> _Ranked:
        return _Ranked(*(getattr(self, f.name)[rows] for f in fields(self)))

    @staticmethod
    def concat(parts: Sequence[_Ranked]) -> _Ranked:
        return _Ranked(*(np.concatenate([getattr(p, f.name) for p in parts])
                         for f in fields(_Ranked)))


def most_on_goal(
    model: PlatformModel,
    goals: Sequence[Any],
    candidates: Sequence[tuple[Sequence[AppDemand], Sequence[float]]],
    power_cap_w: float = 0.0,
    background_gpu: float = 0.0,
    power_scale: float = 1.0,
    cpu_budget: int = 0,
    keep: OperatingPoint | None = None,
    min_saving: float = 0.0,
    headroom: float = 0.0,
) -> tuple[int, ClockChoice, tuple[float, ...], tuple] | None:
    """The choice of most_on_goal_by_margin at TIE_MARGIN."""
    return most_on_goal_by_margin(
        model, goals, candidates, (TIE_MARGIN,), power_cap_w, background_gpu, power_scale,
        cpu_budget, keep, min_saving, headroom,
    )[0]


def most_on_goal_by_margin(
    model: PlatformModel,
    goals: Sequence[Any],
    candidates: Sequence[tuple[Sequence[AppDemand], Sequence[float]]],
    margins: Sequence[float],
    power_cap_w: float = 0.0,
    background_gpu: float = 0.0,
    power_scale: float = 1.0,
    cpu_budget: int = 0,
    keep: OperatingPoint | None = None,
    min_saving: float = 0.0,
    headroom: float = 0.0,
) -> list[tuple[int, ClockChoice, tuple[float, ...], tuple] | None]:
    """For goals that conflict: over every candidate (one demand and one sub-network accuracy per
    goal, in the goals' order) and every clock point (each used cluster on its own axis, within
    the power cap where it can be held), the highest priority's predicted share of frames on goal
    first (its worst app's, up to GOAL_QUANTILE: the share its goal asks), then the next
    priority's, and so on; then, priority by priority, the share of frames within the latency
    goal whatever their accuracy (the best-effort latency of an app whose frames cannot be on
    goal; up to GOAL_QUANTILE too), or where under SHARE_STEP of them can be, the least lateness
    (mean latency / the goal less `headroom`). Each of these measures keeps the points within
    a margin of the best of those left (a higher priority's lead that small does not outrank a
    lower priority's larger share; TIE_MARGIN, the report's, for the conflict rule, each of
    `margins` for the oracle's plan over a whole run); of the points left, the best on each
    measure in steps of SHARE_STEP in turn, then the least power / frames on goal per second. A
    frame is on goal as the evaluation counts it: its sub-network meets the accuracy goal and its
    latency the latency goal (`max_latency_ms`), under the model's lognormal frame jitter; and,
    where a goal sets one, its energy (board power x mean latency) is within `max_energy_mj`.

    `keep`: the clocks in force; kept (with the candidate that costs least at them) while they
    serve every priority as well as the best point (among the points left, in the same steps)
    and cost at most `min_saving` more per frame on goal, so clocks do not hop between near-equal
    points.

    `headroom`: where under SHARE_STEP of an app's frames are predicted within this fraction
    under its latency goal, the share is that sliver, under one step: none in the ranking (the
    oracle knows: 0), so an estimate a few percent optimistic does not buy a sliver of frames on
    goal with every other frame late. Larger shares count at the goal itself: counted within the
    headroom, a priority served at the goal looked short of it, and the rule bought its last
    frames with a lower priority's (Xavier NX seed 346).

    Returns for each of `margins` (candidate index, choice, each app's predicted on-goal share,
    ranking key), or None when no point puts SHARE_STEP of any priority's frames on goal (then
    only best effort is left)."""
    sigma = math.sqrt(math.log(1.0 + model.latency_cv**2))
    levels = sorted({g.priority for g in goals}, reverse=True)
    pool: list[_Ranked] = []
    kept_rows: list[_Ranked] = []
    parts: list[tuple[int, ClockGrid]] = []

    def evaluate(k: int, grid: ClockGrid):
        """Candidate k's points on this grid, flat: keys, power / frames on goal per second,
        power, each app's frames per second, mean latency and share of frames on goal."""
        demands, accuracies = candidates[k]
        loads = [
            d.load() if threads is None else replace(d.load(), threads=threads)
            for d, threads in zip(demands, grid.threads)
        ]
        state = model.steady_state(loads, grid.cpu, grid.gpu, grid.emc, background_gpu)

        def on_grid(values) -> np.ndarray:
            return np.broadcast_to(values, grid.shape).ravel()

        power = on_grid(state.power_w) * power_scale
        latency = [on_grid(state.latency_ms[i]) for i in range(len(demands))]
        shares, timely_keys = [], []
        for goal, accuracy, mean in zip(goals, accuracies, latency):
            limit = goal.max_latency_ms * (1.0 - headroom)

            def within(bound: float) -> np.ndarray:
                if goal.max_latency_ms and sigma > 1e-9:
                    # P(L <= bound) for a lognormal L of this mean
                    return ndtr((np.log(bound / np.maximum(mean, 1e-12)) + sigma**2 / 2) / sigma)
                if goal.max_latency_ms:
                    return (mean <= bound).astype(float)
                return np.ones(mean.shape)

            # a share counts at the goal itself; one under SHARE_STEP within the headroom is a
            # sliver only an optimistic estimate puts on goal, and stays under one step
            guarded = within(limit)
            timely = (
                np.where(guarded >= SHARE_STEP, within(goal.max_latency_ms), guarded)
                if headroom else guarded  # the limit is the goal: no second lognormal tail
            )
            # no frame in time at this point: how far past the goal (best effort is the least
            # lateness, not the least power)
            timely_keys.append(np.where(
                timely >= SHARE_STEP,
                np.minimum(timely, GOAL_QUANTILE),
                -mean / max(limit, 1e-12) if goal.max_latency_ms else 0.0,
            ))
            share = timely
            if goal.min_accuracy and accuracy < goal.min_accuracy:
                share = np.zeros(mean.shape)
            if goal.max_energy_mj:  # a frame over its energy ceiling is off goal too
                share = np.where(power * mean <= goal.max_energy_mj, share, 0.0)
            shares.append(share)
        rates = [on_grid(r) for r in state.rate_hz]
        on_goal_rate = sum(share * r for share, r in zip(shares, rates))
        ratio = np.where(on_goal_rate > 0, power / np.maximum(on_goal_rate, 1e-12), np.inf)
        on_goal = [np.where(sh >= SHARE_STEP, np.minimum(sh, GOAL_QUANTILE), 0.0) for sh in shares]
        keys = np.array([
            np.min([key for key, g in zip(kind, goals) if g.priority == p], axis=0)
            for kind in (on_goal, timely_keys)
            for p in levels
        ]).T
        return keys, ratio, power, rates, latency, shares

    def rank(k: int, grid: ClockGrid) -> _Ranked | None:
        """Adds candidate k's points on this grid to the pool (those that can still be chosen);
        returns its own best (None if none can be)."""
        keys, ratio, power, _, _, _ = evaluate(k, grid)
        part = len(parts)
        parts.append((k, grid))
        capped = power <= power_cap_w if power_cap_w > 0 else np.ones(power.shape, dtype=bool)
        # under SHARE_STEP for every priority is no frame on goal: a case for best effort where
        # no point has one; elsewhere such a point can tie with one within a margin of it
        worth = (keys[:, : len(levels)] > 0).any(axis=1) & np.isfinite(ratio)
        # where the power cap can be held, no point over it counts (if none within it serves a
        # priority, best effort within it is left: None)
        eligible = capped if capped.any() else np.ones(power.shape, dtype=bool)
        rows = np.flatnonzero(eligible)
        # no point more than a margin under the grid's best first key can win
        rows = rows[keys[rows, 0] >= keys[rows, 0].max() - max(margins) - 1e-12]

        def ranked(flat: np.ndarray) -> _Ranked:
            return _Ranked(np.full(flat.size, part, dtype=np.int32), flat.astype(np.int32),
                           keys[flat], ratio[flat], capped[flat], worth[flat])

        kept_index = grid.index(keep) if keep is not None else None
        if kept_index is not None:
            kept_flat = int(np.ravel_multi_index(kept_index, grid.shape))
            if worth[kept_flat] and eligible[kept_flat]:
                kept_rows.append(ranked(np.array([kept_flat])))
        if not rows.size:
            return None
        own = ranked(rows)
        pool.append(own)
        return own.take(np.array([tie_lex_best(own.keys, own.ratio, margins[0])[0]]))

    def grid_of(k: int, around: OperatingPoint | None = None) -> ClockGrid:
        demands = candidates[k][0]
        return ClockGrid(model, {d.cluster for d in demands}, True, cpu_budget, keep, demands,
                         around)

    for k in range(len(candidates)):
        # each candidate's best resolved on the table's step around it (search_clocks), not only
        # the best one's: a thinned grid can miss the clocks that make another candidate win
        own = rank(k, grid_of(k))
        if own is not None:
            grid = parts[int(own.part[0])][1]
            refined = grid_of(k, grid.point(np.unravel_index(int(own.flat[0]), grid.shape)))
            if refined.refinable:
                rank(k, refined)
    every = _Ranked.concat(pool) if pool else None
    if every is not None and every.capped.any():
        every = every.take(np.flatnonzero(every.capped))
    if every is None or not every.worth.any():
        return [None] * len(margins)

    def choose(margin: float) -> tuple[int, ClockChoice, tuple[float, ...], tuple]:
        best, thresholds = tie_lex_best(every.keys, every.ratio, margin)
        steps = _steps(every.keys[best])
        kept = [
            row for row in kept_rows
            if row.capped[0] >= every.capped[best]
            and np.all(row.keys[0] >= thresholds)
            and np.array_equal(_steps(row.keys[0]), steps)
            and row.ratio[0] <= every.ratio[best] * (1.0 + min_saving)
        ]
        if kept:
            return result(min(kept, key=lambda row: row.ratio[0]), 0)
        return result(every, best)

    evaluated: dict[int, tuple] = {}

    def result(rows: _Ranked, row: int) -> tuple[int, ClockChoice, tuple[float, ...], tuple]:
        part, flat = int(rows.part[row]), int(rows.flat[row])
        k, grid = parts[part]
        if part not in evaluated:  # one evaluation per grid, whatever the margins
            evaluated[part] = evaluate(k, grid)
        _, _, power, rates, latency, shares = evaluated[part]
        index = tuple(int(i) for i in np.unravel_index(flat, grid.shape))
        rate = sum(float(r[flat]) for r in rates)
        choice = ClockChoice(
            grid.point(index),
            float(power[flat]),
            tuple(float(m[flat]) * d.tail_ratio for m, d in zip(latency, candidates[k][0])),
            False,
            float(power[flat]) / rate if rate > 0 else float(power[flat]),
            grid.threads_at(index),
            tuple(float(power[flat]) * float(m[flat]) for m in latency),
        )
        key = tuple(-_steps(rows.keys[row])) + (float(rows.ratio[row]),)
        return k, choice, tuple(float(sh[flat]) for sh in shares), key

    return [choose(margin) for margin in margins]
