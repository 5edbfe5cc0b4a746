# SPDX-License-Identifier: Apache-2.0
"""The oracle: exhaustive search over sub-networks x clocks with perfect knowledge of the platform.

It knows what the policies must estimate (the background GPU load, given by the evaluation through
`set_truth`; no slowdown to learn) and searches every combination of the apps' sub-networks with
every clock combination, each CPU cluster's clock on its own, so its energy per frame is the lower
bound for the goals. Only when no point meets every goal does it relax goals, lowest priority
first, as the hierarchical manager does (a given-up app keeps its latency as best effort), so both
are judged on the same goals. Evaluation only: a robot cannot know the truth.
"""

from __future__ import annotations

import itertools
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
    AppDemand,
    ClockChoice,
    as_platform_model,
    point_to_setting,
    search_clocks,
    tail_ratio,
    typical_latency_ms,
)
from dyndnn_ros.profiles import ModelProfile, SubnetProfile

MAX_COMBINATIONS = 10_000
"""Bound on sub-network combinations searched (7 x 7 for two published models)."""


def exhaustive_best(
    model,
    apps: list[tuple[PerformanceGoal, list[SubnetProfile], int, float, bool]],
    power_cap_w: float,
    background_gpu: float,
    best_effort: bool = False,
    devices: Mapping[str, str] | None = None,
) -> tuple[ClockChoice, tuple[SubnetProfile, ...]] | None:
    """Least energy-per-frame (sub-networks, clocks and a CPU app's every thread count) meeting
    every constrained app's p99 latency and the power cap.

    apps: (goal, allowed sub-networks, cluster, fps, latency constrained?) per application;
    devices: app -> device (missing: gpu)."""
    devices = devices or {}
    best: tuple[ClockChoice, tuple[SubnetProfile, ...]] | None = None
    best_key: tuple = ()
    combos = itertools.product(*[allowed for _, allowed, _, _, _ in apps])
    for combo in itertools.islice(combos, MAX_COMBINATIONS):
        demands = [
            AppDemand(
                goal.app,
                typical_latency_ms(s),
                tail_ratio(s),
                fps,
                cluster,
                1.0,
                goal.max_latency_ms,
                best_effort=not constrained,
                device=devices.get(goal.app, "gpu"),
                thread_options=model.thread_options(devices.get(goal.app, "gpu"), cluster),
            )
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


@register_policy("oracle", evaluation_only=True)
class OraclePolicy(Policy):
    name = "oracle"

    def __init__(self, platform: Any = None) -> None:
        self.model = as_platform_model(platform)
        self.background_gpu = 0.0
        self._cache: dict[tuple, Decision] = {}

    def set_truth(self, background_gpu: float) -> None:
        """What only the simulator knows: the GPU share a background job takes."""
        self.background_gpu = float(background_gpu)

    def reset(self) -> None:
        self._cache.clear()

    def decide(
        self,
        goals: Mapping[str, PerformanceGoal],
        profiles: Mapping[str, ModelProfile],
        observation: Observation,
    ) -> Decision:
        validate_goals(goals)
        served = [g for g in sorted(goals.values(), key=lambda g: g.app) if g.model in profiles]
        names = [c.name for c in self.model.description.clocks.cpu_clusters]
        clusters = {
            g.app: (
                names.index(observation.app_cluster[g.app])
                if observation.app_cluster.get(g.app) in names
                else i % len(names)
            )
            for i, g in enumerate(served)
        }
        fps = {g.app: float(observation.input_fps.get(g.app, 0.0)) for g in served}
        devices = {g.app: observation.app_device.get(g.app, "gpu") for g in served}
        key = (
            tuple(served),
            tuple(sorted(fps.items())),
            tuple(sorted(clusters.items())),
            self.background_gpu,
            tuple(sorted(devices.items())),
        )
        if key in self._cache:
            return self._cache[key]
        given_up = {
            g.app: f"no profile for model {g.model!r}"
            for g in goals.values()
            if g.model not in profiles
        }
        # the same priority rule as the hierarchical manager: lowest priority first, each
        # sub-network
        # below its accuracy goal (most accurate first), then give it up; the top app is never
        # given up
        lowest_first = sorted(served, key=lambda g: (g.priority, g.app))
        ladder: list[tuple[str, SubnetProfile | None]] = []
        for g in lowest_first:
            below = [s for s in profiles[g.model].subnets if s.accuracy < g.min_accuracy]
            ladder += [(g.app, s) for s in sorted(below, key=lambda s: -s.accuracy)]
            if g is not lowest_first[-1]:
                ladder.append((g.app, None))
        forced: dict[str, SubnetProfile] = {}
        dropped: set[str] = set()
        found = None
        for step in range(len(ladder) + 1):
            apps = []
            for g in served:
                subnets = list(profiles[g.model].subnets)
                if g.app in dropped:
                    allowed = subnets
                elif g.app in forced:
                    allowed = [forced[g.app]]
                else:
                    allowed = [s for s in subnets if s.accuracy >= g.min_accuracy] or [
                        max(subnets, key=lambda s: s.accuracy)
                    ]
                apps.append((g, allowed, clusters[g.app], fps[g.app], g.app not in dropped))
            cap = min(
                (g.max_power_w for g in served if g.max_power_w and g.app not in dropped),
                default=0.0,
            )
            found = exhaustive_best(self.model, apps, cap, self.background_gpu, devices=devices)
            if found is not None or step == len(ladder):
                break
            app, subnet = ladder[step]
            if subnet is None:
                dropped.add(app)
                given_up[app] = "given up for higher priorities"
            else:
                forced[app] = subnet
                given_up[app] = f"accuracy goal relaxed to {subnet.id}"
        if found is None:  # even the highest priority cannot be met: least worst lateness
            found = exhaustive_best(
                self.model, apps, cap, self.background_gpu, best_effort=True, devices=devices
            )
            given_up.update(
                {
                    g.app: "best effort: target cannot be met"
                    for g in served
                    if g.app not in dropped
                }
            )
        choice, combo = found
        decision = Decision(
            subnets={g.model: s.id for g, s in zip(served, combo)},
            clocks=point_to_setting(self.model, choice.point),
            reasons={g.model: "exhaustive optimum" for g in served},
            given_up=given_up,
            predicted_latency_ms={g.app: p for g, p in zip(served, choice.tail_ms)},
            predicted_power_w=choice.power_w,
            threads={g.model: t for g, t in zip(served, choice.threads) if t},
        )
        self._cache[key] = decision
        return decision
