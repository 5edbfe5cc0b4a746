# SPDX-License-Identifier: Apache-2.0
"""Smaller pieces of running on a real board: which clusters the manager may pin, and how jtop's
per-CPU view is grouped into the board's clusters."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from dyndnn_ros.hardware.status import JtopStatusSource
from dyndnn_ros.platforms.description import load_platform
from dyndnn_ros.policies import Observation, PerformanceGoal, create_policy


def test_only_clusters_that_run_a_model_are_in_use():
    policy = create_policy("hierarchical", platform="agx_orin_maxn")
    goals = {
        "cam": PerformanceGoal("cam", "m1", 50.0),
        "lidar": PerformanceGoal("lidar", "m2", 50.0),
    }
    assert policy.clusters_in_use(goals, Observation()) == {
        "cluster0",
        "cluster1",
    }  # apps in name order
    placed = Observation(app_cluster={"cam": "cluster2", "lidar": "cluster2"})
    assert policy.clusters_in_use(goals, placed) == {"cluster2"}


def jtop_view(online):
    cpu = [{"online": on, "freq": {"cur": 1000 + i}, "idle": 50.0} for i, on in enumerate(online)]
    return SimpleNamespace(
        cpu={"cpu": cpu},
        gpu={"gpu": {"freq": {"cur": 612000}, "status": {"load": 25.0}}},
        memory={"EMC": {"cur": 2133000, "val": 10.0}},
        temperature={"cpu": {"temp": 41.0, "online": True}},
        power={
            "rail": {"VDD_GPU_SOC": {"power": 3000}, "VDD_CPU_CV": {"power": 1500}},
            "tot": {"power": 4500},
        },
    )


@pytest.mark.parametrize(
    "board, online, expected",
    [
        (
            "agx_orin_maxn",
            [True] * 12,
            [("cluster0", 4, 4), ("cluster1", 4, 4), ("cluster2", 4, 4)],
        ),
        ("orin_nano_7w", [True] * 4 + [False] * 2, [("cluster0", 4, 4)]),
    ],
)
def test_jtop_cpus_are_grouped_into_the_boards_clusters(board, online, expected):
    source = object.__new__(JtopStatusSource)  # jtop's service is not here: its data shapes are
    platform = load_platform(board)
    source.platform_name = platform.name
    source.clusters = [(c.name, c.cpus) for c in platform.clocks.cpu_clusters]
    source.jetson = jtop_view(online)
    sample = source.sample()
    assert [(c.name, c.online_cores, c.total_cores) for c in sample.cpu_clusters] == expected
    assert sample.cpu_clusters[0].frequency_khz == 1003 and sample.gpu_frequency_hz == 612000000
    assert sample.total_power_w == pytest.approx(4.5)
