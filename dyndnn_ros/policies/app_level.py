# SPDX-License-Identifier: Apache-2.0
"""Application-level policies: they choose sub-networks only and leave clocks to the board's
governors.

`subnet_only` adapts each model's sub-network to its goal using the profile table corrected by the
measured slowdown; `static` runs a fixed sub-network (the thesis pairs the largest with governors);
`static_targets` fixes sub-networks from the targets in force, as a designer would when targets
change (no look-ahead, no feedback), and leaves the clocks to the governors.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Mapping

from dyndnn_ros.policies.base import (
    Decision,
    Observation,
    PerformanceGoal,
    Policy,
    PolicyError,
    register_policy,
    validate_goals,
)
from dyndnn_ros.policies.feedback import SlowdownFilter, SwitchHysteresis
from dyndnn_ros.platforms.model import AppLoad
from dyndnn_ros.policies.search import as_platform_model, tail_ratio, typical_latency_ms
from dyndnn_ros.profiles import ModelProfile, SubnetProfile


@dataclass(frozen=True)
class SubnetVerdict:
    subnet: SubnetProfile
    predicted_tail_ms: float
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def judge_subnet(goal: PerformanceGoal, subnet: SubnetProfile, slowdown: float) -> SubnetVerdict:
    """Check one sub-network against a goal, with latency from the profile scaled by the slowdown.
    """
    p99 = subnet.latency_p99_ms * slowdown
    problems: list[str] = []
    if goal.max_latency_ms and p99 > goal.max_latency_ms:
        problems.append(f"p99 {p99:.1f} ms > {goal.max_latency_ms:g} ms")
    if goal.min_accuracy and subnet.accuracy < goal.min_accuracy:
        problems.append(f"accuracy {subnet.accuracy:.3f} < {goal.min_accuracy:g}")
    if subnet.energy_mj is not None:
        energy = subnet.energy_mj * slowdown
        if goal.max_energy_mj and energy > goal.max_energy_mj:
            problems.append(f"energy {energy:.1f} mJ > {goal.max_energy_mj:g} mJ")
        power = subnet.energy_mj / typical_latency_ms(subnet)
        if goal.max_power_w and power > goal.max_power_w:
            problems.append(f"power {power:.2f} W > {goal.max_power_w:g} W")
    return SubnetVerdict(subnet, p99, tuple(problems))


def update_slowdown(
    slowdown: SlowdownFilter,
    goal: PerformanceGoal,
    profile: ModelProfile,
    observation: Observation,
) -> float:
    """Fold this period's measured latency of the app into its filter (profile clocks assumed)."""
    active = observation.active_subnets.get(goal.model)
    measured = observation.latency_ms.get(goal.app, 0.0)
    if observation.frames.get(goal.app, 0) > 0 and active in profile.ids and measured > 0:
        slowdown.update(
            measured, typical_latency_ms(profile.subnet(active)), observation.frames[goal.app]
        )
    return slowdown.estimate


@register_policy("subnet_only")
class SubnetOnlyPolicy(Policy):
    """Per model: the most accurate sub-network whose predicted p99 latency meets the goal, with
    accuracy (and energy/power where the profile has them) within limits; else the fastest one, and
    the app is reported as given up with the reason. Clocks stay with the default governors."""

    name = "subnet_only"

    def __init__(
        self, platform: Any = None, hold_periods: int = 3, use_feedback: bool = True
    ) -> None:
        if hold_periods < 1:
            raise PolicyError(f"hold_periods must be >= 1, got {hold_periods}")
        self.hold_periods = hold_periods
        self.use_feedback = use_feedback
        self._slowdown: dict[str, SlowdownFilter] = {}
        self._hysteresis: dict[str, SwitchHysteresis] = {}

    def reset(self) -> None:
        self._slowdown.clear()
        self._hysteresis.clear()

    def decide(
        self,
        goals: Mapping[str, PerformanceGoal],
        profiles: Mapping[str, ModelProfile],
        observation: Observation,
    ) -> Decision:
        validate_goals(goals)
        subnets: dict[str, str] = {}
        reasons: dict[str, str] = {}
        given_up: dict[str, str] = {}
        predicted: dict[str, float] = {}
        for goal in goals.values():
            profile = profiles.get(goal.model)
            if profile is None:
                given_up[goal.app] = f"no profile for model {goal.model!r}"
                continue
            slowdown_filter = self._slowdown.setdefault(goal.app, SlowdownFilter())
            slowdown = (
                update_slowdown(slowdown_filter, goal, profile, observation)
                if self.use_feedback
                else 1.0
            )
            verdicts = {s.id: judge_subnet(goal, s, slowdown) for s in profile.subnets}
            feasible = [v for v in verdicts.values() if v.ok]
            if feasible:
                best = max(feasible, key=lambda v: (v.subnet.accuracy, -v.predicted_tail_ms))
                reason = (
                    f"most accurate meeting the goal (slowdown x{slowdown:.2f}, "
                    f"p99 {best.predicted_tail_ms:.1f} ms)"
                )
            else:
                best = min(verdicts.values(), key=lambda v: v.predicted_tail_ms)
                reason = f"no sub-network meets the goal; fastest runs: {'; '.join(best.problems)}"
                given_up[goal.app] = reason
            hysteresis = self._hysteresis.setdefault(
                goal.model, SwitchHysteresis(self.hold_periods)
            )
            current = hysteresis.current
            current_ok = current in verdicts and verdicts[current].ok
            chosen = hysteresis.apply(best.subnet.id, current_still_ok=current_ok)
            if chosen != best.subnet.id:
                reason = (
                    f"holding {chosen} (still meets the goal) while {best.subnet.id} is confirmed"
                )
            subnets[goal.model] = chosen
            reasons[goal.model] = reason
            predicted[goal.app] = verdicts[chosen].predicted_tail_ms
        return Decision(subnets, None, reasons, given_up, predicted)


@register_policy("static")
class StaticPolicy(Policy):
    """A fixed sub-network per model and no DVFS commands: what a plain DNN node plus governors
    does.

    `subnets` maps model -> sub-network id; models not named run their most accurate sub-network.
    """

    name = "static"

    def __init__(self, platform: Any = None, subnets: Mapping[str, str] | None = None) -> None:
        self.fixed = dict(subnets or {})

    def decide(
        self,
        goals: Mapping[str, PerformanceGoal],
        profiles: Mapping[str, ModelProfile],
        observation: Observation,
    ) -> Decision:
        validate_goals(goals)
        subnets: dict[str, str] = {}
        reasons: dict[str, str] = {}
        for goal in goals.values():
            profile = profiles.get(goal.model)
            if profile is None:
                continue
            if goal.model in self.fixed:
                subnets[goal.model] = profile.subnet(self.fixed[goal.model]).id
                reasons[goal.model] = "fixed by configuration"
            else:
                subnets[goal.model] = max(profile.subnets, key=lambda s: s.accuracy).id
                reasons[goal.model] = "fixed: most accurate sub-network"
        return Decision(subnets, None, reasons)


MAX_TARGET_COMBINATIONS = 10_000
"""Bound on the sub-network combinations static_targets tries (7 x 7 for two published models)."""


@register_policy("static_targets")
class StaticForTargetsPolicy(Policy):
    """A fixed sub-network per model, chosen again whenever the targets change: measured together
    at max clocks (jetson_clocks), the combination that serves the apps in priority order (for each
    app, highest priority first: its p99 latency and its accuracy goal met), then the highest
    summed accuracy. No clock commands: the board's governors run. Nothing about later targets is
    used."""

    name = "static_targets"

    def __init__(self, platform: Any = None) -> None:
        self.model = as_platform_model(platform)
        self._chosen: dict[tuple, dict[str, str]] = {}

    def reset(self) -> None:
        self._chosen.clear()

    def decide(
        self,
        goals: Mapping[str, PerformanceGoal],
        profiles: Mapping[str, ModelProfile],
        observation: Observation,
    ) -> Decision:
        validate_goals(goals)
        served = sorted(
            (g for g in goals.values() if g.model in profiles), key=lambda g: (-g.priority, g.app)
        )
        fps = tuple(float(observation.input_fps.get(g.app, 0.0)) for g in served)
        key = (tuple(served), fps)
        if key not in self._chosen:
            self._chosen[key] = self._choose(served, profiles, fps, observation)
        subnets = self._chosen[key]
        return Decision(
            dict(subnets), None, {m: "fixed for the targets in force" for m in subnets}
        )

    def _choose(self, served, profiles, fps, observation) -> dict[str, str]:
        tables = self.model.description.clocks
        top = self.model.max_point()
        clusters = [
            tables.cluster_index(observation.app_cluster.get(g.app), i)
            for i, g in enumerate(served)
        ]
        # a CPU model is measured with the threads it runs by default (its reference threads)
        devices = [observation.app_device.get(g.app, "gpu") for g in served]
        overheads = [observation.host_overhead_ms.get(g.app, 0.0) for g in served]
        best, best_key = None, None
        combos = itertools.product(*[profiles[g.model].subnets for g in served])
        for combo in itertools.islice(combos, MAX_TARGET_COMBINATIONS):
            loads = [
                AppLoad(typical_latency_ms(s), f, c, device=d, host_overhead_ms=h)
                for s, f, c, d, h in zip(combo, fps, clusters, devices, overheads)
            ]
            latency = self.model.steady_state(
                loads, top.cpu_khz, top.gpu_hz, top.emc_hz
            ).latency_ms
            served_in_order = tuple(
                (not g.max_latency_ms or float(latency[i]) * tail_ratio(s) <= g.max_latency_ms)
                and s.accuracy >= g.min_accuracy
                for i, (g, s) in enumerate(zip(served, combo))
            )
            rank = (served_in_order, sum(s.accuracy for s in combo))
            if best_key is None or rank > best_key:
                best, best_key = combo, rank
        return {g.model: s.id for g, s in zip(served, best or ())}
