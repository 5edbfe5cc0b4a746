# SPDX-License-Identifier: Apache-2.0
"""What a manager learns of the frames: rates from their finish times, and only frames that ran
wholly in the configuration a period's prediction is made for."""

from __future__ import annotations

import pytest

from dyndnn_ros.observed_frames import FrameLog, PeriodFrames, frame_rate_hz, pinned_clocks
from dyndnn_ros.policies import ClockSetting


def test_the_rate_does_not_depend_on_where_a_period_cuts_the_frames():
    """11 frames a second seen through 0.25 s windows: 2 or 3 frames each (8 to 12 a second by
    count), 11 a second from their finish times."""
    log = FrameLog()
    finished = [k / 11.0 for k in range(1, 45)]
    counts, rates = [], []
    for step in range(1, 16):
        now = 0.25 * step
        for t in [t for t in finished if now - 0.25 < t <= now]:
            log.frame("m", t, 60.0, "a")
        seen = log.period("m", now)
        counts.append(seen.frames)
        if step > 4:
            rates.append(seen.rate_hz)
    assert set(counts[4:]) == {2, 3}
    assert rates == pytest.approx([11.0] * len(rates))


def test_fewer_than_two_frames_give_no_rate():
    assert frame_rate_hz([], 1.0) is None and frame_rate_hz([0.9], 1.0) is None
    assert frame_rate_hz([0.1, 0.9], 3.0) is None, "older than the horizon: the model stopped"


def test_only_frames_that_ran_wholly_in_the_configuration_count():
    """A frame that started before a switch of any model, or before the board was seen at its
    clocks, ran at least partly under another configuration."""
    log = FrameLog()
    log.clocks("slow", 0.0)
    log.frame("a", 0.10, 50.0, "a1")
    log.frame("a", 0.20, 50.0, "a1")
    log.clocks("fast", 0.22)  # the reading after the clocks changed
    log.frame("a", 0.30, 100.0, "a1")  # started 0.20: before the reading
    log.frame("a", 0.38, 60.0, "a1")  # started 0.32
    log.frame("a", 0.44, 60.0, "a1")
    seen = log.period("a", 0.45)
    assert (seen.frames, seen.latency_ms) == (2, pytest.approx(60.0))
    assert seen.rate_hz == pytest.approx(1 / 0.06)
    log.frame("b", 0.50, 40.0, "b1")
    log.frame("b", 0.55, 40.0, "b2")  # b switched: its first frame started at 0.51
    log.frame("a", 0.52, 60.0, "a1")  # started 0.46: before the switch
    log.frame("a", 0.58, 60.0, "a1")  # started 0.52
    seen = log.period("a", 0.6)
    assert (seen.frames, seen.rate_hz) == (1, None), "one frame since the switch"
    assert log.period("b", 0.6).frames == 1


def test_the_clocks_the_manager_pinned_or_the_governors_moved_start_a_configuration():
    commanded = ClockSetting({"cluster0": 1190400}, 1109250000, 0)
    read = ClockSetting({"cluster0": 1190400, "cluster1": 115200}, 1109250000, 1600000000)
    moved = ClockSetting({"cluster0": 1190400, "cluster1": 729600}, 1109250000, 1331200000)
    assert pinned_clocks(read, commanded) == pinned_clocks(moved, commanded), (
        "a governor's cluster and the EMC it governs")
    new_gpu = ClockSetting(dict(read.cpu_khz), 1007250000, 1600000000)
    assert pinned_clocks(new_gpu, commanded) != pinned_clocks(read, commanded)
    governors = ClockSetting.default_governors()
    assert pinned_clocks(read, governors) is None and pinned_clocks(moved, None) is None
    judged_at_any_clocks = [pinned_clocks(c, governors, predicts_at_clocks=False)
                            for c in (read, moved, new_gpu)]
    assert judged_at_any_clocks == ["governors"] * 3


def test_frames_under_the_governors_do_not_count_for_a_policy_predicting_at_clocks():
    """Between two readings the governors may have moved the clocks: a frame run then is not
    compared with a prediction at any of them; once the manager's clocks are read, frames count
    again."""
    log = FrameLog()
    log.clocks(None, 0.0)
    log.frame("a", 0.2, 150.0, "a1")
    log.frame("a", 0.3, 90.0, "a1")
    assert log.period("a", 0.3) == PeriodFrames(0.0, 0, None)
    log.clocks("pinned", 0.35)
    log.frame("a", 0.40, 90.0, "a1")  # started before the reading
    log.frame("a", 0.49, 60.0, "a1")
    log.frame("a", 0.55, 60.0, "a1")
    seen = log.period("a", 0.6)
    assert (seen.frames, seen.latency_ms, seen.rate_hz) == (2, 60.0, pytest.approx(1 / 0.06))
