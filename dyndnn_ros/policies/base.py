# SPDX-License-Identifier: Apache-2.0
"""The decision interface between the ROS manager node and the runtime-management policies.

Every control period the manager node fills an `Observation`, and calls
`Policy.decide(goals, profiles, observation)`; the returned `Decision` says which sub-network each
model runs and which clocks to set (or None: send no DVFS command). Nothing here knows about ROS.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Mapping

from dyndnn_ros.profiles import ModelProfile
from dyndnn_ros.registry import Registry


class GoalError(ValueError):
    """A performance goal is malformed (NaN, infinite, negative, out of range, or conflicting)."""


class PolicyError(ValueError):
    """A policy name is unknown or its parameters are invalid."""


@dataclass(frozen=True)
class PerformanceGoal:
    """What one application asks of the model it runs. 0 means "no constraint" for every limit."""

    app: str
    model: str
    max_latency_ms: float = 0.0
    """per-frame inference latency; the policies hold it on the predicted p99 (< 1 % of frames
    late)"""
    min_accuracy: float = 0.0
    """Top-1 accuracy as a fraction in [0, 1]."""
    max_power_w: float = 0.0
    """board power cap (VDD_IN) while this app's goal is held"""
    max_energy_mj: float = 0.0
    """Energy per inference (used by subnet_only where the profile has energy figures)."""
    priority: int = 0
    """Higher is more important; when not every goal can be met the lowest priorities are given up
    first."""

    def validate(self) -> "PerformanceGoal":
        validate_goal(self)
        return self


def validate_goal(goal: PerformanceGoal) -> None:
    """Raise GoalError with a message naming the app and the field if the goal is not usable."""
    if not goal.app or not goal.model:
        raise GoalError(f"goal {goal!r}: app and model must be non-empty names")
    limits = {
        "max_latency_ms": goal.max_latency_ms,
        "min_accuracy": goal.min_accuracy,
        "max_power_w": goal.max_power_w,
        "max_energy_mj": goal.max_energy_mj,
    }
    for name, value in limits.items():
        try:
            number = float(value)
        except (TypeError, ValueError) as exc:
            raise GoalError(
                f"goal of app {goal.app!r}: {name} must be a number, got {value!r}"
            ) from exc
        if not math.isfinite(number):
            raise GoalError(f"goal of app {goal.app!r}: {name} must be finite, got {value!r}")
        if number < 0:
            raise GoalError(
                f"goal of app {goal.app!r}: {name} must be >= 0 (0 = no constraint), got {value!r}"
            )
    if goal.min_accuracy > 1:
        raise GoalError(
            f"goal of app {goal.app!r}: min_accuracy is a fraction in [0, 1], got "
            f"{goal.min_accuracy!r}"
            " (did you pass a percentage?)"
        )
    if not isinstance(goal.priority, int) or isinstance(goal.priority, bool):
        raise GoalError(
            f"goal of app {goal.app!r}: priority must be an integer, got {goal.priority!r}"
        )


def validate_goals(goals: Mapping[str, PerformanceGoal]) -> None:
    """Check every goal and that each model serves one app (its sub-network is one choice)."""
    served_by: dict[str, str] = {}
    for key, goal in goals.items():
        validate_goal(goal)
        if key != goal.app:
            raise GoalError(f"goal stored under {key!r} belongs to app {goal.app!r}")
        if goal.model in served_by:
            raise GoalError(
                f"apps {served_by[goal.model]!r} and {goal.app!r} both use model {goal.model!r};"
                " run one model instance per app"
            )
        served_by[goal.model] = goal.app


@dataclass(frozen=True)
class ClockSetting:
    """Clocks to pin. 0 (or a missing cluster) leaves that clock as it is.

    `use_default_governors=True` means: stop pinning, hand every clock back to the board's own
    governors (schedutil, nvhost_podgov, the EMC governor); the frequency fields are then ignored.
    """

    cpu_khz: Mapping[str, int] = field(default_factory=dict)
    """cluster name (as in the platform description) -> kHz"""
    gpu_hz: int = 0
    emc_hz: int = 0
    use_default_governors: bool = False

    @classmethod
    def default_governors(cls) -> "ClockSetting":
        return cls(use_default_governors=True)

    @property
    def pins_nothing(self) -> bool:
        return (
            not self.use_default_governors
            and not any(self.cpu_khz.values())
            and not self.gpu_hz
            and not self.emc_hz
        )


@dataclass(frozen=True)
class Observation:
    """What the manager knows this control period. Fill what you have; empty means unknown."""

    time_s: float = 0.0
    latency_ms: Mapping[str, float] = field(default_factory=dict)
    """app -> mean measured inference latency over the last control period, of the frames that
    ran wholly with the active sub-networks and the clocks below (observed_frames.py)"""
    frames: Mapping[str, int] = field(default_factory=dict)
    """app -> frames behind that mean (0 or missing: no fresh measurement, feedback skips the app)
    """
    frame_rate_hz: Mapping[str, float] = field(default_factory=dict)
    """app -> frames per second it finished while the configuration stood, from its frames' times
    (observed_frames.py); NaN: too few frames since the last change; missing: frames over the
    time since the last observation"""
    active_subnets: Mapping[str, str] = field(default_factory=dict)
    """model -> sub-network the measurements were taken with"""
    clocks: ClockSetting = field(default_factory=ClockSetting)
    """clocks read back from the board (current frequencies, not the pinned limits)"""
    cpu_util: Mapping[str, float] = field(default_factory=dict)
    """cluster -> utilisation fraction 0..1"""
    gpu_util: float = 0.0
    """GPU load fraction 0..1 (devfreq `load` / 1000)"""
    emc_util: float = 0.0
    power_w: float = 0.0
    """total board power (VDD_IN); 0 when not measured"""
    input_fps: Mapping[str, float] = field(default_factory=dict)
    """app -> frames per second offered to it (camera rate); missing/0 = runs back-to-back"""
    app_cluster: Mapping[str, str] = field(default_factory=dict)
    """app -> CPU cluster its inference thread runs on (platform cluster name); missing: apps in
    name order are spread over the clusters in order"""
    app_device: Mapping[str, str] = field(default_factory=dict)
    """app -> device its model runs on ('gpu' or 'cpu', a device of the platform model); missing:
    gpu. A CPU app's threads fill its cluster, then the next ones."""
    threads: Mapping[str, int] = field(default_factory=dict)
    """model -> threads a CPU model runs now (missing: the device's reference threads)"""
    host_overhead_ms: Mapping[str, float] = field(default_factory=dict)
    """app -> time its inference node spends per frame outside the inference (image in, results
    out), measured; it lengthens each frame's cycle (missing: 0)"""


@dataclass(frozen=True)
class Decision:
    subnets: Mapping[str, str]
    """model -> sub-network id to run from the next frame"""
    clocks: ClockSetting | None
    """clocks to set, or None: send no DVFS command this period"""
    reasons: Mapping[str, str] = field(default_factory=dict)
    """model -> why this sub-network"""
    given_up: Mapping[str, str] = field(default_factory=dict)
    """app -> why its goal is not met (infeasible, or dropped for a higher priority)"""
    predicted_latency_ms: Mapping[str, float] = field(default_factory=dict)
    """app -> latency the policy expects from this decision (for logging and plots)"""
    predicted_power_w: float = 0.0
    threads: Mapping[str, int] = field(default_factory=dict)
    """model -> threads a CPU model runs from its next frame (torch.set_num_threads); missing:
    unchanged"""


class Policy(ABC):
    """A runtime-management policy; one instance holds its own state (filters, hysteresis)."""

    name: str = ""
    predicts_at_clocks: bool = False
    """its feedback compares latencies with predictions at the clocks read from the board, so a
    frame run at other clocks must not count (observed_frames.py); others judge frames at
    whatever clocks the governors ran"""

    @abstractmethod
    def decide(
        self,
        goals: Mapping[str, PerformanceGoal],
        profiles: Mapping[str, ModelProfile],
        observation: Observation,
    ) -> Decision:
        """Choose sub-networks and clocks for the next control period."""

    def reset(self) -> None:
        """Forget state learnt from earlier observations (filters, hysteresis)."""


POLICIES: Registry[Policy] = Registry("policy", PolicyError, "policies")
"""Policies by name. Tagged evaluation_only: they need what only a simulator knows (the oracle's
perfect knowledge); the evaluation builds them, the resource manager node refuses them."""


def register_policy(name: str, evaluation_only: bool = False):
    return POLICIES.register(name, evaluation_only=evaluation_only)


def policy_names(runtime_only: bool = False) -> list[str]:
    return POLICIES.names("evaluation_only" if runtime_only else None)


def create_policy(name: str, platform: Any = None, runtime_only: bool = False,
                  **params: Any) -> Policy:
    """Build a policy by name. `platform` is a PlatformDescription or a board name ('xavier_nx');
    policies that do not use clocks ignore it. Unknown names or parameters raise PolicyError
    listing the known ones; with `runtime_only`, so do evaluation-only policies (a robot has no
    oracle)."""
    return POLICIES.create(
        name, "evaluation_only" if runtime_only else None, platform=platform, **params
    )
