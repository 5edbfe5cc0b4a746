"""Application-level policies: they choose sub-networks only and leave clocks to the board's governors.

`subnet_only` adapts each model's sub-network to its goal using the profile table corrected by the
measured slowdown; `static` runs a fixed sub-network (the baseline the thesis pairs with governors).
"""
from __future__ import annotations

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
    """Check one sub-network against a goal, with latency from the profile scaled by the slowdown."""
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
        power = subnet.energy_mj / subnet.latency_mean_ms
        if goal.max_power_w and power > goal.max_power_w:
            problems.append(f"power {power:.2f} W > {goal.max_power_w:g} W")
    return SubnetVerdict(subnet, p99, tuple(problems))


def update_slowdown(
    slowdown: SlowdownFilter, goal: PerformanceGoal, profile: ModelProfile, observation: Observation
) -> float:
    """Fold this period's measured latency of the app into its filter (profile clocks assumed)."""
    active = observation.active_subnets.get(goal.model)
    measured = observation.latency_ms.get(goal.app, 0.0)
    if observation.frames.get(goal.app, 0) > 0 and active in profile.ids and measured > 0:
        slowdown.update(measured, profile.subnet(active).latency_mean_ms, observation.frames[goal.app])
    return slowdown.estimate


@register_policy("subnet_only")
class SubnetOnlyPolicy(Policy):
    """Per model: the most accurate sub-network whose predicted p99 latency meets the goal, with
    accuracy (and energy/power where the profile has them) within limits; else the fastest one, and
    the app is reported as given up with the reason. Clocks stay with the default governors."""

    name = "subnet_only"

    def __init__(self, platform: Any = None, hold_periods: int = 3, use_feedback: bool = True) -> None:
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
        self, goals: Mapping[str, PerformanceGoal], profiles: Mapping[str, ModelProfile], observation: Observation
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
            slowdown = update_slowdown(slowdown_filter, goal, profile, observation) if self.use_feedback else 1.0
            verdicts = {s.id: judge_subnet(goal, s, slowdown) for s in profile.subnets}
            feasible = [v for v in verdicts.values() if v.ok]
            if feasible:
                best = max(feasible, key=lambda v: (v.subnet.accuracy, -v.predicted_tail_ms))
                reason = f"most accurate meeting the goal (slowdown x{slowdown:.2f}, p99 {best.predicted_tail_ms:.1f} ms)"
            else:
                best = min(verdicts.values(), key=lambda v: v.predicted_tail_ms)
                reason = f"no sub-network meets the goal; fastest runs: {'; '.join(best.problems)}"
                given_up[goal.app] = reason
            hysteresis = self._hysteresis.setdefault(goal.model, SwitchHysteresis(self.hold_periods))
            current = hysteresis.current
            current_ok = current in verdicts and verdicts[current].ok
            chosen = hysteresis.apply(best.subnet.id, current_still_ok=current_ok)
            if chosen != best.subnet.id:
                reason = f"holding {chosen} (still meets the goal) while {best.subnet.id} is confirmed"
            subnets[goal.model] = chosen
            reasons[goal.model] = reason
            predicted[goal.app] = verdicts[chosen].predicted_tail_ms
        return Decision(subnets, None, reasons, given_up, predicted)


@register_policy("static")
class StaticPolicy(Policy):
    """A fixed sub-network per model and no DVFS commands: what a plain DNN node plus governors does.

    `subnets` maps model -> sub-network id; models not named run their most accurate sub-network."""

    name = "static"

    def __init__(self, platform: Any = None, subnets: Mapping[str, str] | None = None) -> None:
        self.fixed = dict(subnets or {})

    def decide(
        self, goals: Mapping[str, PerformanceGoal], profiles: Mapping[str, ModelProfile], observation: Observation
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
