# SPDX-License-Identifier: Apache-2.0
"""Health levels of the DVFS node and the throttling check, without ROS."""

from __future__ import annotations

from dyndnn_ros.diagnostics import DvfsHealth, Level, stale_warning, throttled

TABLES = {"cpu/cluster0": (729600, 1036800, 1190400, 1420800), "gpu": (306000000, 510000000)}


def test_a_clock_a_whole_step_below_its_pin_is_throttled_rounding_is_not():
    pinned = {"cpu/cluster0": 1190400, "gpu": 510000000}
    assert throttled(pinned, {"cpu/cluster0": 1190400, "gpu": 510000000}, TABLES) == {}
    assert throttled(pinned, {"cpu/cluster0": 1190000, "gpu": 510000000}, TABLES) == {}
    found = throttled(pinned, {"cpu/cluster0": 1036800, "gpu": 306000000}, TABLES)
    assert set(found) == {"cpu/cluster0", "gpu"}
    assert "cpu/cluster0 runs at 1036800, pinned at 1190400: throttled" == found["cpu/cluster0"]
    assert throttled({"cpu/cluster0": 729600}, {"cpu/cluster0": 600000}, TABLES) == {}, (
        "nothing below the lowest step to compare with")


def test_dvfs_health_levels_follow_what_happened():
    health = DvfsHealth({})
    assert health.report().level == Level.OK
    health.applied({"cpu/cluster0": 1190400}, {"cpu/cluster0": 1190400})
    report = health.report()
    assert report.level == Level.OK and report.message == "clocks pinned"

    health.applied({"cpu/cluster0": 1420800}, {"cpu/cluster0": 1190400})
    report = health.report()
    assert report.level == Level.WARN and "the kernel holds it at 1190400" in report.message

    health.failed("writing 1420800 to .../scaling_max_freq failed: [Errno 13]", [])
    report = health.report()
    assert report.level == Level.ERROR and "write failed" in report.message
    assert "boot clock settings" not in report.message

    health.applied({"gpu": 510000000}, {"gpu": 510000000})
    assert health.report().level == Level.OK, "a later good write clears the error"
    health.observed({"gpu": "gpu runs at 306000000, pinned at 510000000: throttled"})
    assert health.report().level == Level.WARN

    health.restored(["/sys/devices/gpu/max_freq"])
    report = health.report()
    assert report.level == Level.ERROR and "could not restore" in report.message
    health.restored([])
    assert health.report().level == Level.OK
    health.observed({"gpu": "stale"})
    assert health.report().level == Level.OK, "nothing pinned: nothing to throttle"


def test_a_clock_that_cannot_be_controlled_is_a_warning_with_the_reason():
    health = DvfsHealth({"emc": "emc: /sys/kernel/debug is not readable (root only)"})
    report = health.report()
    assert report.level == Level.WARN and "root only" in report.message
    assert report.values["not_controlled/emc"].startswith("emc:")


def test_stale_warning():
    assert stale_warning("board status", None, 2.0) == "no board status received"
    assert stale_warning("board status", 1.0, 2.0) == ""
    assert "3.0 s old" in stale_warning("board status", 3.0, 2.0)
