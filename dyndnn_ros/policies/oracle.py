# SPDX-License-Identifier: Apache-2.0
"""The oracle: exhaustive search over sub-networks x clocks with perfect knowledge of the platform.

It knows what the policies must estimate (the background GPU load, given by the evaluation through
`set_truth`; no slowdown to learn) and searches every combination of the apps' sub-networks with
every clock combination, each CPU cluster's clock on its own. Where some point meets every goal
(p99 latency, accuracy, power cap) it takes the least energy per frame among those points. Only
where none does (the goals conflict) do priorities count: over every sub-network and clock point it
serves the highest priority as many frames on goal as the board allows, up to GOAL_QUANTILE (the
99 % a p99 goal asks), then the next; then holds each app's latency goal on as many frames as it
can (up to GOAL_QUANTILE too), whatever their accuracy (a given-up
app keeps a best-effort latency, as the manager's does); and takes the least energy per frame on
goal among those points (`goal_share_best`, search.most_on_goal). A frame is on goal as the
report counts it, its latency under the board's lognormal frame jitter. Where under 1 % of
every priority's frames can be on goal (search.most_on_goal finds no point), it ranks as the report
does when no frame is on goal: frames within their latency goal whatever their accuracy, then the
least lateness, then energy. It knows the scenario's future too: in a period a change of goals
falls in, it decides for the stricter of the two goals of each app (`set_truth`) where one point
meets both, as the frames before the change are judged against the old goals and those after
against the new; else for the goals in force. Evaluation only: a robot cannot know the truth.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from typing import Any, Mapping

from dyndnn_ros.policies.base import (
    Decision,
    Observation,
    PerformanceGoal,
    Policy,
    register_policy,
    validate_goals,
)
from dyndnn_ros.policies.search import (
    GOAL_QUANTILE,
    AppDemand,
    ClockChoice,
    as_platform_model,
    most_on_goal,
    point_to_setting,
    search_clocks,
    tail_ratio,
    typical_latency_ms,
)
from dyndnn_ros.profiles import ModelProfile, SubnetProfile

MAX_COMBINATIONS = 10_000
"""Bound on sub-network combinations searched (7 x 7 for two published models)."""


def _demand(
    model,
    goal: PerformanceGoal,
    subnet: SubnetProfile,
    cluster: int,
    fps: float,
    devices: Mapping[str, str],
    overheads: Mapping[str, float],
    constrained: bool = True,
) -> AppDemand:
    """One app as the search sees it, with the truth: no slowdown to learn. An app whose goals
    were given up (not `constrained`) keeps its latency target as best effort."""
    device = devices.get(goal.app, "gpu")
    return AppDemand(
        goal.app,
        typical_latency_ms(subnet),
        tail_ratio(subnet),
        fps,
        cluster,
        1.0,
        goal.max_latency_ms,
        best_effort=not constrained,
        max_energy_mj=goal.max_energy_mj if constrained else 0.0,
        device=device,
        thread_options=model.thread_options(device, cluster),
        host_overhead_ms=float(overheads.get(goal.app, 0.0)),
    )


def exhaustive_best(
    model,
    apps: list[tuple[PerformanceGoal, list[SubnetProfile], int, float, bool]],
    power_cap_w: float,
    background_gpu: float,
    best_effort: bool = False,
    devices: Mapping[str, str] | None = None,
    overheads: Mapping[str, float] | None = None,
) -> tuple[ClockChoice, tuple[SubnetProfile, ...]] | None:
    """Least energy-per-frame (sub-networks, clocks and a CPU app's every thread count) meeting
    every constrained app's p99 latency and the power cap.

    apps: (goal, allowed sub-networks, cluster, fps, latency constrained?) per application;
    devices: app -> device (missing: gpu); overheads: app -> host work per frame in ms (0)."""
    devices, overheads = devices or {}, overheads or {}
    best: tuple[ClockChoice, tuple[SubnetProfile, ...]] | None = None
    best_key: tuple = ()
    combos = itertools.product(*[allowed for _, allowed, _, _, _ in apps])
    for combo in itertools.islice(combos, MAX_COMBINATIONS):
        demands = [
            _demand(model, goal, s, cluster, fps, devices, overheads, constrained)
            for (goal, _, cluster, fps, constrained), s in zip(apps, combo)
        ]
        choice = search_clocks(
            model, demands, power_cap_w, background_gpu, best_effort=best_effort, per_cluster=True
        )
        if choice is None:
            continue
        key = _rank(choice, demands)
        if best is None or key < best_key:
            best, best_key = (choice, combo), key
    return best


def goal_share_best(
    model,
    apps: list[tuple[PerformanceGoal, list[SubnetProfile], int, float]],
    power_cap_w: float,
    background_gpu: float,
    devices: Mapping[str, str] | None = None,
    overheads: Mapping[str, float] | None = None,
) -> tuple[ClockChoice, tuple[SubnetProfile, ...], tuple[float, ...]] | None:
    """For goals that conflict: `most_on_goal` over every sub-network combination (at most
    MAX_COMBINATIONS). apps: (goal, sub-networks, cluster, fps) per application."""
    devices, overheads = devices or {}, overheads or {}
    goals = [goal for goal, _, _, _ in apps]
    combos = list(
        itertools.islice(
            itertools.product(*[subnets for _, subnets, _, _ in apps]), MAX_COMBINATIONS
        )
    )
    candidates = [
        (
            [
                _demand(model, goal, s, cluster, fps, devices, overheads)
                for (goal, _, cluster, fps), s in zip(apps, combo)
            ],
            [s.accuracy for s in combo],
        )
        for combo in combos
    ]
    best = most_on_goal(model, goals, candidates, power_cap_w, background_gpu)
    if best is None:
        return None
    k, choice, shares, _ = best
    return choice, combos[k], shares


def _lateness(choice: ClockChoice, demands: list[AppDemand], soft: bool) -> float:
    """Worst p99 / target (1 when every target of that kind is met)."""
    return max(
        [
            t / d.max_tail_ms
            for t, d in zip(choice.tail_ms, demands)
            if d.max_tail_ms > 0 and d.best_effort == soft
        ]
        + [1.0]
    )


def _rank(choice: ClockChoice, demands: list[AppDemand]) -> tuple:
    """Every hard target met first, then the least lateness of the best-effort apps, then energy
    per frame."""
    return (
        not choice.met,
        _lateness(choice, demands, False) if not choice.met else 1.0,
        _lateness(choice, demands, True),
        choice.energy_per_frame_j,
    )


def stricter_goals(
    goals: Mapping[str, PerformanceGoal], coming: Mapping[str, PerformanceGoal]
) -> dict[str, PerformanceGoal]:
    """Each app's goal that a frame meets only if it meets both `goals` and `coming`: the least
    latency, power and energy limit set (0: none) and the highest accuracy; its priority stays
    (an order, not a limit). An app with no goal in `coming` keeps its goal; one with a goal only
    in `coming` has none yet."""
    merged = dict(goals)
    for app in goals.keys() & coming.keys():
        a, b = goals[app], coming[app]

        def least(x: float, y: float) -> float:
            return min(v for v in (x, y) if v) if x or y else 0.0

        merged[app] = replace(
            a,
            max_latency_ms=least(a.max_latency_ms, b.max_latency_ms),
            min_accuracy=max(a.min_accuracy, b.min_accuracy),
            max_power_w=least(a.max_power_w, b.max_power_w),
            max_energy_mj=least(a.max_energy_mj, b.max_energy_mj),
        )
    return merged


@register_policy("oracle", evaluation_only=True)
class OraclePolicy(Policy):
    name = "oracle"

    def __init__(self, platform: Any = None) -> None:
        self.model = as_platform_model(platform)
        self.background_gpu = 0.0
        self.coming: dict[str, PerformanceGoal] = {}
        self._cache: dict[tuple, Decision] = {}

    def set_truth(
        self, background_gpu: float, coming: Mapping[str, PerformanceGoal] | None = None
    ) -> None:
        """What only the simulator knows: the GPU share a background job takes, and `coming`,
        the goals that take over before the next decision (None: no change in this period)."""
        self.background_gpu = float(background_gpu)
        self.coming = dict(coming) if coming else {}

    def reset(self) -> None:
        self._cache.clear()
        self.coming = {}

    def decide(
        self,
        goals: Mapping[str, PerformanceGoal],
        profiles: Mapping[str, ModelProfile],
        observation: Observation,
    ) -> Decision:
        validate_goals(goals)
        if self.coming:
            # a point that holds both goals puts every frame on goal either side of the change;
            # where none does, the goals in force decide, as they do without a change
            both = self._decide(stricter_goals(goals, self.coming), profiles, observation)
            if not both.given_up:
                return both
        return self._decide(goals, profiles, observation)

    def _decide(
        self,
        goals: Mapping[str, PerformanceGoal],
        profiles: Mapping[str, ModelProfile],
        observation: Observation,
    ) -> Decision:
        served = [g for g in sorted(goals.values(), key=lambda g: g.app) if g.model in profiles]
        tables = self.model.description.clocks
        clusters = {
            g.app: tables.cluster_index(observation.app_cluster.get(g.app), i)
            for i, g in enumerate(served)
        }
        fps = {g.app: float(observation.input_fps.get(g.app, 0.0)) for g in served}
        devices = {g.app: observation.app_device.get(g.app, "gpu") for g in served}
        overheads = {g.app: float(observation.host_overhead_ms.get(g.app, 0.0)) for g in served}
        key = (
            tuple(served),
            tuple(sorted(fps.items())),
            tuple(sorted(clusters.items())),
            self.background_gpu,
            tuple(sorted(devices.items())),
            tuple(sorted(overheads.items())),
        )
        if key in self._cache:
            return self._cache[key]
        given_up = {
            g.app: f"no profile for model {g.model!r}"
            for g in goals.values()
            if g.model not in profiles
        }
        cap = min((g.max_power_w for g in served if g.max_power_w), default=0.0)
        strict = []
        for g in served:
            subnets = list(profiles[g.model].subnets)
            accurate = [s for s in subnets if s.accuracy >= g.min_accuracy]
            strict.append(
                (g, accurate or [max(subnets, key=lambda s: s.accuracy)], clusters[g.app],
                 fps[g.app], True)
            )
        found = exhaustive_best(
            self.model, strict, cap, self.background_gpu, devices=devices, overheads=overheads
        )
        reason = "exhaustive optimum"
        everything = [
            (g, list(profiles[g.model].subnets), clusters[g.app], fps[g.app]) for g in served
        ]
        if found is None or not all(any(s.accuracy >= g.min_accuracy for s in allowed)
                                    for g, allowed, _, _, _ in strict):
            # the goals conflict: every sub-network and clock point, judged by frames on goal
            conflict = goal_share_best(
                self.model, everything, cap, self.background_gpu, devices, overheads
            )
            if conflict is not None:
                choice, combo, shares = conflict
                found = (choice, combo)
                reason = "goals conflict: frames on goal by priority, then energy per frame"
                given_up.update(
                    {
                        g.app: f"{'goals' if len(served) > 1 else 'its own goals'} conflict:"
                        f" {100 * share:.0f} % of frames predicted on goal"
                        for g, share in zip(served, shares)
                        if share < GOAL_QUANTILE
                    }
                )
            else:  # not one frame on goal (an accuracy no sub-network has, say)
                found = None
        if found is None:  # no frame can be on goal: frames in time, whatever their accuracy
            timely = goal_share_best(
                self.model,
                [(replace(g, min_accuracy=0.0, max_energy_mj=0.0), subnets, cluster, rate)
                 for g, subnets, cluster, rate in everything],
                cap, self.background_gpu, devices, overheads,
            )
            if timely is not None:
                found = timely[:2]
                reason = "no frame can be on goal: frames in time, whatever their accuracy"
                given_up.update({g.app: "no frame can be on goal: best effort, frames in time"
                                 for g in served})
        if found is None:  # no frame of any app can be in time: least worst lateness
            found = exhaustive_best(
                self.model,
                [(*app, True) for app in everything],
                cap, self.background_gpu, best_effort=True, devices=devices, overheads=overheads,
            )
            reason = "best effort: no frame can be on goal or in time"
            given_up.update({g.app: "best effort: target cannot be met" for g in served})
        choice, combo = found
        decision = Decision(
            subnets={g.model: s.id for g, s in zip(served, combo)},
            clocks=point_to_setting(self.model, choice.point),
            reasons={g.model: reason for g in served},
            given_up=given_up,
            predicted_latency_ms={g.app: p for g, p in zip(served, choice.tail_ms)},
            predicted_power_w=choice.power_w,
            threads={g.model: t for g, t in zip(served, choice.threads) if t},
        )
        self._cache[key] = decision
        return decision
