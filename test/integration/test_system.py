# SPDX-License-Identifier: Apache-2.0
"""The whole system over DDS: camera -> inference node <-> resource manager -> DVFS node -> clock
files.

Starts the real executables from the colcon install on a simulated Xavier NX tree and drives them
from outside, as an application would, with targets on the targets topic.
"""
from __future__ import annotations

import math
import os
import subprocess

import pytest
from conftest import MODEL, PLATFORM

from dyndnn_ros.msg import DvfsCommand, PerformanceTarget, SubnetSwitch

STARTUP_S = 90.0
STEP_S = 25.0


def announced(client):
    assert client.wait_until(lambda: MODEL in client.profiles, STARTUP_S), (
        "the inference node never announced its model"
    )
    assert client.wait_for_stats(MODEL, lambda s: True, STEP_S), "no InferenceStats"
    return client.profiles[MODEL]


def test_target_switches_the_subnet_and_dvfs_writes_the_clock_files(digits_system, client):
    group, root = digits_system
    profile = announced(client)
    best = max(profile.subnets, key=lambda s: (s.accuracy, -s.latency_p95_ms))
    fastest = min(profile.subnets, key=lambda s: s.latency_p95_ms)

    client.set_target(
        "classifier", MODEL, max_latency_ms=best.latency_p95_ms * 20, min_accuracy=best.accuracy
    )
    assert client.wait_until(
        lambda: any(m.model_id == MODEL and m.subnet_id == best.id for m in client.switches),
        STEP_S,
    )
    stats = client.wait_for_stats(MODEL, lambda s: s.active_subnet == best.id, STEP_S)
    assert stats is not None, f"the inference node never reported {best.id!r}"
    assert stats.accuracy == pytest.approx(best.accuracy)

    # Which sub-network is fastest is the manager's call, from its own latency estimates: these
    # sub-networks run in a fraction of a millisecond, and the profile's p95 order can differ from
    # the order of their mean latencies (g2's p95 under g1's, with g1 chosen, in a CI run).
    before = len(client.switches)
    client.set_target("classifier", MODEL, max_latency_ms=fastest.latency_p95_ms * 1.5)

    def away_from_best():
        return [
            m for m in client.switches[before:] if m.model_id == MODEL and m.subnet_id != best.id
        ]

    assert client.wait_until(away_from_best, STEP_S), "a tight latency goal never switched"
    chosen = next(s for s in profile.subnets if s.id == away_from_best()[-1].subnet_id)
    assert chosen.latency_p50_ms < best.latency_p50_ms
    assert client.wait_for_stats(MODEL, lambda s: s.active_subnet == chosen.id, STEP_S) is not None

    assert client.wait_until(
        lambda: any(m.mode == DvfsCommand.MODE_SET for m in client.dvfs_applied), STEP_S
    ), "the manager's DVFS command never reached the clock files"
    applied = [m for m in client.dvfs_applied if m.mode == DvfsCommand.MODE_SET][-1]
    gpu = root / PLATFORM.clocks.gpu_devfreq_path
    if applied.gpu_frequency_hz:
        assert int((gpu / "max_freq").read_text()) == applied.gpu_frequency_hz
    for name, khz in ((c.cluster, c.frequency_khz) for c in applied.cpu_clocks):
        policy = next(c for c in PLATFORM.clocks.cpu_clusters if c.name == name).policy_cpu
        assert (
            int(
                (
                    root / f"sys/devices/system/cpu/cpufreq/policy{policy}/scaling_max_freq"
                ).read_text()
            )
            == khz
        )
        assert khz in PLATFORM.clocks.cpu_available_khz


BAD_TARGETS = [
    (dict(max_latency_ms=math.nan), "must be finite"),
    (dict(max_latency_ms=-5.0), "must be >= 0"),
    (dict(min_accuracy=90.0), "fraction in [0, 1]"),
    (dict(model_id="no_such_model", max_latency_ms=5.0), "unknown model 'no_such_model'"),
]


def test_malformed_targets_are_rejected_with_a_reason_and_change_nothing(digits_system, client):
    group, _ = digits_system
    announced(client)
    before = client.latest_stats(MODEL).active_subnet
    switches_before = len(client.switches)
    # a plain volatile publisher, as `ros2 topic pub` makes by default
    pub = client.node.create_publisher(PerformanceTarget, "dyndnn/targets", 10)
    assert client.wait_until(lambda: pub.get_subscription_count() >= 1, 15)
    for bad, reason in BAD_TARGETS:
        fields = {"app_id": "bad_app", "model_id": MODEL, **bad}
        logged = client.wait_until(
            lambda: (
                pub.publish(PerformanceTarget(**fields))
                or reason in group.output("resource_manager_node")
            ),
            STEP_S,
            poll=0.5,
        )
        assert logged, f"no logged rejection containing {reason!r}"
    # one line per rejection, though the manager reads the topic twice; an unknown model is parked
    rejections = group.output("resource_manager_node").count("'bad_app' rejected: ")
    assert rejections == len(BAD_TARGETS) - 1
    assert not client.wait_until(lambda: len(client.switches) > switches_before, 2.0), (
        "a rejected target caused a switch"
    )
    assert client.latest_stats(MODEL).active_subnet == before
    assert sorted(group.running()) == sorted(n.name for n in group.nodes), (
        "every node keeps running"
    )


def test_unknown_subnet_switch_is_rejected_by_the_inference_node(digits_system, client):
    group, _ = digits_system
    announced(client)
    before = client.latest_stats(MODEL).active_subnet
    pub = client.node.create_publisher(SubnetSwitch, "dyndnn/subnet_switch", 10)
    assert client.wait_until(lambda: pub.get_subscription_count() > 1, 15)
    logged = client.wait_until(
        lambda: (pub.publish(SubnetSwitch(model_id=MODEL, subnet_id="g99", reason="test")) or
                 "unknown sub-network 'g99'" in group.output("inference_node")), STEP_S, poll=0.5)
    assert logged
    assert client.wait_for_stats(MODEL, lambda s: s.active_subnet == before, 5) is not None
    assert "inference_node" in group.running()


def test_dyndnn_target_and_status_commands(digits_system, client):
    group, _ = digits_system
    announced(client)
    target = subprocess.run(
        [
            "dyndnn",
            "target",
            "--app",
            "cli_app",
            "--model",
            MODEL,
            "--max-latency-ms",
            "50",
            "--min-accuracy",
            "0.5",
            "--priority",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert target.returncode == 0, target.stdout + target.stderr
    # the manager's verdict: parked when it has not heard the inference node yet (discovery is
    # pairwise: the test's client may have heard it first); it then applies once it does
    assert (
        "target of app 'cli_app' accepted" in target.stdout
        or "target of app 'cli_app' parked" in target.stdout
    ), target.stdout
    assert client.wait_until(
        lambda: client.manager is not None
        and any(t.app_id == "cli_app" for t in client.manager.targets),
        STEP_S,
    ), "the target never came into force"
    assert group.wait_for_line("resource_manager_node", "target of app 'cli_app'", timeout=10)
    status = subprocess.run(
        ["dyndnn", "status", "--once", "--duration", "5"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "160"},
    )
    assert status.returncode == 0, status.stderr
    for expected in ("cli_app", MODEL, "CPU cluster0", "GPU", "source simulation"):
        assert expected in status.stdout, (
            f"{expected!r} missing from `dyndnn status`:\n{status.stdout}"
        )


def test_dyndnn_target_rejects_bad_values_without_a_manager():
    bad = subprocess.run(
        [
            "dyndnn",
            "target",
            "--app",
            "x",
            "--model",
            MODEL,
            "--max-latency-ms",
            "nan",
            "--wait",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "max_latency_ms must be finite" in bad.stderr
