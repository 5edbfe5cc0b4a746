# SPDX-License-Identifier: Apache-2.0
"""The resource manager's state machine without ROS: parking, de-duplication, latency windows,
command de-duplication, clock hand-back, what is logged, and its diagnostics. Real policies on
hand-made profile tables."""

from __future__ import annotations

import dataclasses
import math

import pytest

from dyndnn_ros.diagnostics import Level
from dyndnn_ros.manager_state import (
    NO_TARGETS,
    BoardReading,
    ControlClock,
    ManagerState,
    policy_knobs,
)
from dyndnn_ros.policies import ClockSetting, PerformanceGoal, create_policy
from dyndnn_ros.profiles import ModelProfile, SubnetProfile
from dyndnn_ros.target_book import TargetState


def subnet(sid: str, accuracy: float, latency_ms: float) -> SubnetProfile:
    return SubnetProfile(sid, accuracy, latency_ms, latency_ms * 1.05, latency_ms * 1.07,
                         latency_ms)


PROFILE = ModelProfile("m1", "xavier_nx/gpu", (subnet("s", 0.72, 30.0), subnet("m", 0.75, 40.0),
                                               subnet("l", 0.78, 55.0)))


def goal(app="cam", model="m1", **limits) -> PerformanceGoal:
    return PerformanceGoal(app, model, **limits)


def state(policy="subnet_only", **options) -> ManagerState:
    return ManagerState(create_policy(policy, platform="xavier_nx", runtime_only=True), **options)


def announced(manager: ManagerState, active: str = "s") -> ManagerState:
    manager.model_announced("m1", PROFILE, active, "")
    return manager


def test_a_target_for_an_unannounced_model_is_parked_and_applies_when_it_is_announced():
    manager = state()
    verdict = manager.submit(goal(max_latency_ms=100.0), now=0.0, stamp=(1, 0))
    assert verdict.state == TargetState.PARKED and not manager.acts_now(verdict)
    step = manager.control_step(now=0.5, time_s=0.5)
    assert [e.goal.app for e in step.parked] == ["cam"] and step.targets == []
    assert step.switches == [] and step.clocks is None

    new, verdicts = manager.model_announced("m1", PROFILE, "s", "")
    assert new and [(v.app, v.state) for v in verdicts] == [("cam", TargetState.ACCEPTED)]
    assert manager.acts_now(verdicts[0])  # it applies now: decided at once, not at the tick
    step = manager.control_step(now=1.0, time_s=1.0)
    assert [(e.goal.app, e.stamp) for e in step.targets] == [("cam", (1, 0))]
    assert step.parked == []
    assert [(s.model, s.subnet) for s in step.switches] == [("m1", "l")]
    assert "m1: switch to 'l'" in step.switches[0].log
    assert manager.model_announced("m1", PROFILE, "l", "") == (False, [])


def test_a_target_seen_on_both_subscriptions_is_answered_once_and_acts_at_once():
    manager = announced(state())
    first = manager.submit(goal(max_latency_ms=100.0), 0.0, (5, 7))
    assert first.state == TargetState.ACCEPTED and manager.acts_now(first)
    assert manager.submit(goal(max_latency_ms=100.0), 0.0, (5, 7)) is None
    repeat = manager.submit(goal(max_latency_ms=100.0), 1.0, (6, 0))
    assert repeat.state == TargetState.ACCEPTED and not manager.acts_now(repeat)
    assert manager.control_step(1.0, 1.0).targets[0].stamp == (6, 0), "the latest stamp is shown"


def test_a_switch_is_repeated_until_the_model_runs_it_and_logged_once():
    manager = announced(state())
    manager.submit(goal(max_latency_ms=100.0), 0.0, (1, 0))
    first = manager.control_step(0.5, 0.5).switches
    assert [s.subnet for s in first] == ["l"] and first[0].log
    again = manager.control_step(1.0, 1.0).switches
    assert [s.subnet for s in again] == ["l"] and again[0].log == "", "a repeat, not a change"
    manager.record_stats("m1", 50.0, 0.0, "l", 10.0, finished_s=1.2)
    assert manager.control_step(1.5, 1.5).switches == []


def test_latencies_are_averaged_over_one_period_then_forgotten():
    manager = announced(state())
    manager.submit(goal(max_latency_ms=100.0), 0.0, (1, 0))
    for finished, latency in ((0.7, 10.0), (0.8, 20.0)):
        manager.record_stats("m1", latency, 2.0, "s", 12.5, finished_s=finished)
    manager.record_stats("other_model", 99.0, 2.0, "x", 1.0, finished_s=0.8)
    observation = manager.observe(time_s=1.0)
    assert observation.latency_ms == {"cam": 15.0} and observation.frames == {"cam": 2}
    assert observation.input_fps == {"cam": 12.5}
    assert manager.observe(time_s=2.0).latency_ms == {}, "each period starts empty"


def test_frame_rates_come_from_the_stats_stamps_and_new_clocks_start_a_new_period():
    """The rate from when frames finished, not from how many fell in the period; frames that
    started before a board reading showed the clocks the manager pinned are not compared with a
    prediction at those clocks."""
    manager = announced(state("hierarchical"))
    manager.submit(goal(max_latency_ms=100.0), 0.0, (1, 0))
    pinned = manager.control_step(0.1, 0.1).clocks.clocks
    manager.record_board(BoardReading(clocks=pinned), now=0.2, read_s=0.2)
    for k in range(1, 6):
        manager.record_stats("m1", 40.0, 1.0, "s", 10.0, finished_s=0.2 + 0.1 * k)
    observation = manager.observe(0.75)
    assert observation.frames == {"cam": 5}
    assert observation.frame_rate_hz == {"cam": pytest.approx(10.0)}
    other = dataclasses.replace(pinned, gpu_hz=pinned.gpu_hz // 2)
    manager.record_board(BoardReading(clocks=other), now=0.8, read_s=0.8)
    manager.record_stats("m1", 40.0, 1.0, "s", 10.0, finished_s=0.81)  # started 0.77
    manager.record_stats("m1", 40.0, 1.0, "s", 10.0, finished_s=0.85)  # started 0.81
    observation = manager.observe(0.9)
    assert observation.frames == {"cam": 1}
    assert math.isnan(observation.frame_rate_hz["cam"]), "one frame at the new clocks: no rate"


def test_without_targets_the_windows_do_not_pile_up():
    manager = announced(state())
    for k in range(100):
        manager.record_stats("m1", 10.0, 1.0, "s", 10.0, finished_s=0.1 + 0.001 * k)
    manager.control_step(0.5, 0.5)
    assert manager.observe(1.0).frames == {} and not any(manager.energy_window.values())


def test_clocks_repeat_every_period_and_go_back_to_the_governors_once_with_no_target():
    manager = announced(state("hierarchical"))
    manager.submit(goal(max_latency_ms=80.0), 0.0, (1, 0))
    first = manager.control_step(0.5, 0.5).clocks
    assert first is not None and not first.clocks.use_default_governors
    assert first.log.startswith("clocks -> ")
    again = manager.control_step(1.0, 1.0).clocks
    assert again.clocks == first.clocks and again.log == "", "the heartbeat repeats silently"

    gone = manager.withdraw("cam", 1.2, (2, 0))
    assert gone.state == TargetState.WITHDRAWN and manager.acts_now(gone)
    released = manager.control_step(1.5, 1.5).clocks
    assert released.clocks == ClockSetting.default_governors() and released.reason == NO_TARGETS
    assert "governors" in released.log
    assert manager.control_step(2.0, 2.0).clocks is None, "handed back once"
    assert manager.commanded == {}, "the next target's sub-network is commanded afresh"


def test_only_the_clusters_that_run_a_model_are_pinned():
    manager = announced(state("hierarchical"))
    manager.submit(goal(max_latency_ms=80.0), 0.0, (1, 0))
    pinned = set(manager.control_step(0.5, 0.5).clocks.clocks.cpu_khz)
    in_use = manager.policy.clusters_in_use(manager.goals, manager.observe(1.0))
    all_clusters = {c.name for c in manager.policy.model.description.clocks.cpu_clusters}
    assert pinned == in_use and len(pinned) < len(all_clusters)


def test_a_parked_target_expires_and_leaves_the_status():
    manager = state(parked_timeout_s=3.0)
    manager.submit(goal(), 0.0, (1, 0))
    assert manager.control_step(2.0, 2.0).expired == []
    step = manager.control_step(3.5, 3.5)
    assert [(v.app, v.state) for v in step.expired] == [("cam", TargetState.EXPIRED)]
    assert step.parked == [] and manager.stamps == {}


def test_given_up_and_unmet_goals_are_reported_when_they_change():
    manager = announced(state())
    manager.submit(goal(max_latency_ms=5.0), 0.0, (1, 0))
    manager.record_stats("m1", 31.0, 0.0, "s", 10.0, finished_s=0.4)
    first = manager.control_step(0.5, 0.5)
    assert "cam" in first.newly_given_up and "cam" in first.decision.given_up
    assert "latency 31.00 ms > 5 ms" in first.newly_unmet["cam"]
    manager.record_stats("m1", 31.0, 0.0, "s", 10.0, finished_s=0.9)
    second = manager.control_step(1.0, 1.0)
    assert second.newly_given_up == {} and second.newly_unmet == {}
    assert second.given_up_revised == {}
    assert "cam" in second.unmet, "still listed in the status, only not logged again"
    manager.record_stats("m1", 93.0, 0.0, "s", 10.0, finished_s=1.4)
    third = manager.control_step(1.5, 1.5)
    assert third.newly_given_up == {}
    assert third.given_up_revised == {"cam": third.decision.given_up["cam"]}
    assert third.given_up_revised["cam"] != first.newly_given_up["cam"]


def test_diagnostics_warn_about_missing_profiles_stale_board_status_and_a_late_loop():
    manager = state(board_stale_s=2.0)
    manager.submit(goal(model="not_announced"), 0.0, (1, 0))
    reports = {r.name: r for r in manager.diagnostics(now=1.0, period_s=0.5, lateness_s=0.0)}
    targets = reports["dyndnn/manager/targets"]
    assert targets.level == Level.WARN and "no profile of model 'not_announced'" in targets.message
    assert reports["dyndnn/manager/board_status"].level == Level.WARN
    assert "no board status received" in reports["dyndnn/manager/board_status"].message
    assert reports["dyndnn/manager/control_loop"].level == Level.OK

    manager.withdraw("cam", 1.0, (2, 0))
    manager.record_board(BoardReading(power_w=5.0), now=1.0, read_s=1.0)
    reports = {r.name: r for r in manager.diagnostics(now=2.5, period_s=0.5, lateness_s=0.7)}
    loop = reports.pop("dyndnn/manager/control_loop")
    assert all(r.level == Level.OK for r in reports.values())
    assert loop.level == Level.WARN and "periods skipped" in loop.message
    stale = {r.name: r for r in manager.diagnostics(now=3.5, period_s=0.5, lateness_s=0.0)}
    assert stale["dyndnn/manager/board_status"].level == Level.WARN
    assert "2.5 s old" in stale["dyndnn/manager/board_status"].message


def test_diagnostics_warn_about_a_goal_given_up_or_not_met():
    manager = announced(state())
    manager.submit(goal(min_accuracy=0.9), 0.0, (1, 0))
    manager.control_step(0.5, 0.5)
    targets = manager.diagnostics(0.5, 0.5, 0.0)[0]
    assert targets.level == Level.WARN
    assert "cam: given up: no sub-network meets the goal" in targets.message

    manager.submit(goal(max_power_w=5.0), 1.0, (2, 0))
    manager.record_board(BoardReading(power_w=8.0), now=1.0, read_s=1.0)
    manager.control_step(1.5, 1.5)
    targets = manager.diagnostics(1.5, 0.5, 0.0)[0]
    assert targets.level == Level.WARN
    assert targets.message == "cam: not met: board power 8.00 W > 5 W"


def test_the_control_clock_measures_lateness_and_skips_missed_periods():
    clock = ControlClock(0.5, now=0.0)
    assert clock.tick(0.5) == 0.0 and clock.due == 1.0
    assert clock.tick(2.2) == pytest.approx(1.2) and clock.due == pytest.approx(2.5)
    clock.restart(0.25, now=3.0)
    assert clock.due == 3.25 and clock.lateness_s == 0.0
    with pytest.raises(ValueError, match="control_period_s"):
        ControlClock(0.0, now=0.0)


def test_the_parked_timeout_can_change_and_is_checked():
    manager = state()
    manager.set_parked_timeout(1.0)
    manager.submit(goal(), 0.0, (1, 0))
    assert manager.control_step(1.5, 1.5).expired
    with pytest.raises(ValueError, match="finite number >= 0"):
        manager.set_parked_timeout(-1.0)


@pytest.mark.parametrize("name, knobs", [
    ("subnet_only", {"hold_periods": 3, "use_feedback": True}),
    ("hierarchical", {"headroom": 0.03, "hold_periods": 3, "min_saving": 0.03,
                      "use_feedback": True}),
    ("dvfs_only", {"headroom": 0.03, "hold_periods": 3, "min_saving": 0.03,
                   "use_feedback": True}),
    ("static", {}),
])
def test_the_knobs_offered_are_those_the_policy_takes_with_its_defaults(name, knobs):
    policy = create_policy(name, platform="xavier_nx", runtime_only=True)
    assert policy_knobs(policy) == knobs


def test_a_burst_of_changed_targets_costs_one_early_step():
    from dyndnn_ros.manager_state import EarlyStepGate

    gate = EarlyStepGate(0.1)
    assert gate.request(10.0) == 0.0  # the first change steps at once
    gate.stepped(10.0)
    assert gate.request(10.03) == pytest.approx(0.07)  # the next waits out the gap
    assert gate.request(10.05) is None and gate.request(10.06) is None  # already due
    gate.stepped(10.1)
    assert not gate.pending and gate.request(10.25) == 0.0


CPU_PROFILE = ModelProfile("m1", "xavier_nx/cpu", (subnet("c0", 0.72, 500.0),
                                                   subnet("c1", 0.75, 800.0)), threads=4)


def test_a_cpu_model_is_observed_on_the_cpu_and_told_the_threads_the_policy_chose():
    """The profile's device says CPU; the threads the node reports reach the policy, and the
    threads it chooses go out with the switch, repeated until the node runs them."""
    manager = state("hierarchical")
    manager.model_announced("m1", CPU_PROFILE, "c0", "cluster1")
    manager.submit(goal(max_latency_ms=2000.0, min_accuracy=0.75), 0.0, (1, 0))
    manager.record_stats("m1", 800.0, 0.0, "c0", 30.0, host_overhead_ms=2.5, threads=4,
                         finished_s=0.4)
    observation = manager.observe(0.5)
    assert observation.app_device == {"cam": "cpu"} and observation.threads == {"m1": 4}
    assert observation.host_overhead_ms == {"cam": 2.5}
    step = manager.control_step(0.5, 0.5)
    chosen = step.decision.threads["m1"]
    assert [(s.subnet, s.threads) for s in step.switches] == [("c1", chosen)]
    manager.record_stats("m1", 800.0, 0.0, "c1", 30.0, threads=chosen, finished_s=0.9)
    assert manager.control_step(1.0, 1.0).switches == []


def test_a_cpu_profile_measured_on_other_threads_is_moved_to_the_boards_reference_threads():
    """Latencies measured on 1 thread are longer than the board's 4-thread reference by Amdahl's
    factor; the manager's policy predicts from the reference."""
    manager = state("hierarchical")
    one_thread = dataclasses.replace(CPU_PROFILE, threads=1)
    manager.model_announced("m1", one_thread, "c0", "")
    cpu = manager.policy.model.device("cpu")
    factor = cpu.amdahl(cpu.reference_threads) / cpu.amdahl(1)
    kept = manager.profiles["m1"]
    assert kept.threads == cpu.reference_threads
    assert kept.subnet("c0").latency_mean_ms == pytest.approx(500.0 * factor)
    assert kept.subnet("c1").latency_p99_ms == pytest.approx(800.0 * 1.07 * factor)
    manager.model_announced("m2", dataclasses.replace(PROFILE, model="m2"), "s", "")
    assert manager.profiles["m2"] == dataclasses.replace(PROFILE, model="m2"), "GPU: as it is"


def test_the_clusters_a_cpu_models_threads_fill_are_pinned_with_its_own():
    """Threads beyond its cluster's two cores run on the next cluster: that clock is the model's
    too and must not be left to a governor (which, on a board, may hold it at its minimum)."""
    manager = state("hierarchical")
    manager.model_announced("m1", CPU_PROFILE, "c0", "cluster1")
    manager.submit(goal(max_latency_ms=900.0, min_accuracy=0.72), 0.0, (1, 0))
    manager.record_stats("m1", 500.0, 0.0, "c0", 30.0, threads=4, finished_s=0.4)
    step = manager.control_step(0.5, 0.5)
    threads = step.decision.threads["m1"]
    expected = {"cluster1", "cluster2"} if threads > 2 else {"cluster1"}
    assert set(step.clocks.clocks.cpu_khz) == expected, threads


def test_a_cluster_the_board_does_not_have_is_named_and_not_used():
    """An inference node on an Orin Nano (one CPU cluster) started with cpu_cluster:=cluster1: the
    manager says so and places the model as if it had named no cluster."""
    nano = ManagerState(create_policy("hierarchical", platform="orin_nano_7w"))
    nano.model_announced("m1", PROFILE, "s", "cluster1")
    assert "cluster1" in nano.unknown_cluster("cluster1")
    assert "orin_nano_7w (cluster0)" in nano.unknown_cluster("cluster1")
    assert nano.clusters == {}
    nano.model_announced("m1", PROFILE, "s", "cluster0")
    assert nano.unknown_cluster("cluster0") is None and nano.clusters == {"m1": "cluster0"}
    nano.model_announced("m1", PROFILE, "s", "cluster1")  # moved: the old cluster is forgotten
    assert nano.clusters == {}
    assert state().unknown_cluster("cluster9") is None  # a policy that models no board


def test_a_model_on_a_device_the_board_models_not_is_refused_with_its_targets():
    """The AGX Orin and Orin Nano descriptions model their GPU only: a model announced on the CPU
    there could not be predicted. It is refused, with its targets, and the manager keeps going
    (it raised in the profile callback and took the node down)."""
    cpu_profile = dataclasses.replace(PROFILE, model="m2", device="cpu")
    nano = ManagerState(create_policy("hierarchical", platform="orin_nano_7w"))
    parked = nano.submit(goal("cam2", "m2", max_latency_ms=100.0), now=0.0, stamp=(1, 0))
    assert parked.state == TargetState.PARKED
    new, verdicts = nano.model_announced("m2", cpu_profile, "s", "cluster0")
    assert new and [(v.app, v.state) for v in verdicts] == [("cam2", TargetState.REJECTED)]
    assert "orin_nano_7w models no cpu (devices: gpu): not managed" in verdicts[0].reason
    assert nano.model_announced("m2", cpu_profile, "s", "cluster0") == (False, [])
    again = nano.submit(goal("cam2", "m2", max_latency_ms=90.0), now=1.0, stamp=(2, 0))
    assert again.state == TargetState.REJECTED and "not managed" in again.reason
    assert not nano.acts_now(again)  # nothing in force changed
    assert "m2" not in nano.profiles and not nano.book.parked and not nano.book.goals

    nano.model_announced("m1", PROFILE, "s", "cluster0")  # on the GPU: managed
    accepted = nano.submit(goal("cam1", "m1", max_latency_ms=100.0), now=1.0, stamp=(3, 0))
    assert accepted.state == TargetState.ACCEPTED
    step = nano.control_step(now=1.5, time_s=1.5)
    assert [e.goal.app for e in step.targets] == ["cam1"]

    # a model in force, re-announced on the CPU: its target is dropped, rejected
    _, dropped = nano.model_announced("m1", dataclasses.replace(PROFILE, device="cpu"), "s", "")
    assert [(v.app, v.state) for v in dropped] == [("cam1", TargetState.REJECTED)]
    assert nano.acts_now(dropped[0])  # the clocks held for it are decided again at once
    assert not nano.book.goals and "cam1" not in nano.stamps
    # back on the GPU: the rejected target, sent again as it was (a repeating publisher), applies
    nano.model_announced("m2", dataclasses.replace(cpu_profile, device="gpu"), "s", "")
    resent = nano.submit(goal("cam2", "m2", max_latency_ms=90.0), now=2.0, stamp=(2, 0))
    assert resent is not None and resent.state == TargetState.ACCEPTED
