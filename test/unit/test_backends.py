# SPDX-License-Identifier: Apache-2.0
"""Inference back ends: creation by name, per-frame protocol, TensorRT on hardware only."""
from __future__ import annotations

import random
import threading
import time

import numpy as np
import pytest
import torch

from dyndnn_ros.backends import BackendError, available_backends, create_backend
from dyndnn_ros.backends.tensorrt_backend import tensorrt_available
from dyndnn_ros.models import UnknownSubnetError

GC = {
    "name": "gc",
    "family": "groupconv",
    "checkpoint": None,
    "spec": {"group_channels": [2, 4, 4], "groups": 3},
}


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
    handle = module.register_forward_pre_hook(
        lambda m, a: (started.set(), release.wait(10)) and None
    )
    results = []
    frame = threading.Thread(
        target=lambda: results.append(b.infer(np.zeros((1, 1, 8, 8), np.float32)))
    )
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
@pytest.mark.skipif(
    not tensorrt_available(), reason="needs the tensorrt Python package and a CUDA GPU"
)
def test_tensorrt_engines_match_torch(tmp_path) -> None:
    from dyndnn_ros.export.onnx_export import export_model
    from dyndnn_ros.export.tensorrt_build import build_all

    export_model(GC, tmp_path / "onnx", progress=False)
    build_all(tmp_path / "onnx", tmp_path / "engines")
    trt_backend = create_backend("tensorrt", engine_dir=tmp_path / "engines")
    reference = create_backend(
        "torch", model=GC
    )  # random weights come from the config seed: same as exported
    frame = np.random.default_rng(0).random((1, 1, 8, 8), dtype=np.float32)
    for sid in trt_backend.available_subnets():
        trt_backend.request_switch(sid)
        reference.request_switch(sid)
        result = trt_backend.infer(frame)
        assert result.subnet_id == sid and result.scores.shape == (1, 10) and result.latency_ms > 0
        np.testing.assert_allclose(
            result.scores, reference.infer(frame).scores, rtol=1e-3, atol=1e-3
        )


def test_switch_storm_never_mixes_subnets_within_a_frame(tmp_path) -> None:
    """Shared-mode OFA reconfigures the super-network on a switch; a switcher thread hammering
    switches while frames run must never produce a frame that is not exactly one sub-network."""
    import yaml

    subnet_set = tmp_path / "pair.yaml"
    subnet_set.write_text(yaml.safe_dump({"name": "pair", "subnets": [
        {"id": "thin", "kernel": 3, "expand": 3, "depth": 2, "resolution": 64},
        {"id": "wide", "kernel": 7, "expand": 6, "depth": 4, "resolution": 64}]}))
    config = {
        "name": "storm",
        "family": "ofa_mbv3",
        "subnets": str(subnet_set),
        "checkpoint": None,
        "supernet": {"n_classes": 10},
    }
    from dyndnn_ros.models.ofa_family import recalibrate_bn

    backend = create_backend("torch", model=config, mode="shared", threads=1)
    model = backend.dynamic_model
    # per-sub-network BN statistics (random weights die out without them); every shared-mode
    # switch copies them into the super-network, which the storm below races against
    calibration = [torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))]
    model.family.bn_stats = {
        sid: recalibrate_bn(model.standalone(sid), calibration) for sid in ("thin", "wide")
    }
    backend.request_switch("thin")
    backend.request_switch("wide")
    reference = {sid: model.standalone(sid) for sid in backend.available_subnets()}
    frame = np.random.default_rng(1).standard_normal((1, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        expected = {sid: m(torch.from_numpy(frame)).numpy() for sid, m in reference.items()}
    assert not np.allclose(expected["thin"], expected["wide"])
    stop = threading.Event()

    def switcher(switch) -> None:
        # random picks, so the request pending at a frame boundary is random whatever the timing
        rng = random.Random(0)
        for _ in range(100_000):  # bounded
            if stop.is_set():
                break
            switch(rng.choice(("thin", "wide")))
            time.sleep(
                2e-4
            )  # keep switching for the whole run instead of using up the budget at once

    # the DynamicModel layer, where a shared-mode switch reconfigures the super-network: every
    # frame must be exactly one of the two sub-networks
    thread = threading.Thread(target=switcher, args=(model.switch,))
    thread.start()
    try:
        for _ in range(30):
            out = model.forward(torch.from_numpy(frame)).numpy()
            assert any(np.allclose(out, e, rtol=1e-5, atol=1e-6) for e in expected.values()), (
                "a mixed frame"
            )
    finally:
        stop.set()
        thread.join(10)
    model.forward(
        torch.from_numpy(frame)
    )  # apply what the direct switches left pending: from here on
    # only the back end switches its model, as in the inference node
    # the back-end layer: and it must be the one the result names
    stop.clear()
    thread = threading.Thread(target=switcher, args=(backend.request_switch,))
    thread.start()
    try:
        seen = set()
        for _ in range(30):
            result = backend.infer(frame)
            seen.add(result.subnet_id)
            np.testing.assert_allclose(
                result.scores, expected[result.subnet_id], rtol=1e-5, atol=1e-6
            )
    finally:
        stop.set()
        thread.join(10)
    assert seen == {"thin", "wide"}


def test_torch_threads_are_set_between_frames(torch_backend) -> None:
    """A CPU model's thread count is a knob the manager turns: torch.set_num_threads, applied
    before the next frame like a switch."""
    before = torch.get_num_threads()
    try:
        assert torch_backend.cpu_threads == 1
        torch_backend.request_threads(2)
        assert torch.get_num_threads() == 2 == torch_backend.cpu_threads
        with pytest.raises(ValueError):
            torch_backend.request_threads(0)
    finally:
        torch.set_num_threads(before)


def simulated(profile: str, **options):
    return create_backend("simulation", model=profile, realtime=False, **options)


def test_simulated_cpu_model_runs_the_threads_it_is_given_as_the_platform_model_does() -> None:
    from dyndnn_ros.platforms.model import AppLoad, PlatformModel, typical_latency_ms

    board = PlatformModel.load("xavier_nx")
    backend = simulated("dynamic_ofa_xavier_nx_cpu", cluster="cluster1", seed=3)
    assert backend.cpu_threads == board.device("cpu").reference_threads == 4
    reference = typical_latency_ms(backend.profile.subnet(backend.active_subnet))

    def mean_ms(frames=200) -> float:
        return float(np.mean([backend.modelled_frame()[0] for _ in range(frames)]))

    ref = board.reference
    for threads in (4, 1, 2):
        backend.request_threads(threads)
        assert backend.cpu_threads == threads
        load = AppLoad(reference, 0.0, 1, device="cpu", threads=threads)
        expected = float(board.steady_state([load], ref.cpu_khz, ref.gpu_hz,
                                            ref.emc_hz).latency_ms[0])
        assert mean_ms() == pytest.approx(expected, rel=0.01)
    with pytest.raises(BackendError, match="allows"):
        backend.request_threads(5)
    for threads in (3, None):  # cluster2 has 2 cores, and no cluster after it
        with pytest.raises(BackendError, match="allows"):
            simulated("dynamic_ofa_xavier_nx_cpu", cluster="cluster2", threads=threads)


def test_a_gpu_model_has_no_thread_count() -> None:
    backend = simulated("dynamic_ofa_xavier_nx_gpu")
    assert backend.cpu_threads == 0
    with pytest.raises(BackendError, match="no thread count"):
        backend.request_threads(2)


def test_the_simulated_frame_lasts_its_modelled_latency_with_the_modelling_inside_it(
        monkeypatch) -> None:
    """In real time the back end's own bookkeeping (reading the board, the platform model: about
    3.5 ms a frame in the ROS runs) runs inside the frame's modelled time, not after it."""
    import dyndnn_ros.backends.simulated as module

    clock = {"now": 100.0}
    slept: list[float] = []

    class FakeTime:
        @staticmethod
        def monotonic() -> float:
            return clock["now"]

        @staticmethod
        def sleep(seconds: float) -> None:
            slept.append(seconds)
            clock["now"] += seconds

    monkeypatch.setattr(module, "time", FakeTime)
    backend = simulated("dynamic_ofa_xavier_nx_gpu")
    backend.realtime = True
    modelled = backend.modelled_frame

    def slow_modelling():
        clock["now"] += 0.004  # the bookkeeping takes 4 ms of the frame
        return modelled()

    monkeypatch.setattr(backend, "modelled_frame", slow_modelling)
    batch = np.zeros((1, *backend.input_shape), dtype=np.float32)
    latency_ms = backend.infer(batch).latency_ms
    assert slept == [pytest.approx(latency_ms / 1000.0 - 0.004)]
