# SPDX-License-Identifier: Apache-2.0
"""What a manager learns of each model's frames between two control steps, as the manager node
and the evaluation runner both build it (no ROS here).

Each finished frame is known by when it finished, its latency and the sub-network it ran. A
period's latency is compared with a prediction for one configuration: the sub-networks reported
now and the clocks the board shows now. So only frames that ran wholly in that configuration
count: frames that started before any model's switch or before the board was seen at its
current clocks ran (at least partly) under another, and would read as a slowdown that is not
there (over ROS a board reading comes up to a period after the clocks changed). Frame rates come
from the times frames finished, not from how many fell in one period's window (1-4 frames a
period at the rates a GPU model runs), over the frames since the last switch: a switch changes
the GPU time a frame takes several times over, new clocks by a few percent.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Deque, Dict, Hashable, Optional, Sequence, Tuple

from dyndnn_ros.policies.base import ClockSetting

RATE_HORIZON_S = 1.0
"""frame rates are measured over the frames that finished this recently: several frames at the
rates a GPU model runs (4-30 Hz), recent enough to follow a change within a few periods"""


def frame_rate_hz(finished_s: Sequence[float], now_s: float,
                  horizon_s: float = RATE_HORIZON_S) -> Optional[float]:
    """Frames per second from the times frames finished (ascending), over those in the last
    `horizon_s`: their intervals over their span. None with fewer than two (a model that stopped
    leaves no rate once its frames are older than the horizon). The time since the last frame is
    not counted: frames are reported late when the reports queue (DDS under load)."""
    recent = [t for t in finished_s if now_s - horizon_s < t <= now_s]
    span = recent[-1] - recent[0] if len(recent) > 1 else 0.0
    return (len(recent) - 1) / span if span > 0 else None


def pinned_clocks(read: ClockSetting, commanded: Optional[ClockSetting],
                  predicts_at_clocks: bool = True) -> Hashable:
    """What of a board reading's clocks starts a new configuration: the clocks the manager pinned
    (`commanded`), as read. Under the governors, None: they move the clocks every few ticks, so
    what a frame ran at between two readings is not known, and a policy that predicts at the
    clocks read (`predicts_at_clocks`) must not learn from it; one that does not judges frames at
    whatever clocks the governors ran, and for it they stand still."""
    if commanded is None or commanded.use_default_governors:
        return None if predicts_at_clocks else "governors"
    pinned = sorted(name for name, khz in commanded.cpu_khz.items() if khz)
    cpu = tuple((name, read.cpu_khz.get(name, 0)) for name in pinned)
    return cpu, read.gpu_hz if commanded.gpu_hz else 0, read.emc_hz if commanded.emc_hz else 0


@dataclass(frozen=True)
class PeriodFrames:
    """One model's frames since the last control step, in the configuration standing now."""

    latency_ms: float
    """mean latency of those frames (0 where there are none)"""
    frames: int
    rate_hz: Optional[float]
    """frames per second since the last switch (None: too few frames yet)"""


class FrameLog:
    """Frames as they finish, and the board's clocks as they are read; `period` per control step.
    Times are seconds on one clock, the control steps' own."""

    def __init__(self, horizon_s: float = RATE_HORIZON_S) -> None:
        self.horizon_s = horizon_s
        self._new: Dict[Hashable, list] = {}
        """model -> (started, finished, latency ms) of frames not yet taken by `period`"""
        self._finished: Dict[Hashable, Deque[Tuple[float, float]]] = {}
        """model -> (started, finished) of its frames of the last horizon"""
        self._subnet: Dict[Hashable, str] = {}
        self._clocks: Hashable = None
        self._read = False
        self.stood_since = float("-inf")
        """the configuration standing now was first seen then (a switch's first frame started,
        or a board reading showed new clocks)"""
        self.switched_since = float("-inf")
        """the sub-networks running now all ran from then (the last switch's first frame)"""

    def frame(self, model: Hashable, finished_s: float, latency_ms: float, subnet: str) -> None:
        started = finished_s - latency_ms / 1000.0
        if self._subnet.get(model, subnet) != subnet:
            self.switched_since = max(self.switched_since, started)
            self.stood_since = max(self.stood_since, started)
        self._subnet[model] = subnet
        self._new.setdefault(model, []).append((started, finished_s, latency_ms))
        finished = self._finished.setdefault(model, deque())
        finished.append((started, finished_s))
        while finished[0][1] <= finished_s - self.horizon_s:
            finished.popleft()

    def clocks(self, clocks: Hashable, time_s: float) -> None:
        """A board reading's clocks (pinned_clocks; None: not known between readings), read at
        `time_s`."""
        if clocks != self._clocks:  # the first reading too: what ran before is not known
            self.stood_since = max(self.stood_since, time_s)
        self._clocks = clocks
        self._read = True

    def period(self, model: Hashable, now_s: float) -> PeriodFrames:
        """The model's frames since the last call, and its frame rate; forgets them."""
        new = self._new.pop(model, [])
        if self._read and self._clocks is None:  # the clocks the frames ran at are not known
            return PeriodFrames(0.0, 0, None)
        counted = [lat for started, _, lat in new if started >= self.stood_since]
        finished = self._finished.get(model, ())
        rate = frame_rate_hz(
            [end for started, end in finished if started >= self.stood_since], now_s,
            self.horizon_s)
        mean = sum(counted) / len(counted) if counted else 0.0
        return PeriodFrames(mean, len(counted), rate)

    def forget_unread(self) -> None:
        """Drop the frames no `period` took since the last step (models without a target)."""
        self._new.clear()
