# SPDX-License-Identifier: Apache-2.0
"""The simulated board: pinned clocks hold, governors move, frames follow the camera, energy adds
up."""

import pytest

from dyndnn_ros.paths import config_dir
from dyndnn_ros.platforms.description import PlatformError
from dyndnn_ros.platforms.model import PlatformModel
from dyndnn_ros.simulation.simulator import BoardSimulator
from dyndnn_ros.profiles import load_profile

MODEL = PlatformModel.load("xavier_nx")
PROFILE = load_profile(config_dir() / "profiles" / "dynamic_ofa_xavier_nx_gpu.yaml")
CPU_PROFILE = load_profile(config_dir() / "profiles" / "dynamic_ofa_xavier_nx_cpu.yaml")


def board(fps=10.0, subnet="a0"):
    sim = BoardSimulator(MODEL, seed=1)
    sim.add_app("cam", PROFILE, fps, 0, subnet)
    return sim


def test_pinned_clocks_hold_and_energy_is_power_times_time():
    sim = board()
    sim.pin({0: 729600, 1: 115200, 2: 115200}, gpu_hz=701250000, emc_hz=1600000000)
    sim.run_until(2.0)
    assert set(sim.log.gpu_hz[1:]) == {701250000} and set(sim.log.emc_hz[1:]) == {1600000000}
    assert sim.energy_j == pytest.approx(sum(sim.log.power_w) * sim.tick_s)


def test_camera_rate_bounds_the_frames_and_slow_clocks_drop_frames():
    fast = board(fps=10.0)
    fast.use_governors("performance")
    fast.run_until(3.0)
    assert 29 <= len(fast.frames) <= 31
    slow = board(fps=10.0)
    slow.use_governors("powersave")
    slow.run_until(3.0)
    assert len(slow.frames) < 10  # ~400 ms per frame at min clocks: camera frames are dropped


def test_default_governors_raise_clocks_under_back_to_back_load():
    sim = board(fps=0.0)
    sim.use_governors("default")
    sim.gpu_hz = MODEL.description.clocks.gpu_available_hz[3]
    sim.run_until(2.0)
    assert (
        sim.gpu_hz == MODEL.description.clocks.gpu_available_hz[-1]
    )  # podgov: load > 900 -> boost


def test_switch_applies_from_the_next_frame():
    sim = board(fps=10.0, subnet="a0")
    sim.use_governors("performance")
    sim.run_until(0.5)
    sim.request_switch("cam", "a5")
    sim.run_until(1.0)
    after = [f for f in sim.frames if f.start_s >= 0.5]
    assert after and all(f.subnet == "a5" for f in after)
    assert after[0].latency_ms > 61.7 * 0.85


def test_frames_follow_the_newest_frame_timeline_and_the_model_predicts_their_rate():
    """A frame that arrived while the model ran starts as soon as it ends; the model's rate
    (1000 / E[max(L, T)]) and power match what the simulator's frames did."""
    from dyndnn_ros.platforms.model import AppLoad, typical_latency_ms

    clocks = MODEL.description.clocks
    for fps, gpu in ((30.0, clocks.gpu_available_hz[-1]), (8.0, clocks.gpu_available_hz[5])):
        sim = board(fps=fps, subnet="a3")
        cpu = MODEL.reference.cpu_khz[0]
        sim.pin({0: cpu}, gpu_hz=gpu, emc_hz=MODEL.reference.emc_hz)
        sim.run_until(1.0)
        energy, frames = sim.energy_j, len(sim.frames)
        sim.run_until(21.0)
        load = AppLoad(typical_latency_ms(PROFILE.subnet("a3")), fps, 0)
        state = MODEL.steady_state([load], (cpu, 115200, 115200), gpu, MODEL.reference.emc_hz)
        assert (len(sim.frames) - frames) / 20.0 == pytest.approx(
            float(state.rate_hz[0]), rel=0.02
        )
        assert (sim.energy_j - energy) / 20.0 == pytest.approx(float(state.power_w), rel=0.01)


def test_work_announced_from_elsewhere_counts_at_its_measured_rate():
    """The real-time board has no frames of its own: the back ends' measured rates drive it."""
    from dyndnn_ros.platforms.model import AppLoad

    loads = (
        AppLoad(50.0, 0.0, 0, measured_rate_hz=10.0),
        AppLoad(60.0, 0.0, 1, measured_rate_hz=3.0),
    )
    sim = BoardSimulator(MODEL, seed=1)
    sim.use_governors(
        "performance"
    )  # reference clocks: each frame's GPU work is its profile's share
    sim.external_loads = loads
    sim.run_until(0.5)
    shares = MODEL.device("gpu").shares.gpu + MODEL.device("gpu").shares.emc
    alone = 10.0 * 0.050 * shares + 3.0 * 0.060 * shares  # GPU work per second, no waiting counted
    assert sim.last_activity.gpu_busy == pytest.approx(alone, rel=1e-6)


def test_host_overhead_lengthens_the_frame_cycle_as_the_model_predicts():
    """The node's own work after each inference (image conversion, publishing) delays the next
    frame: back to back, frames come every L + h; the model's rate and power (that work keeps a
    core of the app's cluster busy) match what the simulator's frames did."""
    from dyndnn_ros.platforms.model import AppLoad, typical_latency_ms

    latency = typical_latency_ms(PROFILE.subnet("a3"))
    cpu, gpu, emc = MODEL.reference.cpu_khz[0], MODEL.reference.gpu_hz, MODEL.reference.emc_hz
    rates, powers = [], []
    for overhead_ms in (0.0, 6.0):
        sim = BoardSimulator(MODEL, seed=1)
        sim.add_app("cam", PROFILE, 30.0, 0, "a3", host_overhead_ms=overhead_ms)
        sim.pin({0: cpu}, gpu_hz=gpu, emc_hz=emc)
        sim.run_until(1.0)
        energy, frames = sim.energy_j, len(sim.frames)
        sim.run_until(21.0)
        load = AppLoad(latency, 30.0, 0, host_overhead_ms=overhead_ms)
        state = MODEL.steady_state([load], (cpu, 115200, 115200), gpu, emc)
        rate = (len(sim.frames) - frames) / 20.0
        assert rate == pytest.approx(float(state.rate_hz[0]), rel=0.02)
        assert (sim.energy_j - energy) / 20.0 == pytest.approx(float(state.power_w), rel=0.01)
        rates.append(rate)
        powers.append(float(state.power_w))
    # a3 takes longer than the camera period: the overhead costs frames one for one in time
    assert rates[1] == pytest.approx(rates[0] * latency / (latency + 6.0), rel=0.02)
    assert 0 < powers[0] - powers[1], "fewer GPU frames a second, a little more CPU: less power"


def test_a_negative_host_overhead_is_refused():
    sim = BoardSimulator(MODEL, seed=1)
    with pytest.raises(PlatformError, match="host_overhead_ms"):
        sim.add_app("cam", PROFILE, 30.0, 0, "a3", host_overhead_ms=-1.0)


def test_the_gpu_busy_reading_counts_all_the_work_of_frames_that_overlap():
    """Two apps whose frames start on the same camera ticks, beside a background job: in the ticks
    where their frames overlap they ask for more GPU than a tick holds, and the GPU runs the rest
    in the next ticks. Over the run the busy reading is the work asked for (what a manager
    subtracts its own frames from to find other load), not that less what overlapped."""
    import numpy as np

    sim = BoardSimulator(MODEL, seed=1)
    sim.add_app("a", PROFILE, 8.0, 0, "a0")
    sim.add_app("b", PROFILE, 8.0, 1, "a0")
    sim.background_gpu = 0.2
    top = MODEL.description.clocks
    sim.pin({0: 1420800, 1: 1420800}, gpu_hz=top.gpu_available_hz[-1],
            emc_hz=top.emc_available_hz[-1])
    sim.run_until(20.0)
    state = sim.last_state
    work = sum(
        sum(1 for f in sim.frames if f.app == app) * float(state.gpu_share[i])
        * float(state.latency_ms[i]) / 1000.0
        for i, app in enumerate(("a", "b"))
    )
    assert float(np.mean(sim.log.gpu_busy)) < 0.95  # not saturated: nothing left queued
    assert float(np.mean(sim.log.gpu_busy)) == pytest.approx(0.2 + work / 20.0, rel=0.02)


def test_runs_that_decide_differently_share_their_draws():
    """Common random numbers: an app's k-th frame gets the k-th draw of its own stream, keyed by
    (seed, app, k). Two runs that run other sub-networks, and so drop other camera frames, draw
    the same jitter in the same order; another app's frames do not shift them; a different seed
    or app draws others."""

    def relative_latencies(subnet, seed=1, app="cam"):
        sim = BoardSimulator(MODEL, seed=seed)
        sim.add_app(app, PROFILE, 30.0, 0, subnet)  # frames of 41-62 ms: one camera frame in 2-3
        sim.use_governors("performance")  # clocks at max throughout: one mean latency
        sim.run_until(3.0)
        mean = float(sim.last_state.latency_ms[0])
        return [f.latency_ms / mean for f in sim.frames]

    small, large = relative_latencies("a0"), relative_latencies("a5")
    assert len(small) > len(large) >= 40
    assert large == pytest.approx(small[:len(large)], rel=1e-9)
    assert relative_latencies("a0", seed=2) != pytest.approx(small)
    assert relative_latencies("a0", app="other") != pytest.approx(small)

    def with_a_cpu_app(subnet):
        sim = BoardSimulator(MODEL, seed=1)
        sim.add_app("cam", PROFILE, 30.0, 0, "a0")
        sim.add_app("scene", CPU_PROFILE, 30.0, 1, subnet, device="cpu")
        sim.use_governors("performance")
        sim.run_until(3.0)
        return [f.latency_ms for f in sim.frames if f.app == "cam"]

    assert with_a_cpu_app("c0") == with_a_cpu_app("c5")  # 6 against 2 frames of the CPU app


def test_an_app_added_again_goes_on_with_its_draws():
    sim = board()
    sim.use_governors("performance")
    sim.run_until(1.0)
    first = [f.latency_ms for f in sim.frames]
    sim.add_app("cam", PROFILE, 10.0, 0, "a0")
    sim.run_until(2.0)
    again = [f.latency_ms for f in sim.frames[len(first):]]
    assert len(again) >= 9 and again != pytest.approx(first[:len(again)], rel=1e-6)
