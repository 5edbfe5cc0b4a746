# SPDX-License-Identifier: Apache-2.0
"""The governor re-implementations against their published formulas, on hand-computed cases."""
from hypothesis import given, settings, strategies as st

from dyndnn_ros.platforms.description import load_platform
from dyndnn_ros.simulation.governors import (
    ActivityGovernor,
    GovernorConfig,
    PodGov,
    Schedutil,
    lowest_at_least,
    schedutil_next_freq,
)

NX = load_platform("xavier_nx").clocks
CPU, GPU, EMC = NX.cpu_available_khz, NX.gpu_available_hz, NX.emc_available_hz


def test_schedutil_formula_and_tipping_point():
    assert schedutil_next_freq(0.8, 1000) == 1000  # util/max = 0.8 asks for f_ref
    assert schedutil_next_freq(0.4, 1420800) == 710400
    assert lowest_at_least(CPU, 710400) == 729600  # CPUFREQ_RELATION_L
    assert lowest_at_least(CPU, 729600) == 729600
    assert lowest_at_least(CPU, 5e6) == CPU[-1]


def test_schedutil_steady_state_and_rate_limit():
    gov = Schedutil(CPU, rate_limit_s=0.01, half_life_s=0.032)
    f = CPU[-1]
    for k in range(200):  # 2 s at 40 % busy, running at max: invariant util -> 0.4
        f = gov.step(k * 0.01, 0.01, 0.4, CPU[-1], CPU[0], CPU[-1])
    assert abs(gov.util - 0.4) < 1e-3
    assert f == 729600
    # inside the rate limit the frequency does not move, whatever the load
    assert gov.step(2.0 + 0.001, 0.001, 1.0, 729600, CPU[0], CPU[-1]) == 729600


def test_schedutil_respects_the_range():
    gov = Schedutil(CPU)
    assert gov.step(0.0, 1.0, 1.0, CPU[-1], CPU[0], 1036800) == 1036800


def test_podgov_defaults_from_yaml():
    from dyndnn_ros.platforms.model import PlatformModel

    cfg = GovernorConfig.from_yaml(PlatformModel.load().governors)
    assert cfg.podgov == {
        "block_window_s": 0.05,
        "load_max": 900,
        "load_target": 700,
        "bias": 80,
        "smooth": 10,
        "damp": 7,
    }


def test_podgov_overload_boosts_by_a_third_of_max_undamped():
    # rt_load 950 > 900: boost = (1109.25 MHz / 3) = 369 MHz, damp 10: request 510 + 369 = 879 MHz
    # -> 905.25
    gov = PodGov(GPU)
    assert gov.step(1.0, 0.95, 510_000_000, GPU[0], GPU[-1]) == 905_250_000


def test_podgov_under_target_scales_down_smoothed_and_damped():
    # busyness 500 < 700 at 803 MHz: boost = (500-700)*80*803/(100*700) = -183 (C truncation)
    # request 620; freq_avg = (803*10 + 620)/11 = 786; damped (7*620 + 3*786)/10 = 669 MHz ->
    # 701.25
    gov = PodGov(GPU, cycles_avg=803_250_000 * 0.5, freq_avg_mhz=803)
    assert gov.step(1.0, 0.5, 803_250_000, GPU[0], GPU[-1]) == 701_250_000
    assert gov.freq_avg_mhz == 786


def test_podgov_waits_for_the_block_window_after_a_change():
    gov = PodGov(GPU)
    changed = gov.step(1.0, 0.95, 510_000_000, GPU[0], GPU[-1])
    assert gov.step(1.02, 0.95, changed, GPU[0], GPU[-1]) == changed  # 20 ms < 50 ms window


def test_emc_activity_rule_and_gpu_floor():
    gov = ActivityGovernor(EMC, up_threshold=0.6, activity=0.3)
    assert gov.step(0.0, 0.3, EMC[-1], EMC[0], EMC[-1]) == lowest_at_least(
        EMC, EMC[-1] * 0.3 / 0.6
    )
    assert gov.step(0.0, 0.0, EMC[-1], EMC[0], EMC[-1], floor_hz=1.5e9) == 1_600_000_000


@settings(max_examples=60, deadline=None)
@given(st.floats(0, 1), st.sampled_from(CPU), st.sampled_from(GPU), st.floats(0, 2))
def test_governors_always_answer_a_table_frequency_in_range(busy, cpu_cur, gpu_cur, t):
    lo_cpu, hi_cpu = CPU[2], CPU[-3]
    assert lo_cpu <= Schedutil(CPU).step(t, 0.01, busy, cpu_cur, lo_cpu, hi_cpu) <= hi_cpu
    f = PodGov(GPU, freq_avg_mhz=gpu_cur // 1_000_000).step(t, busy, gpu_cur, GPU[1], GPU[-2])
    assert f in GPU and GPU[1] <= f <= GPU[-2]
