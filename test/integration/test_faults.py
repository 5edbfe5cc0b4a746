# SPDX-License-Identifier: Apache-2.0
"""Faults and bad input against the real nodes over DDS: acknowledged, rejected, parked, expired
and withdrawn targets (through the `dyndnn target` command), unmet goals, bounded logs, a
kept-alive target surviving a killed manager, SIGTERM/SIGKILL of each node, bad camera frames,
and the sub-network a node starts on.

The inference nodes use the simulation back end (published Xavier NX profile, model 'ofa') except
where the torch back end itself is the subject.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import pytest
from dyndnn_ros.msg import PerformanceTarget, TargetStatus
from rcl_interfaces.srv import SetParameters
from rclpy.parameter import Parameter

from dyndnn_ros.bringup import NodeProcess, executable_path
from dyndnn_ros.paths import config_dir
from dyndnn_ros.profiles import load_profile, smallest_subnet

MODEL = "ofa"
PROFILE = "dynamic_ofa_xavier_nx_gpu"
PLATFORM = "xavier_nx"  # no board under these nodes: `auto` would look for a Jetson under /
STARTUP_S = 60.0
STEP_S = 20.0


def inference(**params) -> NodeProcess:
    return NodeProcess(
        "inference_node",
        "inference_node",
        {"backend": "simulation", "model_id": MODEL, "model_config": PROFILE,
         "platform": PLATFORM, **params},
    )


def manager(**params) -> NodeProcess:
    return NodeProcess(
        "resource_manager_node", "resource_manager_node",
        {"control_period_s": 0.3, "platform": PLATFORM, **params}
    )


def announced(client, group) -> None:
    assert client.wait_until(lambda: MODEL in client.profiles, STARTUP_S), group.output(
        "inference_node"
    )
    # Discovery is pairwise: this client hearing the model does not mean the manager has.
    if "resource_manager_node" in (n.name for n in group.nodes):
        assert group.wait_for_line("resource_manager_node", f"model {MODEL!r} announced",
                                   STARTUP_S), group.output("resource_manager_node")


def dyndnn(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "400"}
    return subprocess.run(
        [str(executable_path("dyndnn")), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def manager_log(group) -> str:
    return group.output("resource_manager_node")


@pytest.mark.timeout(240)
def test_targets_are_answered_rejected_parked_expired_and_withdrawn(start_nodes, client):
    group = start_nodes(inference(), manager(parked_target_timeout_s=3.0))
    announced(client, group)
    assert client.wait_until(lambda: client.manager is not None, STEP_S)

    accepted = dyndnn("target", "--app", "tracker", "--model", MODEL, "--max-latency-ms", "80")
    assert accepted.returncode == 0 and "accepted" in accepted.stdout, accepted

    second = dyndnn("target", "--app", "intruder", "--model", MODEL, "--max-latency-ms", "80")
    assert second.returncode == 1, second
    assert "rejected" in second.stdout and "both use model 'ofa'" in second.stdout

    parked = dyndnn("target", "--app", "early", "--model", "not_yet", "--min-accuracy", "0.5")
    assert (
        parked.returncode == 0 and "parked" in parked.stdout and "expires in 3 s" in parked.stdout
    ), parked
    expired = client.wait_until(
        lambda: any(
            v.app_id == "early" and v.state == TargetStatus.STATE_EXPIRED
            for v in client.verdicts_seen()
        ),
        STEP_S,
    )
    assert expired and "was not announced within 3 s" in manager_log(group)

    withdrawn = dyndnn("target", "--app", "tracker", "--clear")
    assert withdrawn.returncode == 0 and "withdrawn" in withdrawn.stdout, withdrawn
    assert client.wait_until(
        lambda: client.manager is not None and not client.manager.targets, STEP_S
    )
    invalid = dyndnn("target", "--app", "tracker", "--model", MODEL, "--min-accuracy", "90")
    assert invalid.returncode == 2 and "fraction in [0, 1]" in invalid.stderr

    log = manager_log(group)
    # each target reaches the manager through two subscriptions; each verdict is logged once
    assert log.count("'intruder' rejected") == 1 and log.count("'tracker' accepted") == 1, log
    assert sorted(group.running()) == sorted(n.name for n in group.nodes)


@pytest.mark.timeout(240)
def test_an_accuracy_no_subnetwork_reaches_is_reported_unmet(start_nodes, client):
    group = start_nodes(inference(), manager())
    announced(client, group)
    best = max(s.accuracy for s in client.profiles[MODEL].subnets)
    verdict = client.set_target(
        "picky", MODEL, min_accuracy=min(1.0, best + 0.05), wait_for_manager_s=STEP_S
    )
    assert verdict is not None and verdict.state in (
        TargetStatus.STATE_ACCEPTED,
        TargetStatus.STATE_PARKED,
    )

    def unmet() -> str:
        status = client.manager
        return (
            {a.app_id: a.reason for a in status.unmet}.get("picky", "") if status else ""
        )

    assert client.wait_until(lambda: "no sub-network reaches it" in unmet(), STEP_S), (
        client.manager
    )
    shown = dyndnn("status", "--once", "--duration", "10")
    assert shown.returncode == 0 and "not met: accuracy" in shown.stdout, shown.stdout


@pytest.mark.timeout(240)
def test_bursts_and_huge_names_leave_a_short_log(start_nodes, client):
    group = start_nodes(inference(), manager())
    announced(client, group)
    pub = client.node.create_publisher(PerformanceTarget, "dyndnn/targets", 1000)
    assert client.wait_until(lambda: pub.get_subscription_count() >= 1, STEP_S)
    huge = "x" * 10_000
    pub.publish(PerformanceTarget(app_id=huge, model_id=MODEL, max_latency_ms=50.0))
    assert client.wait_until(lambda: "(10000 chars)" in manager_log(group), STEP_S), manager_log(
        group
    )
    for i in range(1000):  # all rejected: NaN
        pub.publish(
            PerformanceTarget(app_id=f"burst{i}", model_id=MODEL, max_latency_ms=float("nan"))
        )
    assert client.wait_until(
        lambda: "burst999" in str([v.app_id for v in client.verdicts_seen()]), STEP_S
    ), "the manager did not answer the whole burst"
    log = manager_log(group)
    assert log.count("rejected") <= 5 + 1, "a burst must not write a line per target"
    assert max(len(line) for line in log.splitlines()) < 1000
    later = iter(range(100))  # once the limiter's window has passed, the next line counts the rest
    assert client.wait_until(
        lambda: (
            pub.publish(
                PerformanceTarget(
                    app_id=f"after{next(later)}", model_id=MODEL, max_latency_ms=-1.0
                )
            )
            or "similar lines suppressed" in manager_log(group)
        ),
        15.0,
        poll=1.0,
    ), manager_log(group)


@pytest.mark.timeout(300)
def test_a_kept_alive_target_survives_a_killed_manager(start_nodes, client):
    group = start_nodes(inference(), manager())
    announced(client, group)
    holder = subprocess.Popen(
        [
            str(executable_path("dyndnn")),
            "target",
            "--app",
            "held",
            "--model",
            MODEL,
            "--max-latency-ms",
            "90",
            "--keep-alive",
        ],
        env={**os.environ, "COLUMNS": "400"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(holder.stdout), daemon=True).start()
    try:
        assert client.wait_until(
            lambda: any("holding the target" in line for line in lines), STEP_S * 2
        ), lines
        once = dyndnn(
            "target", "--app", "once", "--model", "other_model", "--max-latency-ms", "90"
        )
        assert once.returncode == 0, once  # parked, and its publisher is gone with the process

        group.signal("resource_manager_node", signal.SIGKILL)
        group.node("resource_manager_node").process.wait(10)
        with client.lock:
            client.manager = None
        restarted = start_nodes(manager())

        def held_by_new_manager() -> bool:
            status = client.manager
            return status is not None and [t.app_id for t in status.targets] == ["held"]

        assert client.wait_until(held_by_new_manager, STEP_S * 2), (
            client.manager,
            manager_log(restarted),
        )
        assert not [t.app_id for t in client.manager.parked_targets], (
            "a target whose publisher exited came back"
        )
        assert client.wait_until(lambda: sum("accepted" in line for line in lines) >= 2, STEP_S), (
            lines
        )
        holder.send_signal(signal.SIGTERM)
        assert holder.wait(15) == 0
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


@pytest.mark.timeout(300)
def test_each_node_stops_cleanly_on_sigterm_and_a_killed_inference_node_can_restart(
    start_nodes, client, sim_root
):
    group = start_nodes(
        NodeProcess("camera_node", "camera_node", {"rate_hz": 10.0, "width": 32, "height": 32}),
        inference(),
        manager(),
        NodeProcess("dvfs_node", "dvfs_node", {"sysfs_root": str(sim_root), "watchdog_s": 5.0}),
        NodeProcess(
            "hardware_monitor_node",
            "hardware_monitor_node",
            {"sysfs_root": str(sim_root), "source": "simulation", "period_s": 0.3},
        ),
    )
    announced(client, group)
    assert client.wait_for_stats(MODEL, lambda s: True, STEP_S)

    group.signal("inference_node", signal.SIGKILL)
    assert group.node("inference_node").process.wait(10) == -signal.SIGKILL
    with client.lock:
        client.profiles.clear()
        client.stats.clear()
    start_nodes(inference())
    announced(client, group)
    assert client.wait_for_stats(MODEL, lambda s: True, STEP_S), (
        "the restarted node serves no frames"
    )

    for name in ("camera_node", "hardware_monitor_node", "resource_manager_node", "dvfs_node"):
        group.signal(name, signal.SIGTERM)
        assert group.node(name).process.wait(15) == 0, group.output(name)
    assert "boot clock settings restored" in group.output("dvfs_node")


def image(height: int, width: int, encoding: str = "rgb8", data: bytes | None = None):
    from sensor_msgs.msg import Image

    channels = 1 if encoding == "mono8" else 3
    msg = Image(height=height, width=width, encoding=encoding, step=width * channels)
    msg.data = data if data is not None else bytes(height * width * channels)
    return msg


@pytest.mark.timeout(300)
def test_bad_frames_are_rejected_with_a_reason_and_the_node_keeps_serving(start_nodes, client):
    group = start_nodes(inference(image_reliability="reliable"))
    announced(client, group)
    from dyndnn_ros.nodes.common import IMAGE_TOPIC

    pub = client.node.create_publisher(type(image(1, 1)), IMAGE_TOPIC, 1)
    assert client.wait_until(lambda: pub.get_subscription_count() >= 1, STEP_S)
    bad = [  # the 52.5 MB frame first: its reason is logged at once, not after the 5 s throttle
        (image(5000, 3500), "exceeds the 33554432 byte limit"),
        (image(32, 32, encoding="yuv_odd"), "unsupported encoding 'yuv_odd'"),
        (image(0, 0, data=b""), "empty image"),
        (image(480, 640, data=bytes(100)), "needs 921600 bytes, got 100"),
    ]
    for msg, reason in bad:
        # the reason is logged at most every 5 s per node: resend until this one shows
        logged = client.wait_until(
            lambda: pub.publish(msg) or reason in group.output("inference_node"), STEP_S, poll=1.0
        )
        assert logged, (reason, group.output("inference_node"))
        with client.lock:
            client.stats.clear()
        pub.publish(image(32, 32))
        assert client.wait_for_stats(MODEL, lambda s: True, 10.0), (
            f"no frame served after: {reason}"
        )
    assert group.running() == ["inference_node"]


def starting_subnet(client, group) -> str:
    announced(client, group)
    return client.profiles[MODEL].active_subnet


@pytest.mark.timeout(240)
def test_initial_subnet_on_the_simulation_back_end(start_nodes, client):
    group = start_nodes(inference())
    expected = smallest_subnet(load_profile(config_dir() / "profiles" / f"{PROFILE}.yaml"))
    assert starting_subnet(client, group) == expected
    group.stop()
    with client.lock:
        client.profiles.clear()
    start_nodes(inference(initial_subnet="a3"))
    assert client.wait_until(
        lambda: (
            client.profiles.get(MODEL) is not None and client.profiles[MODEL].active_subnet == "a3"
        ),
        STARTUP_S,
    )


@pytest.mark.timeout(300)
def test_initial_subnet_on_the_torch_back_end_after_profiling(start_nodes, client):
    group = start_nodes(
        NodeProcess(
            "inference_node",
            "inference_node",
            {
                "backend": "torch",
                "model_id": MODEL,
                "model_config": "groupconv_digits",
                "threads": 1,
                "profile_frames": 3,
            },
        )
    )
    announced(client, group)
    profile = client.profiles[MODEL]
    smallest = min(profile.subnets, key=lambda s: s.macs).id
    assert profile.active_subnet == smallest, (
        "profiling or the back end's default left another active"
    )
    # the node logs it once ready, just after it announces the profile: waited for, not raced
    assert smallest == "g1" and group.wait_for_line("inference_node", "active 'g1'", STEP_S), (
        group.output("inference_node")
    )


@pytest.mark.timeout(240)
def test_a_model_on_a_device_the_board_does_not_model_is_refused_and_the_manager_lives(
    start_nodes, client
):
    """The Orin Nano's description models its GPU only; a model announced on the CPU there (as a
    torch model on device:=cpu is; here the simulation back end with the Xavier NX CPU profile)
    took the manager down in its profile callback. It is refused, its target rejected with the
    reason, and the manager keeps answering."""
    group = start_nodes(
        inference(model_config="dynamic_ofa_xavier_nx_cpu"),
        manager(platform="orin_nano_7w"),
    )
    assert client.wait_until(lambda: MODEL in client.profiles, STARTUP_S), group.output(
        "inference_node")
    assert group.wait_for_line("resource_manager_node", "models no cpu (devices: gpu)",
                               STARTUP_S), manager_log(group)
    verdict = client.set_target("tracker", MODEL, max_latency_ms=2000.0,
                                wait_for_manager_s=STEP_S)
    assert verdict is not None and verdict.state == TargetStatus.STATE_REJECTED, verdict
    assert "orin_nano_7w models no cpu (devices: gpu): not managed" in verdict.reason
    other = client.set_target("mapper", "not_yet", max_latency_ms=80.0,
                              wait_for_manager_s=STEP_S)
    assert other is not None and other.state == TargetStatus.STATE_PARKED, other
    assert sorted(group.running()) == sorted(n.name for n in group.nodes), manager_log(group)


@pytest.mark.timeout(240)
def test_a_parked_target_is_decided_on_when_its_model_is_announced(start_nodes, client):
    """A target that waited for its model applies when the model is announced, and the manager
    decides and publishes the switch it needs at once (it waited for the next tick: here a 60 s
    control period)."""
    group = start_nodes(manager(control_period_s=60.0))
    parked = client.set_target("tracker", MODEL, min_accuracy=0.78, wait_for_manager_s=STEP_S)
    assert parked is not None and parked.state == TargetStatus.STATE_PARKED, parked
    # setting the period restarts the manager's timer: its next tick is 60 s after this
    setter = client.node.create_client(SetParameters, "/resource_manager_node/set_parameters")
    assert setter.wait_for_service(timeout_sec=STEP_S)
    restarted = time.monotonic()
    answer = setter.call_async(SetParameters.Request(
        parameters=[Parameter("control_period_s", value=60.0).to_parameter_msg()]))
    assert client.wait_until(answer.done, STEP_S) and answer.result().results[0].successful
    start_nodes(inference(initial_subnet="a0"))  # a0 is below the accuracy goal
    assert client.wait_until(
        lambda: any(s.model_id == MODEL and s.subnet_id != "a0" for s in client.switches),
        55.0 - (time.monotonic() - restarted),
    ), f"{time.monotonic() - restarted:.1f} s after the timer restarted\n{manager_log(group)}"
