# SPDX-License-Identifier: Apache-2.0
"""Health reports of the nodes with real levels, without ROS: the nodes turn them into
diagnostic_msgs/DiagnosticStatus on /diagnostics (levels numbered as DiagnosticStatus' constants).

- `DvfsHealth`: the DVFS node's clocks: ERROR while a write failed or the boot settings could not
  be put back (clocks in a state nobody chose), WARN while the kernel holds a pinned clock lower
  (a thermal or power cap: throttling) or a clock cannot be controlled at all;
- `stale_warning`: a periodic input that stopped arriving;
- `throttled`: clocks running a whole table step or more below where they are pinned.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Dict, Mapping, Sequence

from dyndnn_ros.log_limits import shorten


class Level(enum.IntEnum):
    """As diagnostic_msgs/DiagnosticStatus: OK, WARN, ERROR, STALE."""

    OK = 0
    WARN = 1
    ERROR = 2
    STALE = 3


@dataclass(frozen=True)
class Diagnostic:
    name: str
    """e.g. "dyndnn/dvfs"; one per thing watched"""
    level: Level
    message: str
    values: Mapping[str, str] = field(default_factory=dict)


def worst(problems: Mapping[str, Level]) -> Level:
    return max(problems.values(), default=Level.OK)


def summary(problems: Mapping[str, Level], ok_message: str) -> tuple:
    """(level, message): the worst level, and the problems of that level first."""
    if not problems:
        return Level.OK, ok_message
    ordered = sorted(problems, key=lambda text: -problems[text])
    return worst(problems), "; ".join(ordered)


def stale_warning(what: str, age_s: float | None, limit_s: float) -> str:
    """Why a periodic input is stale ('' when fresh): never received, or older than limit_s."""
    if age_s is None:
        return f"no {what} received"
    if age_s > limit_s:
        return f"{what} is {age_s:.1f} s old (stale after {limit_s:g} s)"
    return ""


def throttled(
    pinned: Mapping[str, int],
    current: Mapping[str, int],
    available: Mapping[str, Sequence[int]],
) -> Dict[str, str]:
    """domain -> why, for each pinned clock that runs at least one table step below its pin.

    The kernel reports the frequency it runs (scaling_cur_freq, devfreq cur_freq); a cooling
    device or a power cap holds it below the pinned minimum. Within a step is rounding, not a cap.
    """
    found = {}
    for domain, pin in pinned.items():
        now = current.get(domain)
        steps_below = [f for f in available.get(domain, ()) if f < pin]
        if pin and now is not None and steps_below and now <= max(steps_below):
            found[domain] = f"{domain} runs at {now}, pinned at {pin}: throttled"
    return found


class DvfsHealth:
    """What the DVFS node's diagnostics say; the node reports each event as it happens."""

    def __init__(self, not_controlled: Mapping[str, str]):
        self.not_controlled = dict(not_controlled)
        self.write_failed = ""
        self.restore_failed: list = []
        self.capped: Dict[str, str] = {}
        self.throttled: Dict[str, str] = {}
        self.pinned = False

    def applied(self, requested: Mapping[str, int], effective: Mapping[str, int]) -> None:
        """A command was applied; `requested` and `effective`: domain -> frequency."""
        self.write_failed = ""
        self.restore_failed = []
        self.pinned = True
        self.capped = {
            domain: f"{domain} asked for {want}, the kernel holds it at {effective[domain]}"
            for domain, want in requested.items()
            if want and domain in effective and effective[domain] < want
        }

    def failed(self, error: str, restore_failed: Sequence[str]) -> None:
        """A write failed; the controller put back what it could."""
        self.write_failed = error
        self.restore_failed = list(restore_failed)
        self.pinned = False
        self.capped = {}
        self.throttled = {}

    def restored(self, restore_failed: Sequence[str]) -> None:
        self.restore_failed = list(restore_failed)
        self.pinned = False
        self.capped = {}
        self.throttled = {}

    def observed(self, throttled_now: Mapping[str, str]) -> None:
        self.throttled = dict(throttled_now) if self.pinned else {}

    def report(self) -> Diagnostic:
        problems: Dict[str, Level] = {}
        if self.restore_failed:
            problems[f"could not restore {self.restore_failed}"] = Level.ERROR
        if self.write_failed:
            error = shorten(self.write_failed, 200)
            problems[f"write failed, boot settings restored: {error}"] = Level.ERROR
        for why in {**self.capped, **self.throttled}.values():
            problems[why] = Level.WARN
        for why in self.not_controlled.values():
            problems[f"not controlled: {why}"] = Level.WARN
        state = "clocks pinned" if self.pinned else "boot clock settings in force"
        level, message = summary(problems, state)
        values = {"pinned": str(self.pinned).lower(), **{
            f"not_controlled/{domain}": why for domain, why in self.not_controlled.items()}}
        return Diagnostic("dyndnn/dvfs", level, message, values)
