# SPDX-License-Identifier: Apache-2.0
"""Profiler: measurements, Pareto front, profile file and PNG."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from dyndnn_ros.models import build_dynamic_model
from dyndnn_ros.profiles import (
    ModelProfile,
    SubnetProfile,
    load_profile,
    save_profile,
    smallest_subnet,
)
from dyndnn_ros.profiling.measure import LatencyStats, count_macs, count_params, peak_memory_mb
from dyndnn_ros.profiling.pareto import pareto_front, plot_profile
from dyndnn_ros.profiling.profile import profile_model


def _s(sid: str, latency: float, accuracy: float) -> SubnetProfile:
    return SubnetProfile(sid, accuracy, latency, latency, latency, latency)


def test_pareto_front_drops_dominated_and_sorts_by_latency() -> None:
    subnets = [
        _s("slow_bad", 5.0, 0.80),
        _s("fast", 1.0, 0.70),
        _s("mid", 2.0, 0.85),
        _s("best", 4.0, 0.90),
        _s("tie_slower", 2.5, 0.85),
    ]
    assert [s.id for s in pareto_front(subnets)] == ["fast", "mid", "best"]


def test_latency_stats_percentiles() -> None:
    stats = LatencyStats.of([i / 1000 for i in range(1, 101)])  # 1..100 ms
    assert stats.p50_ms == pytest.approx(50.5) and stats.p99_ms == pytest.approx(99.01)
    assert stats.mean_ms == pytest.approx(50.5) and stats.samples == 100
    with pytest.raises(ValueError):
        LatencyStats.of([])


def test_macs_params_memory_of_a_known_layer() -> None:
    conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    x = torch.zeros(1, 3, 16, 16)
    assert count_macs(conv, x) == 8 * 16 * 16 * 3 * 9
    assert count_params(conv) == 8 * 3 * 9
    mb, method = peak_memory_mb(conv, x)
    assert mb == pytest.approx((8 * 27 + 3 * 256 + 8 * 256) * 4 / 2**20) and "estimate" in method


def test_profile_model_writes_loadable_profile_and_png(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_dynamic_model({"name": "gc", "family": "groupconv", "checkpoint": None,
                                 "spec": {"group_channels": [2, 4, 4], "groups": 3}})
    profile = profile_model(
        model,
        iterations=5,
        warmup=1,
        accuracy={"g1": 0.5, "g2": 0.7, "g3": 0.9},
        threads=1,
        progress=False,
    )
    assert profile.ids == ["g1", "g2", "g3"] and profile.metadata["weights"] == "random"
    macs = [s.macs for s in profile.subnets]
    assert macs == sorted(macs) and macs[0] > 0
    for s in profile.subnets:
        assert 0 < s.latency_p50_ms <= s.latency_p99_ms and s.throughput_fps > 0 and s.params > 0
    path = save_profile(profile, tmp_path / "p.yaml")
    assert load_profile(path) == profile
    png = plot_profile(profile, tmp_path / "p.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unknown_accuracy_is_marked(tmp_path: Path) -> None:
    model = build_dynamic_model({"name": "gc", "family": "groupconv", "checkpoint": None,
                                 "spec": {"group_channels": [2, 2], "groups": 2}})
    profile = profile_model(model, iterations=2, warmup=0, progress=False)
    assert profile.metadata["accuracy_known"] is False and profile.metadata[
        "accuracy_unknown_for"
    ] == ["g1", "g2"]
    assert plot_profile(profile, tmp_path / "u.png").is_file()


def test_profiling_leaves_the_active_subnetwork_as_it_found_it() -> None:
    config = {"name": "gc", "family": "groupconv", "checkpoint": None,
              "spec": {"group_channels": [2, 2, 2], "groups": 3}}
    model = build_dynamic_model(config, initial_subnet="g2")
    profile = profile_model(model, iterations=2, warmup=0, progress=False)
    assert model.active_subnet == "g2"
    assert smallest_subnet(profile) == "g1", "fewest MACs"


def test_smallest_subnet_falls_back_to_parameters_then_latency() -> None:
    def subnet(sid, macs, params, p50):
        return SubnetProfile(sid, 0.5, p50, p50, p50, p50, macs=macs, params=params)

    profile = ModelProfile("m", "cpu", (subnet("a", 0, 50, 1.0), subnet("b", 0, 10, 3.0)))
    assert smallest_subnet(profile) == "b"
    profile = ModelProfile("m", "cpu", (subnet("a", 0, 0, 2.0), subnet("b", 0, 10, 1.0)))
    assert smallest_subnet(profile) == "b"
    profile = ModelProfile("m", "cpu", (subnet("a", 9, 9, 2.0), subnet("b", 5, 90, 3.0)))
    assert smallest_subnet(profile) == "b"
