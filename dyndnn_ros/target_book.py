# SPDX-License-Identifier: Apache-2.0
"""The resource manager's book of performance targets: verdicts, parking, expiry, withdrawal, and
which goals the running system does not meet.

No ROS here: the manager node turns messages into these calls and the verdicts back into messages.
The rules:

- a target is checked (`validate_goal`) and its names are at most MAX_NAME_CHARS long; a bad one is
  REJECTED with the reason;
- one application per model, because a model's sub-network is one choice: a target for a model
  another application holds (in force or parked) is REJECTED;
- a target for a model no inference node has announced is PARKED; it is ACCEPTED when the model is
  announced, or EXPIRED after `parked_timeout_s` (0: never);
- a target with the clear flag withdraws the application's target (WITHDRAWN);
- a target delivered twice (the manager reads the topic with a latched and a volatile subscription)
  is answered once: the second copy gets no verdict;
- a target stamped before the app's latest one is REJECTED as superseded: the two subscriptions'
  queues differ in depth, so under load an older target can arrive after a newer one;
- a target for a model the manager refuses (announced on a device the board's model does not
  model) is REJECTED with that reason, and the targets for it in force or parked when it is refused
  are dropped, each REJECTED; once the model is managed, the same target sent again is answered.
"""

from __future__ import annotations

import enum
import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Collection, Mapping, Tuple

from dyndnn_ros.log_limits import shorten
from dyndnn_ros.policies import GoalError, PerformanceGoal, validate_goal, validate_goals
from dyndnn_ros.profiles import ModelProfile

MAX_NAME_CHARS = 128
RECENT_TARGETS = 1024
"""how many recent targets are remembered to drop their second delivery"""
ACCURACY_TOLERANCE = 1e-6
"""float32 rounding of fractions that travelled in messages"""


Stamp = Tuple[int, int]
"""a header stamp as (sec, nanosec); (0, 0): unstamped, never ordered"""


class TargetState(enum.IntEnum):
    """Numbered as the STATE_* constants of msg/TargetStatus.msg."""

    ACCEPTED = 1
    PARKED = 2
    REJECTED = 3
    WITHDRAWN = 4
    EXPIRED = 5


@dataclass(frozen=True)
class Verdict:
    app: str
    """as sent (names longer than MAX_NAME_CHARS are rejected); shorten it for display"""
    model: str
    state: TargetState
    reason: str
    changed: bool
    """whether the targets in force or parked changed (worth an INFO line); False for a repeat"""
    stamp: Stamp | None = None
    """the submitted target's id (its header stamp), echoed so its sender can match the answer"""


def describe_goal(goal: PerformanceGoal) -> str:
    limits = [
        f"latency <= {goal.max_latency_ms:g} ms" if goal.max_latency_ms else "",
        f"accuracy >= {goal.min_accuracy:.1%}" if goal.min_accuracy else "",
        f"power <= {goal.max_power_w:g} W" if goal.max_power_w else "",
        f"energy <= {goal.max_energy_mj:g} mJ/frame" if goal.max_energy_mj else "",
    ]
    described = ", ".join(limit for limit in limits if limit) or "no limits"
    return f"model {shorten(goal.model)!r}, {described}, priority {goal.priority}"


def check_parked_timeout(parked_timeout_s: float) -> float:
    if not (parked_timeout_s >= 0 and math.isfinite(parked_timeout_s)):
        raise ValueError(f"parked_timeout_s must be a finite number >= 0, got {parked_timeout_s}")
    return parked_timeout_s


class TargetBook:
    """The targets in force (`goals`) and those waiting for their model (`parked`)."""

    def __init__(self, parked_timeout_s: float = 300.0):
        self.parked_timeout_s = check_parked_timeout(parked_timeout_s)
        self.goals: dict[str, PerformanceGoal] = {}
        self.parked: dict[str, tuple[PerformanceGoal, float]] = {}
        """app -> (goal, time it was parked)"""
        self._recent: OrderedDict[int, str] = OrderedDict()
        """hash of a recent target -> its app"""
        self._last_key = 0
        self._latest: OrderedDict[str, Stamp] = OrderedDict()
        """app -> stamp of its latest target taken (bounded like _recent)"""
        self._refused_keys: dict[str, list[int]] = {}
        """model -> the recent targets rejected because it was refused"""

    # -- inputs ----------------------------------------------------------------------------------
    def submit(
        self,
        goal: PerformanceGoal,
        known_models: Collection[str],
        now: float,
        stamp: Stamp | None = None,
        refused: Mapping[str, str] | None = None,
    ) -> Verdict | None:
        """The verdict on one target, or None for the second delivery of one already answered.
        `refused`: model -> why it is not managed; a target for it is rejected with that."""
        if self._seen(goal, stamp, clear=False):
            return None
        app, model = goal.app, goal.model
        try:
            self._check_order(goal.app, stamp)
            self._check_names(goal)
            validate_goal(goal)
            others = {a: g for a, g in self.all_goals().items() if a != goal.app}
            validate_goals({**others, goal.app: goal})
        except GoalError as exc:
            return Verdict(app, model, TargetState.REJECTED, str(exc), changed=False, stamp=stamp)
        if refused and goal.model in refused:
            # only keys _recent still holds (it is bounded): a repeating publisher does not grow
            # this list
            keys = self._refused_keys.get(goal.model, [])
            self._refused_keys[goal.model] = [k for k in keys if k in self._recent] + [
                self._last_key]
            return Verdict(app, model, TargetState.REJECTED, refused[goal.model], changed=False,
                           stamp=stamp)
        self._note_latest(goal.app, stamp)
        if goal.model not in known_models:
            previous = self.parked.get(goal.app)
            self.goals.pop(goal.app, None)
            since = previous[1] if previous and previous[0] == goal else now
            self.parked[goal.app] = (goal, since)
            return Verdict(
                app,
                model,
                TargetState.PARKED,
                self._parked_reason(goal, known_models),
                changed=previous is None or previous[0] != goal,
                stamp=stamp,
            )
        changed = self.goals.get(goal.app) != goal
        self.goals[goal.app] = goal
        self.parked.pop(goal.app, None)
        return Verdict(app, model, TargetState.ACCEPTED, describe_goal(goal), changed, stamp)

    def withdraw(self, app: str, now: float, stamp: Stamp | None = None) -> Verdict | None:
        """Remove the app's target, in force or parked; None for a second delivery."""
        if self._seen(PerformanceGoal(app, ""), stamp, clear=True):
            return None
        try:
            self._check_order(app, stamp)
        except GoalError as exc:
            return Verdict(app, "", TargetState.REJECTED, str(exc), changed=False, stamp=stamp)
        self._note_latest(app, stamp)
        # A withdrawn target sent again (same fields and stamp, e.g. a repeating `ros2 topic pub`
        # with a zero stamp) is a new request, not a second delivery.
        for key in [
            k for k, owner in self._recent.items() if owner == app and k != self._last_key
        ]:
            del self._recent[key]
        goal = self.goals.pop(app, None) or self.parked.pop(app, (None, now))[0]
        if goal is None:
            return Verdict(app, "", TargetState.WITHDRAWN, "no target to withdraw", False, stamp)
        return Verdict(
            app,
            goal.model,
            TargetState.WITHDRAWN,
            "withdrawn by its application",
            changed=True,
            stamp=stamp,
        )

    def model_announced(self, model: str) -> list[Verdict]:
        """Parked targets for `model` now apply."""
        verdicts = []
        for app, (goal, _) in list(self.parked.items()):
            if goal.model == model:
                del self.parked[app]
                self.goals[app] = goal
                verdicts.append(
                    Verdict(
                        app,
                        model,
                        TargetState.ACCEPTED,
                        f"model announced; now applies: {describe_goal(goal)}",
                        True,
                    )
                )
        return verdicts

    def model_managed(self, model: str) -> None:
        """`model` is no longer refused: a target rejected for it and sent again (a repeating
        publisher, same stamp) is a new request, not a second delivery."""
        for key in self._refused_keys.pop(model, []):
            self._recent.pop(key, None)

    def model_refused(self, model: str, reason: str) -> list[Verdict]:
        """Targets for `model`, in force or parked, are dropped: it is not managed, for
        `reason`."""
        verdicts = []
        for app in [a for a, g in self.goals.items() if g.model == model] + [
            a for a, (g, _) in self.parked.items() if g.model == model
        ]:
            self.goals.pop(app, None)
            self.parked.pop(app, None)
            verdicts.append(Verdict(app, model, TargetState.REJECTED, reason, changed=True))
        return verdicts

    def expire(self, now: float) -> list[Verdict]:
        """Parked targets older than `parked_timeout_s` are dropped, each with its reason."""
        if not self.parked_timeout_s:
            return []
        verdicts = []
        for app, (goal, since) in list(self.parked.items()):
            if now - since >= self.parked_timeout_s:
                del self.parked[app]
                verdicts.append(
                    Verdict(
                        app,
                        goal.model,
                        TargetState.EXPIRED,
                        f"model {shorten(goal.model)!r} was not announced within "
                        f"{self.parked_timeout_s:g} s of the target",
                        changed=True,
                    )
                )
        return verdicts

    def all_goals(self) -> dict[str, PerformanceGoal]:
        return {**{app: goal for app, (goal, _) in self.parked.items()}, **self.goals}

    # -- helpers ---------------------------------------------------------------------------------
    def _parked_reason(self, goal: PerformanceGoal, known_models: Collection[str]) -> str:
        expiry = (
            f"expires in {self.parked_timeout_s:g} s" if self.parked_timeout_s else "never expires"
        )
        known = sorted(shorten(m) for m in known_models)
        return (
            f"unknown model {shorten(goal.model)!r} (known: {known}); it applies when "
            f"the model is announced, and {expiry}"
        )

    @staticmethod
    def _check_names(goal: PerformanceGoal) -> None:
        for field_name, text in (("app_id", goal.app), ("model_id", goal.model)):
            if len(text) > MAX_NAME_CHARS:
                raise GoalError(
                    f"{field_name} {shorten(text)!r} is longer than {MAX_NAME_CHARS} characters"
                )

    def _check_order(self, app: str, stamp: Stamp | None) -> None:
        latest = self._latest.get(app)
        if stamp and any(stamp) and latest is not None and stamp < latest:
            raise GoalError(
                f"superseded: stamped {stamp[0]}.{stamp[1]:09d}, before the app's latest "
                f"target ({latest[0]}.{latest[1]:09d})"
            )

    def _note_latest(self, app: str, stamp: Stamp | None) -> None:
        if stamp and any(stamp):
            self._latest[app] = max(stamp, self._latest.get(app, stamp))
            self._latest.move_to_end(app)
            if len(self._latest) > RECENT_TARGETS:
                self._latest.popitem(last=False)

    def _seen(self, goal: PerformanceGoal, stamp: Stamp | None, clear: bool) -> bool:
        """Whether this exact target (same fields, same stamp) was handled recently; remembers it.
        repr, not the values: a NaN limit is never equal to itself."""
        key = hash(repr((goal, stamp, clear)))
        if key in self._recent:
            return True
        self._recent[key] = goal.app
        self._last_key = key
        if len(self._recent) > RECENT_TARGETS:
            self._recent.popitem(last=False)
        return False


def unmet_goals(
    goals: Mapping[str, PerformanceGoal],
    subnets: Mapping[str, str],
    profiles: Mapping[str, ModelProfile],
    latency_ms: Mapping[str, float],
    power_w: float,
    energy_mj: Mapping[str, float],
) -> dict[str, str]:
    """app -> why its goal is not met by what runs now, for each of its limits that is exceeded.

    `subnets`: model -> sub-network chosen; `latency_ms`: app -> mean measured latency of the last
    period; `power_w`: board power measured (0: not measured); `energy_mj`: model -> mean energy
    per frame of the last period. The accuracy of a sub-network is its profiled figure.
    """
    unmet: dict[str, str] = {}
    for app, goal in goals.items():
        reasons = []
        profile = profiles.get(goal.model)
        subnet_id = subnets.get(goal.model)
        if goal.min_accuracy and profile is not None and subnet_id in profile.ids:
            accuracy = profile.subnet(subnet_id).accuracy
            if accuracy < goal.min_accuracy - ACCURACY_TOLERANCE:
                best = max(profile.subnets, key=lambda s: s.accuracy)
                reach = (
                    "no sub-network reaches it"
                    if best.accuracy < goal.min_accuracy - ACCURACY_TOLERANCE
                    else f"{best.id} would"
                )
                reasons.append(
                    f"accuracy {accuracy:.1%} of {subnet_id} < {goal.min_accuracy:.1%} "
                    f"({reach}; best {best.id} {best.accuracy:.1%})"
                )
        measured = latency_ms.get(app)
        if goal.max_latency_ms and measured is not None and measured > goal.max_latency_ms:
            reasons.append(f"latency {measured:.2f} ms > {goal.max_latency_ms:g} ms")
        if goal.max_power_w and power_w > goal.max_power_w:
            reasons.append(f"board power {power_w:.2f} W > {goal.max_power_w:g} W")
        energy = energy_mj.get(goal.model)
        if goal.max_energy_mj and energy is not None and energy > goal.max_energy_mj:
            reasons.append(f"energy {energy:.1f} mJ/frame > {goal.max_energy_mj:g} mJ/frame")
        if reasons:
            unmet[app] = "; ".join(reasons)
    return unmet
