"""Inference back ends: creation by name, per-frame protocol, TensorRT on hardware only."""
from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from dyndnn_ros.backends import BackendError, available_backends, create_backend
from dyndnn_ros.backends.tensorrt_backend import tensorrt_available
from dyndnn_ros.models import UnknownSubnetError

GC = {"name": "gc", "family": "groupconv", "checkpoint": None, "spec": {"group_channels": [2, 4, 4], "groups": 3}}


@pytest.fixture()
def torch_backend():
    torch.manual_seed(0)
    return create_backend("torch", model=GC, mode="resident", threads=1)


def test_create_by_name_and_unknown_name() -> None:
    assert {"torch", "tensorrt", "simulation"} <= set(available_backends())
    with pytest.raises(BackendError, match="known back ends"):
        create_backend("onnx-magic")
    with pytest.raises(BackendError, match="torch"):
        create_backend("torch", model=GC, no_such_option=1)


def test_torch_backend_infers_with_latency_and_switches(torch_backend) -> None:
    b = torch_backend
    assert b.available_subnets() == ["g1", "g2", "g3"] and b.input_shape == (1, 8, 8)
    frame = np.random.default_rng(0).random((2, 1, 8, 8), dtype=np.float32)
    for sid in ("g1", "g3"):
        b.request_switch(sid)
        result = b.infer(frame)
        assert result.subnet_id == sid == b.active_subnet
        assert result.scores.shape == (2, 10) and result.latency_ms > 0
        with torch.no_grad():
            expected = b.dynamic_model.family.materialise(sid)(torch.from_numpy(frame)).numpy()
        np.testing.assert_allclose(result.scores, expected, rtol=1e-5, atol=1e-6)


def test_torch_backend_rejects_bad_input_and_unknown_subnet(torch_backend) -> None:
    b = torch_backend
    with pytest.raises(ValueError, match="takes"):
        b.infer(np.zeros((1, 3, 8, 8), np.float32))
    with pytest.raises(TypeError):
        b.infer([[0.0]])  # type: ignore[arg-type]
    b.request_switch("g2")
    with pytest.raises(UnknownSubnetError, match="g1"):
        b.request_switch("g7")
    assert b.active_subnet == "g2"


def test_switch_requested_during_a_frame_applies_to_the_next(torch_backend) -> None:
    b = torch_backend
    b.request_switch("g1")
    started, release = threading.Event(), threading.Event()
    module = b.dynamic_model.resident_module("g1")
    handle = module.register_forward_pre_hook(lambda m, a: (started.set(), release.wait(10)) and None)
    results = []
    frame = threading.Thread(target=lambda: results.append(b.infer(np.zeros((1, 1, 8, 8), np.float32))))
    frame.start()
    assert started.wait(10)
    b.request_switch("g3")
    assert b.active_subnet == "g1" and b.pending_subnet == "g3"
    release.set()
    frame.join(10)
    handle.remove()
    assert results[0].subnet_id == "g1"
    assert b.infer(np.zeros((1, 1, 8, 8), np.float32)).subnet_id == "g3"


def test_tensorrt_backend_refuses_clearly_without_tensorrt() -> None:
    if tensorrt_available():
        pytest.skip("TensorRT and a GPU are present; covered by the hardware test")
    with pytest.raises(BackendError, match="tensorrt"):
        create_backend("tensorrt", model="groupconv_digits")


@pytest.mark.hardware
@pytest.mark.skipif(not tensorrt_available(), reason="needs the tensorrt Python package and a CUDA GPU")
def test_tensorrt_engines_match_torch(tmp_path) -> None:
    from dyndnn_ros.export.onnx_export import export_model
    from dyndnn_ros.export.tensorrt_build import build_all

    export_model(GC, tmp_path / "onnx", progress=False)
    build_all(tmp_path / "onnx", tmp_path / "engines")
    trt_backend = create_backend("tensorrt", engine_dir=tmp_path / "engines")
    reference = create_backend("torch", model=GC)  # random weights come from the config seed: same as exported
    frame = np.random.default_rng(0).random((1, 1, 8, 8), dtype=np.float32)
    for sid in trt_backend.available_subnets():
        trt_backend.request_switch(sid)
        reference.request_switch(sid)
        result = trt_backend.infer(frame)
        assert result.subnet_id == sid and result.scores.shape == (1, 10) and result.latency_ms > 0
        np.testing.assert_allclose(result.scores, reference.infer(frame).scores, rtol=1e-3, atol=1e-3)
