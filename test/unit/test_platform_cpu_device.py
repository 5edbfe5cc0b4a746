# SPDX-License-Identifier: Apache-2.0
"""CPU inference in the platform model: a CPU device beside the GPU, the thread count as a knob
(Amdahl's law for latency, busy cores on every cluster the threads fill for power), carried by the
policies' decisions into the simulator, and scenario (f)."""

import dataclasses

import numpy as np
import pytest

from dyndnn_ros.evaluation.report import app_table, metrics
from dyndnn_ros.evaluation.runner import DEFAULT_SPECS, run_policy
from dyndnn_ros.evaluation.scenario import ScenarioError, load_scenario, parse_scenario
from dyndnn_ros.paths import config_dir
from dyndnn_ros.platforms.description import PlatformError
from dyndnn_ros.platforms.model import AppLoad, PlatformModel
from dyndnn_ros.simulation.simulator import BoardSimulator
from dyndnn_ros.policies import Observation, create_policy
from dyndnn_ros.policies.search import AppDemand, search_clocks
from dyndnn_ros.profiles import load_profile

MODEL = PlatformModel.load("xavier_nx")
CPU = MODEL.device("cpu")
PROFILE = load_profile(config_dir() / "profiles" / "dynamic_ofa_xavier_nx_cpu.yaml")
TOP = MODEL.max_point()
LOWEST = MODEL.description.clocks.cpu_available_khz[0]


def cpu_app(latency_ms=1000.0, threads=0, fps=0.0, cluster=1):
    return AppLoad(latency_ms, fps, cluster, device="cpu", threads=threads)


def state(apps, cpu=TOP.cpu_khz, gpu=TOP.gpu_hz, emc=TOP.emc_hz):
    return MODEL.steady_state(apps, cpu, gpu, emc)


def test_published_cpu_endpoints_at_max_clocks_and_four_threads():
    """Dynamic-OFA's Xavier NX CPU set: about 0.50 s at 72.5 % to 1.86 s at 78.5 % (the profile's
    reference: 4 threads, max clocks)."""
    assert PROFILE.threads == CPU.reference_threads == 4
    ends = (PROFILE.subnets[0], PROFILE.subnets[-1])
    assert [(s.accuracy, s.latency_mean_ms) for s in ends] == [(0.725, 500.0), (0.785, 1860.0)]
    for s in ends:
        got = float(state([cpu_app(s.latency_mean_ms)]).latency_ms[0])
        assert got == pytest.approx(s.latency_mean_ms, rel=1e-9)


def test_latency_follows_amdahls_law_in_the_thread_count():
    p, c, m = CPU.parallel_fraction, CPU.shares.cpu, CPU.shares.emc
    threads = np.array([1.0, 2.0, 3.0, 4.0])
    got = state([cpu_app(1000.0, threads=threads)]).latency_ms[0]
    amdahl = (1 - p) + p / threads
    expected = 1000.0 * (c * amdahl / ((1 - p) + p / 4) + m)
    assert np.allclose(got, expected, rtol=1e-12)
    assert np.all(np.diff(got) < 0)
    # the memory-bound part does not shrink with threads: 4 threads are less than 4x faster
    assert got[0] / got[3] < 1 / (((1 - p) + p / 4) / 1.0)


def test_busy_cores_enter_power_on_every_cluster_the_threads_fill():
    p = CPU.parallel_fraction
    for threads, clusters in ((1, {1: 1}), (2, {1: 2}), (3, {1: 2, 2: 1}), (4, {1: 2, 2: 2})):
        s = state([cpu_app(1000.0, threads=threads)])
        latency = float(s.latency_ms[0])
        t_cpu = latency - 1000.0 * CPU.shares.emc
        t_mem = 1000.0 * CPU.shares.emc
        # back-to-back: the app always has a frame running
        cores = (t_cpu / ((1 - p) + p / threads) + t_mem * threads) / latency
        assert float(s.host_share[0]) == pytest.approx(cores, rel=1e-12)
        for cluster in range(MODEL.clusters):
            share = clusters.get(cluster, 0) / threads
            assert float(s.cluster_busy_cores[cluster]) == pytest.approx(cores * share, abs=1e-12)
    powers = [float(state([cpu_app(1000.0, threads=t)]).power_w) for t in (1, 2, 3, 4)]
    assert powers == sorted(powers)  # more busy cores at the same clocks: more power
    idle_gpu = state([cpu_app(1000.0)])
    assert float(idle_gpu.gpu_busy) == 0.0 and float(idle_gpu.gpu_share[0]) == 0.0


def test_a_cpu_app_runs_at_the_slowest_clock_of_the_clusters_it_fills():
    slow = (TOP.cpu_khz[0], TOP.cpu_khz[1], TOP.cpu_khz[2] // 2)
    four = [float(state([cpu_app(threads=4)], cpu=c).latency_ms[0]) for c in (TOP.cpu_khz, slow)]
    two = [float(state([cpu_app(threads=2)], cpu=c).latency_ms[0]) for c in (TOP.cpu_khz, slow)]
    assert four[1] > four[0] * 1.5
    assert two[1] == pytest.approx(two[0], rel=1e-12)  # cluster 2 idle: its clock does not matter


def test_a_cpu_app_takes_no_gpu_time_from_a_gpu_app():
    gpu_app = AppLoad(50.0, 30.0, 0)
    alone = state([gpu_app])
    both = state([gpu_app, cpu_app()])
    assert float(both.latency_ms[0]) == pytest.approx(float(alone.latency_ms[0]), rel=1e-12)
    assert float(both.gpu_busy) == pytest.approx(float(alone.gpu_busy), rel=1e-12)
    assert float(both.power_w) > float(alone.power_w)


def test_threads_that_do_not_fit_the_clusters_are_refused():
    with pytest.raises(PlatformError, match="more cores"):
        state([cpu_app(threads=4, cluster=2)])
    assert MODEL.thread_options("cpu", 2) == (1, 2)
    assert MODEL.thread_options("gpu", 0) == ()
    sim = BoardSimulator(MODEL)
    sim.add_app("nav", load_profile(config_dir() / "profiles" / "dynamic_ofa_xavier_nx_gpu.yaml"),
                30.0, 0)
    with pytest.raises(PlatformError, match="no thread count"):
        sim.request_threads("nav", 2)
    with pytest.raises(PlatformError, match="more cores"):
        sim.add_app("scene", PROFILE, 30.0, 2, device="cpu")


def test_simulator_applies_threads_from_the_next_frame_and_matches_the_model():
    sim = BoardSimulator(MODEL, seed=3)
    sim.add_app("scene", PROFILE, 30.0, 1, subnet="c0", device="cpu")
    sim.pin({0: TOP.cpu_khz[0], 1: TOP.cpu_khz[1], 2: TOP.cpu_khz[2]}, TOP.gpu_hz, TOP.emc_hz)
    sim.run_until(0.2)
    assert sim.apps["scene"].threads == 4
    sim.request_threads("scene", 2)
    first = sim.frames[0]
    sim.run_until(first.start_s + first.latency_ms / 1000.0 + 0.5)
    assert sim.apps["scene"].threads == 2
    assert sim.frames[1].latency_ms > first.latency_ms * 1.3
    start, energy, frames = sim.time_s, sim.energy_j, len(sim.frames)
    sim.run_until(start + 30.0)
    model = state([cpu_app(PROFILE.subnet("c0").latency_mean_ms, threads=2, fps=30.0)])
    assert (len(sim.frames) - frames) / 30.0 == pytest.approx(float(model.rate_hz[0]), rel=0.05)
    assert (sim.energy_j - energy) / 30.0 == pytest.approx(float(model.power_w), rel=0.02)


def test_search_chooses_threads_and_the_clock_of_the_clusters_they_fill():
    c3 = PROFILE.subnet("c3")
    options = MODEL.thread_options("cpu", 1)
    loose = AppDemand("scene", c3.latency_mean_ms, 1.07, 30.0, 1, max_tail_ms=4000.0,
                      device="cpu", threads=4, thread_options=options)
    tight = dataclasses.replace(loose, max_tail_ms=1250.0)
    for demand in (loose, tight):
        choice = search_clocks(MODEL, [demand], per_cluster=True)
        (threads,) = choice.threads
        assert threads in options
        point = choice.point
        # the clusters the threads fill share the first one's clock; an idle one is at its lowest
        assert point.cpu_khz[2] == (point.cpu_khz[1] if threads > 2 else LOWEST)
        predicted = state([dataclasses.replace(demand.load(), threads=threads)], point.cpu_khz,
                          point.gpu_hz, point.emc_hz)
        assert float(predicted.latency_ms[0]) * 1.07 <= demand.max_tail_ms
    # a tight target needs more threads or a faster clock than a loose one
    fast = search_clocks(MODEL, [tight], per_cluster=True)
    slow = search_clocks(MODEL, [loose], per_cluster=True)
    assert (fast.threads[0], fast.point.cpu_khz[1]) > (slow.threads[0], slow.point.cpu_khz[1])
    # every thread count the grid holds is tried: none of them beats the choice
    for threads in options:
        pinned = dataclasses.replace(tight, threads=threads, thread_options=())
        alone = search_clocks(MODEL, [pinned], per_cluster=True)
        assert alone is None or alone.energy_per_frame_j >= fast.energy_per_frame_j - 1e-12


def test_scenario_f_runs_a_cpu_and_a_gpu_model():
    f = load_scenario("f_cpu_and_gpu")
    devices = {a.app: a.device for a in f.apps}
    assert devices == {"navigation": "gpu", "scene": "cpu"}
    assert all(a.fps == 30 for a in f.apps)
    doc = {
        "name": "x", "duration_s": 1,
        "apps": [{"app": "a", "profile": "dynamic_ofa_xavier_nx_cpu.yaml", "cluster": "cluster1"}],
        "phases": [{"at_s": 0, "goals": {"a": {"max_latency_ms": 900}}}],
    }
    with pytest.raises(ScenarioError, match="match its profile"):
        parse_scenario(doc)  # a CPU profile run on the (default) GPU device


@pytest.mark.parametrize("policy", ["hierarchical", "oracle"])
def test_policies_choose_threads_for_the_cpu_model(policy):
    f = load_scenario("f_cpu_and_gpu")
    obs = Observation(
        input_fps={"navigation": 30, "scene": 30},
        app_cluster={"navigation": "cluster0", "scene": "cluster1"},
        app_device={"navigation": "gpu", "scene": "cpu"},
        threads={"ofa_cpu": 4},
    )
    decision = create_policy(policy, MODEL).decide(f.phases[1].goals, f.profiles, obs)
    assert set(decision.threads) == {"ofa_cpu"}
    assert decision.threads["ofa_cpu"] in MODEL.thread_options("cpu", 1)
    assert decision.predicted_latency_ms["scene"] <= 1000.0


def test_oracle_is_never_worse_than_the_manager_on_scenario_f():
    """On the first two phases of (f): the oracle's energy per frame on goal is the lower bound
    (within the report's 1 % margin for jitter), and threads move in the manager's run."""
    f = dataclasses.replace(load_scenario("f_cpu_and_gpu"), duration_s=30.0)
    spec = {s.label: s for s in DEFAULT_SPECS}
    oracle = metrics(run_policy(f, spec["oracle"], MODEL))
    manager_run = run_policy(f, spec["hierarchical"], MODEL)
    manager = metrics(manager_run)
    assert oracle.energy_per_frame_on_goal_mj <= manager.energy_per_frame_on_goal_mj * 1.01
    scene_frames = [fr for fr in manager_run.frames if fr.app == "scene"]
    assert len(scene_frames) >= 10
    assert f"| hierarchical | scene | {len(scene_frames)} |" in app_table([manager_run])
