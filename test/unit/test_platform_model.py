# SPDX-License-Identifier: Apache-2.0
"""Calibration of the Xavier NX model: published latencies at max clocks, power inside the power
modes."""

import numpy as np
import pytest

from dyndnn_ros.paths import config_dir
from dyndnn_ros.platforms.model import AppLoad, PlatformModel
from dyndnn_ros.profiles import load_profile

MODEL = PlatformModel.load("xavier_nx")
PROFILES = [
    load_profile(config_dir() / "profiles" / name)
    for name in ("dynamic_ofa_xavier_nx_gpu.yaml", "dynamic_ofa_xavier_nx_gpu_b.yaml")
]
# Dynamic-OFA's published Xavier NX GPU latencies (ms): Lou, Xun et al., CVPR-W 2021
PUBLISHED = [41.2, 45.4, 49.4, 51.1, 56.7, 61.7, 37.5, 41.5, 45.4, 47.3, 48.1, 51.3, 59.1]


def test_max_clock_latencies_match_the_published_set_within_5_percent():
    top = MODEL.max_point()
    subnets = [s for p in PROFILES for s in p.subnets]
    assert len(subnets) == len(PUBLISHED)
    for s, published in zip(subnets, PUBLISHED):
        state = MODEL.steady_state(
            [AppLoad(s.latency_mean_ms, 0, 0)], top.cpu_khz, top.gpu_hz, top.emc_hz
        )
        assert float(state.latency_ms[0]) == pytest.approx(published, rel=0.05), s.id


def test_power_stays_inside_the_power_modes():
    top = MODEL.max_point()
    largest = max(s.latency_mean_ms for p in PROFILES for s in p.subnets)
    one_dnn = MODEL.steady_state([AppLoad(largest, 0, 0)], top.cpu_khz, top.gpu_hz, top.emc_hz)
    assert 8.0 < float(one_dnn.power_w) <= 15.0
    everything = MODEL.power_w(top.cpu_khz, top.gpu_hz, top.emc_hz, [2, 2, 2], 1.0, 1.0)
    assert everything <= 20.0
    for mode in MODEL.power_modes:
        online_clusters = mode["online_cpus"] // MODEL.cores_per_cluster
        cpu = [
            mode["cpu_max_khz"]
            if c < online_clusters
            else MODEL.description.clocks.cpu_available_khz[0]
            for c in range(MODEL.clusters)
        ]
        busy = [2 if c < online_clusters else 0 for c in range(MODEL.clusters)]
        full = MODEL.power_w(cpu, mode["gpu_max_hz"], mode["emc_max_hz"], busy, 1.0, 1.0)
        dnn = MODEL.steady_state(
            [AppLoad(largest, 0, 0)], cpu, mode["gpu_max_hz"], mode["emc_max_hz"]
        ).power_w
        assert float(dnn) <= mode["budget_w"], mode["name"]
        if mode["budget_w"] >= 15:
            assert full <= 20.0, mode["name"]


def test_latency_falls_and_power_rises_with_the_gpu_clock():
    gpu = np.array(MODEL.description.clocks.gpu_available_hz, dtype=float)
    state = MODEL.steady_state(
        [AppLoad(50.0, 10, 0)], MODEL.reference.cpu_khz, gpu, MODEL.reference.emc_hz
    )
    assert np.all(np.diff(state.latency_ms[0]) < 0)
    assert np.all(np.diff(state.power_w) > 0)


def test_background_gpu_load_and_a_second_model_slow_the_gpu_part():
    ref = MODEL.reference
    alone = MODEL.steady_state([AppLoad(50.0, 10, 0)], ref.cpu_khz, ref.gpu_hz, ref.emc_hz)
    loaded = MODEL.steady_state(
        [AppLoad(50.0, 10, 0)], ref.cpu_khz, ref.gpu_hz, ref.emc_hz, background_gpu=0.4
    )
    # only the GPU share (0.72) is stretched by 1 / (1 - 0.4)
    assert float(loaded.latency_ms[0]) == pytest.approx(
        50.0 * (0.10 + 0.72 / 0.6 + 0.18), rel=1e-6
    )
    pair = MODEL.steady_state(
        [AppLoad(50.0, 10, 0), AppLoad(50.0, 10, 1)], ref.cpu_khz, ref.gpu_hz, ref.emc_hz
    )
    assert float(pair.latency_ms[0]) > float(alone.latency_ms[0])


def test_contention_follows_the_gpu_time_asked_for_and_power_the_frames_run():
    """A rate measured under contention is what is left of an app's demand: time slicing shares
    the GPU by what each context asks for (its camera rate and latency), so the stretch is the
    same whatever rate was measured, while utilisation and power follow the frames run."""
    ref = MODEL.reference
    demand = [AppLoad(50.0, 30, 0), AppLoad(50.0, 30, 1)]
    measured = [AppLoad(50.0, 30, 0, measured_rate_hz=6.0), AppLoad(50.0, 30, 1,
                                                                    measured_rate_hz=6.0)]
    asked = MODEL.steady_state(demand, ref.cpu_khz, ref.gpu_hz, ref.emc_hz)
    seen = MODEL.steady_state(measured, ref.cpu_khz, ref.gpu_hz, ref.emc_hz)
    assert seen.latency_ms == pytest.approx(asked.latency_ms)
    assert list(seen.rate_hz.ravel()) == [6.0, 6.0]
    assert float(seen.gpu_busy) < float(asked.gpu_busy)
    assert float(seen.power_w) < float(asked.power_w)


def test_voltage_curve_is_flat_then_rises():
    v = MODEL.gpu_power.voltage
    f_max = MODEL.gpu_power.f_max
    assert v.ratio(0.1 * f_max, f_max) == pytest.approx(v.min_v / v.max_v)
    assert v.ratio(f_max, f_max) == pytest.approx(1.0)


def test_host_overhead_is_added_to_the_frame_cycle_and_keeps_a_core_busy():
    """E[max(L + h, T)]: within the camera period the overhead costs no frames, beyond it every
    frame's cycle grows by h; the host work shows as CPU load on the app's cluster."""
    from dyndnn_ros.platforms.model import frame_period_ms

    assert frame_period_ms(50.0, 0.0, 0.0, 5.0) == pytest.approx(55.0)
    assert frame_period_ms(50.0, 10.0, 0.0, 5.0) == pytest.approx(100.0)
    assert frame_period_ms(50.0, 30.0, 0.0, 5.0) == pytest.approx(55.0)
    jittered = frame_period_ms(50.0, 30.0, 0.1, 5.0)
    assert jittered == pytest.approx(5.0 + frame_period_ms(50.0, 1000.0 / (1000.0 / 30 - 5), 0.1))
    ref = MODEL.reference

    def alone(fps, h):
        return MODEL.steady_state([AppLoad(50.0, fps, 1, host_overhead_ms=h)], ref.cpu_khz,
                                  ref.gpu_hz, ref.emc_hz)

    busy = alone(0, 5.0)
    assert float(busy.rate_hz[0]) == pytest.approx(1000.0 / 55.0, rel=1e-3)
    assert float(busy.host_busy[0]) == pytest.approx(5.0 / 55.0, rel=1e-3)
    assert float(busy.latency_ms[0]) == pytest.approx(float(alone(0, 0.0).latency_ms[0]))
    plain, busy = alone(10.0, 0.0), alone(10.0, 5.0)  # 10 frames/s either way
    assert float(busy.rate_hz[0]) == pytest.approx(float(plain.rate_hz[0]))
    assert float(busy.cluster_busy_cores[1] - plain.cluster_busy_cores[1]) == pytest.approx(
        10 * 5.0 / 1000.0, rel=0.02)
    assert float(busy.power_w) > float(plain.power_w)


def test_an_app_is_placed_on_the_cluster_it_names_or_by_its_order():
    tables = MODEL.description.clocks
    assert tables.cluster_names == ("cluster0", "cluster1", "cluster2")
    assert tables.cluster_index("cluster2", 0) == 2
    assert [tables.cluster_index(name, i) for i, name in enumerate([None, "", "cluster9", None])] \
        == [0, 1, 2, 0]
    nano = PlatformModel.load("orin_nano_7w").description.clocks
    assert nano.cluster_names == ("cluster0",) and nano.cluster_index("cluster1", 1) == 0
