# SPDX-License-Identifier: Apache-2.0
"""The switching API, the same for both families: exact outputs, clear errors, switches between
frames."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable

import pytest
import torch
import yaml
from torch import nn

from dyndnn_ros.models import (DynamicFamily, DynamicModel, ModelConfigError, UnknownSubnetError,
                               build_dynamic_model)

SMALL_OFA_SET = {
    "name": "test_small",
    "device_kind": "cpu",
    "subnets": [
        {"id": "small", "kernel": 3, "expand": 3, "depth": 2, "resolution": 128},
        {
            "id": "mixed",
            "kernel": [3, 5, 7, 5, 3],
            "expand": [3, 4, 6, 4, 3],
            "depth": [2, 3, 4, 2, 3],
            "resolution": 160,
        },
    ],
}


@pytest.fixture(scope="module")
def ofa_config(tmp_path_factory: pytest.TempPathFactory) -> dict:
    path = Path(tmp_path_factory.mktemp("subnets")) / "test_small.yaml"
    path.write_text(yaml.safe_dump(SMALL_OFA_SET))
    return {"name": "ofa_test", "family": "ofa_mbv3", "subnets": str(path), "checkpoint": None,
            "supernet": {"n_classes": 10}}


def _configs(ofa_config: dict) -> dict[str, dict | str]:
    return {"groupconv": {"name": "gc", "family": "groupconv", "checkpoint": None,
                          "spec": {"group_channels": [2, 4, 4], "groups": 3}},
            "ofa": ofa_config}


@pytest.mark.parametrize("family", ["groupconv", "ofa"])
@pytest.mark.parametrize("mode", ["shared", "resident"])
def test_switch_gives_exactly_the_standalone_subnet(
    family: str, mode: str, ofa_config: dict
) -> None:
    torch.manual_seed(0)
    model = build_dynamic_model(_configs(ofa_config)[family], mode=mode)
    for sid in reversed(model.available_subnets()):
        model.switch(sid)
        assert model.active_subnet == sid
        x = torch.randn(1, *model.input_shape())
        standalone = model.family.materialise(
            sid
        )  # an independent copy of the sub-network's weights
        with torch.no_grad():
            torch.testing.assert_close(model.forward(x), standalone(x), rtol=1e-4, atol=1e-5)


def test_unknown_subnet_raises_clear_error_and_keeps_active(ofa_config: dict) -> None:
    model = build_dynamic_model(_configs(ofa_config)["groupconv"], mode="resident")
    model.switch("g2")
    with pytest.raises(UnknownSubnetError) as err:
        model.switch("g9")
    assert isinstance(err.value, KeyError)
    assert "g9" in str(err.value) and "g1" in str(err.value) and "g3" in str(err.value)
    assert model.active_subnet == "g2" and model.pending_subnet is None


def test_unknown_model_config_names_known_configs() -> None:
    with pytest.raises(ModelConfigError, match="groupconv_digits"):
        build_dynamic_model("no_such_model")


def test_bad_mode_is_rejected(ofa_config: dict) -> None:
    with pytest.raises(ValueError, match="resident"):
        build_dynamic_model(_configs(ofa_config)["groupconv"], mode="lazy")  # type: ignore[arg-type]


class _GatedFamily(DynamicFamily):
    """Sub-network 'a' outputs 1s, 'b' outputs 2s; a forward can be held open to switch mid-frame.
    """

    name, family, metadata = "gated", "test", {}

    def __init__(self) -> None:
        self.started, self.release = threading.Event(), threading.Event()

    def subnet_ids(self) -> list[str]:
        return ["a", "b"]

    def input_shape(self, subnet_id: str) -> tuple[int, int, int]:
        return (1, 1, 1)

    def _runner(self, value: float) -> Callable[[torch.Tensor], torch.Tensor]:
        def run(x: torch.Tensor) -> torch.Tensor:
            self.started.set()
            assert self.release.wait(10), "test forgot to release the frame"
            return torch.full_like(x, value)
        return run

    def activate_shared(self, subnet_id: str) -> Callable[[torch.Tensor], torch.Tensor]:
        return self._runner(1.0 if subnet_id == "a" else 2.0)

    def materialise(self, subnet_id: str) -> nn.Module:
        runner = self._runner(1.0 if subnet_id == "a" else 2.0)

        class Wrapped(nn.Module):
            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return runner(x)
        return Wrapped()


@pytest.mark.parametrize("mode", ["shared", "resident"])
def test_switch_during_a_frame_applies_on_the_next_frame(mode: str) -> None:
    family = _GatedFamily()
    model = DynamicModel(family, mode=mode, initial_subnet="a")  # type: ignore[arg-type]
    x = torch.zeros(1, 1, 1, 1)
    result: list[torch.Tensor] = []
    frame = threading.Thread(target=lambda: result.append(model.forward(x)))
    frame.start()
    assert family.started.wait(10)
    model.switch("b")  # from another thread while the frame runs
    assert model.active_subnet == "a" and model.pending_subnet == "b"
    family.release.set()
    frame.join(10)
    assert result and float(result[0]) == 1.0, (
        "the running frame must finish on the old sub-network"
    )
    assert float(model.forward(x)) == 2.0
    assert model.active_subnet == "b" and model.pending_subnet is None


def test_switch_during_a_real_groupconv_frame(ofa_config: dict) -> None:
    torch.manual_seed(0)
    model = build_dynamic_model(
        _configs(ofa_config)["groupconv"], mode="resident", initial_subnet="g1"
    )
    started, release = threading.Event(), threading.Event()

    def hold(module: nn.Module, args: tuple) -> None:
        started.set()
        release.wait(10)
    handle = model.resident_module("g1").register_forward_pre_hook(hold)
    x = torch.randn(2, 1, 8, 8)
    out: list[torch.Tensor] = []
    frame = threading.Thread(target=lambda: out.append(model.forward(x)))
    frame.start()
    assert started.wait(10)
    model.switch("g3")
    release.set()
    frame.join(10)
    handle.remove()
    with torch.no_grad():
        torch.testing.assert_close(out[0], model.resident_module("g1")(x))
        torch.testing.assert_close(model.forward(x), model.resident_module("g3")(x))


def test_resident_switch_p99_below_1ms(ofa_config: dict) -> None:
    model = build_dynamic_model(_configs(ofa_config)["groupconv"], mode="resident")
    ids = model.available_subnets()
    times = []
    for i in range(2000):
        t0 = time.perf_counter()
        model.switch(ids[i % len(ids)])
        times.append(time.perf_counter() - t0)
    times.sort()
    assert times[int(0.99 * len(times))] < 1e-3


def test_materialising_another_subnet_leaves_shared_model_unchanged(ofa_config: dict) -> None:
    model = build_dynamic_model(ofa_config, mode="shared", initial_subnet="small")
    x = torch.randn(1, *model.input_shape())
    before = model.forward(x)
    other = model.standalone("mixed")  # e.g. the profiler or the exporter asking for a copy
    assert isinstance(other, nn.Module)
    torch.testing.assert_close(model.forward(x), before, rtol=0, atol=0)
    assert model.active_subnet == "small"
