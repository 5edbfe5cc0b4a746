# SPDX-License-Identifier: Apache-2.0
"""The simulated board behind a Jetson-like sysfs tree, with the simulation back end on it."""
import numpy as np
import pytest

from dyndnn_ros.backends.simulated import SimulatedBackend
from dyndnn_ros.hardware import sysfs_paths as paths
from dyndnn_ros.hardware.status import SysfsStatusSource
from dyndnn_ros.hardware.sysfs_clocks import ClockRequest, SysfsClockController
from dyndnn_ros.platforms.model import PlatformModel
from dyndnn_ros.simulation.sysfs_board import SIM_DIR, SysfsBoard

MODEL = PlatformModel.load("xavier_nx")
GPU = MODEL.description.clocks.gpu_available_hz


@pytest.fixture
def board(tmp_path):
    return SysfsBoard(tmp_path, MODEL, tick_s=0.05)


def frame(backend):
    return np.zeros((1, *backend.input_shape), dtype=np.float32)


def test_pinned_clocks_written_by_a_dvfs_component_are_what_the_board_runs(board, tmp_path):
    SysfsClockController(tmp_path, MODEL.description).apply(
        ClockRequest(gpu_hz=GPU[4], emc_hz=1600000000)
    )
    board.step()
    assert board.sim.gpu_hz == GPU[4] and board.sim.emc_hz == 1600000000
    gpu_dir = tmp_path / MODEL.description.clocks.gpu_devfreq_path
    assert paths.read_int(gpu_dir / "cur_freq") == GPU[4]


def test_backend_latency_follows_the_boards_clocks_and_the_board_sees_its_work(board, tmp_path):
    backend = SimulatedBackend(
        model="dynamic_ofa_xavier_nx_gpu", sysfs_root=tmp_path, realtime=False, initial_subnet="a0"
    )
    top = MODEL.max_point()
    clusters = {c.name: top.cpu_khz[0] for c in MODEL.description.clocks.cpu_clusters}
    SysfsClockController(tmp_path, MODEL.description).apply(
        ClockRequest(clusters, top.gpu_hz, top.emc_hz)
    )
    board.step()
    fast = np.mean([backend.infer(frame(backend)).latency_ms for _ in range(20)])
    assert fast == pytest.approx(41.2, rel=0.05)  # the published max-clock latency of a0
    SysfsClockController(tmp_path, MODEL.description).apply(
        ClockRequest(clusters, GPU[3], top.emc_hz)
    )
    board.step()
    slow = np.mean([backend.infer(frame(backend)).latency_ms for _ in range(20)])
    assert slow > 1.5 * fast and backend.last_energy_mj > 0
    assert (tmp_path / SIM_DIR / "apps" / "ofa_gpu_a").is_file()
    board.step()
    sample = SysfsStatusSource(tmp_path, MODEL.description).sample()
    assert sample.gpu_utilization > 0.1 and sample.total_power_w > MODEL.base_w


def test_background_job_slows_the_model(board, tmp_path):
    backend = SimulatedBackend(
        model="dynamic_ofa_xavier_nx_gpu", sysfs_root=tmp_path, realtime=False, initial_subnet="a0"
    )
    board.step()
    alone = np.mean([backend.infer(frame(backend)).latency_ms for _ in range(20)])
    (tmp_path / SIM_DIR / "background_gpu").write_text("0.4\n")
    loaded = np.mean([backend.infer(frame(backend)).latency_ms for _ in range(20)])
    assert loaded > 1.3 * alone


def test_switch_applies_before_the_next_frame_and_unknown_ids_are_refused():
    backend = SimulatedBackend(realtime=False)
    assert backend.active_subnet == "a0"  # the fastest by default
    backend.request_switch("a5")
    result = backend.infer(frame(backend))
    assert result.subnet_id == "a5" and result.scores.shape == (1, 1000)
    with pytest.raises(Exception, match="a9"):
        backend.request_switch("a9")


def test_manager_closes_the_loop_through_the_sysfs_tree(board, tmp_path):
    """Policy -> clock files (the DVFS controller) -> simulated board -> back end latency and the
    hardware monitor's reading -> Observation -> policy, with no ROS in between."""
    from dyndnn_ros.policies import ClockSetting, Observation, PerformanceGoal, create_policy

    backend = SimulatedBackend(
        model="dynamic_ofa_xavier_nx_gpu", sysfs_root=tmp_path, realtime=False
    )
    controller = SysfsClockController(tmp_path, MODEL.description)
    monitor = SysfsStatusSource(tmp_path, MODEL.description)
    policy = create_policy("hierarchical", MODEL)
    goals = {"cam": PerformanceGoal("cam", "ofa_gpu_a", max_latency_ms=80, min_accuracy=0.76)}
    profiles = {"ofa_gpu_a": backend.profile}
    latencies: list[float] = []
    for _ in range(20):
        board.step()
        latencies = [backend.infer(frame(backend)).latency_ms for _ in range(5)]
        hw = monitor.sample()
        obs = Observation(
            latency_ms={"cam": float(np.mean(latencies))},
            frames={"cam": len(latencies)},
            active_subnets={"ofa_gpu_a": backend.active_subnet},
            clocks=ClockSetting(
                {c.name: c.frequency_khz for c in hw.cpu_clusters},
                hw.gpu_frequency_hz,
                controller.read_state().emc_hz,
            ),
            gpu_util=hw.gpu_utilization,
            power_w=hw.total_power_w,
        )
        decision = policy.decide(goals, profiles, obs)
        backend.request_switch(decision.subnets["ofa_gpu_a"])
        controller.apply(
            ClockRequest(
                dict(decision.clocks.cpu_khz), decision.clocks.gpu_hz, decision.clocks.emc_hz
            )
        )
    assert backend.active_subnet == "a2"  # the fastest with accuracy >= 76 %
    assert max(latencies) <= 80 and board.sim.gpu_hz < GPU[-1]
    assert not decision.given_up


def test_a_back_end_announces_its_measured_rate_and_its_cameras(board, tmp_path):
    """The board counts the frames run (the measured rate) and the GPU time asked for (the
    camera's rate) apart."""
    from dyndnn_ros.simulation.sysfs_board import read_app_activity

    backend = SimulatedBackend(sysfs_root=tmp_path, realtime=False, instance="cam")
    backend.report_input_fps(15.0)
    backend.report_host_overhead(2.5)
    backend.infer(frame(backend))
    load = read_app_activity(tmp_path)["cam"]
    assert (load.fps, load.host_overhead_ms, load.measured_rate_hz) == (15.0, 2.5, 0.0)


def test_backend_started_before_the_board_finds_the_tree_later(tmp_path):
    backend = SimulatedBackend(sysfs_root=tmp_path / "jetson", realtime=False, instance="cam/1")
    backend.infer(frame(backend))  # no tree yet: reference clocks, nothing announced
    board = SysfsBoard(tmp_path / "jetson", MODEL)
    board.step()
    backend.infer(frame(backend))
    assert (tmp_path / "jetson" / SIM_DIR / "apps" / "cam_1").is_file()


def test_a_control_file_caught_mid_write_keeps_last_ticks_value(board, tmp_path):
    board.step()
    policy = board.policies[0]
    before = (board.sim.cpu[0].lo, board.sim.cpu[0].hi)
    (policy.directory / "scaling_max_freq").write_text(
        ""
    )  # the DVFS node truncated it, not yet rewritten
    board.step()
    assert (board.sim.cpu[0].lo, board.sim.cpu[0].hi) == before


@pytest.mark.parametrize("name", ["xavier_nx", "xavier_nx_2core", "agx_orin_maxn", "orin_nano_7w"])
def test_every_boards_rails_carry_the_models_power(name, tmp_path):
    """The AGX Orin's tree has no VDD_IN and other rail labels: nothing was written there, and a
    ROS run on it measured 0 J. Each board's total, as the hardware monitor reads it, is now the
    model's power."""
    model = PlatformModel.load(name)
    board = SysfsBoard(tmp_path, model, tick_s=0.05)
    (tmp_path / SIM_DIR / "background_gpu").write_text("0.4\n")
    for _ in range(4):
        board.step()
    sample = SysfsStatusSource(tmp_path, model.description).sample()
    state = board.sim.last_activity
    total = model.rail_split_w(
        board.sim.cpu_khz, board.sim.gpu_hz, board.sim.emc_hz,
        [float(b) for b in state.cluster_busy_cores], float(state.gpu_busy), float(state.emc_busy),
    )["VDD_IN"]  # the model's whole power, whichever labels the tree has
    assert total > model.base_w and len(sample.rails_w) >= 3, sample.rails_w
    assert sample.total_power_w == pytest.approx(total, abs=0.01), sample.rails_w
