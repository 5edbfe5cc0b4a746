# SPDX-License-Identifier: Apache-2.0
"""The TensorRT back end against stand-in bindings (test/fakes/tensorrt): engines opened from the
manifest, one context per engine without device memory of its own (the activation buffer is
shared), every failure TensorRT reports by its return value turned into a clear error. There is no
GPU here, so it stops, clearly, where it would allocate CUDA memory."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest
import yaml

from dyndnn_ros.backends.base import BackendError
from dyndnn_ros.paths import share_dir

FAKES = Path(__file__).resolve().parents[1] / "fakes"


@pytest.fixture()
def backend_module(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(FAKES))
    monkeypatch.setenv("FAKE_TENSORRT_LOG", str(tmp_path / "calls.jsonl"))
    sys.modules.pop("tensorrt", None)
    import dyndnn_ros.backends.tensorrt_backend as module

    module = importlib.reload(module)
    assert module.trt.__version__.endswith("fake")
    yield module
    sys.modules.pop("tensorrt", None)
    monkeypatch.undo()
    importlib.reload(module)


def write_engines(folder: Path, ids, fail=(), classes: int = 1000) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    subnets = []
    for i, sid in enumerate(ids):
        doc = {
            "inputs": {"input": [-1, 3, 224, 224]},
            "outputs": {"logits": [-1, classes]},
            "device_memory_size": (i + 1) * 1 << 20,
            "fail": list(fail),
        }
        (folder / f"{sid}.engine").write_text(json.dumps(doc))
        subnets.append({"id": sid, "engine": f"{sid}.engine", "input_shape": [3, 224, 224]})
    (folder / "manifest.yaml").write_text(
        yaml.safe_dump({"model": "ofa_gpu_a", "subnets": subnets})
    )
    return folder


def calls(tmp_path: Path) -> list:
    return [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]


def test_opens_every_engine_with_a_shared_activation_context_then_needs_cuda(
    backend_module, tmp_path
):
    engines = write_engines(tmp_path / "engines", ["a0", "a1", "a2"])
    with pytest.raises(BackendError, match="3 engines opened, but no CUDA device"):
        backend_module.TensorRTBackend(engine_dir=engines)
    log = calls(tmp_path)
    assert sum(c["call"] == "deserialize_cuda_engine" and c["ok"] for c in log) == 3
    assert {c["strategy"] for c in log if c["call"] == "create_execution_context"} == {
        "USER_MANAGED"
    }
    assert [c["shape"] for c in log if c["call"] == "set_input_shape"] == [[1, 3, 224, 224]] * 3


@pytest.mark.parametrize(
    "failing, message",
    [
        ("set_input_shape", "setting the input shape of 'a0' failed"),
        ("create_execution_context", "creating the execution context of 'a0' failed"),
    ],
)
def test_a_failure_reported_by_a_return_value_is_an_error(
    backend_module, tmp_path, failing, message
):
    engines = write_engines(tmp_path / "engines", ["a0"], fail=[failing])
    with pytest.raises(BackendError, match=message):
        backend_module.TensorRTBackend(engine_dir=engines)


def test_an_engine_that_does_not_deserialise_is_named(backend_module, tmp_path):
    engines = write_engines(tmp_path / "engines", ["a0"])
    (engines / "a0.engine").write_bytes(b"\x00\x01 built by another TensorRT")
    with pytest.raises(BackendError, match="could not deserialise .*a0.engine"):
        backend_module.TensorRTBackend(engine_dir=engines)


def test_engine_folder_and_device_are_checked_before_anything_opens(backend_module, tmp_path):
    with pytest.raises(BackendError, match="CUDA device .*not 'cpu'"):
        backend_module.TensorRTBackend(engine_dir=tmp_path, device="cpu")
    assert (
        backend_module.resolve_engine_dir("", "ofa_mbv3_gpu")
        == share_dir() / "engines" / "ofa_mbv3_gpu"
    )
    assert backend_module.resolve_engine_dir("elsewhere/x", "m") == share_dir() / "elsewhere" / "x"
    assert backend_module.resolve_engine_dir(str(tmp_path), "m") == tmp_path
    with pytest.raises(BackendError, match="no manifest.yaml"):
        backend_module.TensorRTBackend(model="ofa_mbv3_gpu")
