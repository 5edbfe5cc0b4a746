"""TensorRT back end: one engine per sub-network, all engines and execution contexts resident.

Built by `python -m dyndnn_ros.export.tensorrt_build` from the ONNX files of
`python -m dyndnn_ros.export.onnx_export`; both write a manifest.yaml listing every sub-network's
file and input shape. At start-up every engine is deserialised and gets its own execution context
and device buffers, so a switch only selects another context: no engine build or load at run time.
Works with the TensorRT 8.x (bindings) and 10.x (named tensors) Python APIs; device buffers and
the CUDA stream come from torch (CUDA build), which JetPack ships.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from dyndnn_ros.backends.base import BackendError, InferenceBackend

try:  # TensorRT only exists on NVIDIA machines; the module must import without it
    import tensorrt as trt
except ImportError:  # pragma: no cover - exercised only where TensorRT is absent
    trt = None


def tensorrt_available() -> bool:
    if trt is None:
        return False
    import torch
    return torch.cuda.is_available()


def read_manifest(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / "manifest.yaml"
    if not path.is_file():
        raise BackendError(f"no manifest.yaml in {directory}; build engines with "
                           f"`python -m dyndnn_ros.export.tensorrt_build`")
    doc = yaml.safe_load(path.read_text()) or {}
    if not doc.get("subnets"):
        raise BackendError(f"{path} lists no sub-networks")
    return doc


@dataclass
class _ResidentEngine:
    engine: Any
    context: Any
    input_name: str
    output_name: str
    input: Any   # torch CUDA tensor
    output: Any  # torch CUDA tensor
    bindings: list[int]


@dataclass
class TensorRTBackend(InferenceBackend):
    model: str = ""
    """Model config name; locates the engines at build/engines/<model> unless engine_dir is given."""
    engine_dir: str | Path = ""
    """Directory holding manifest.yaml and one .engine file per sub-network."""
    device: str = "cuda:0"
    mode: str = "resident"
    """Only 'resident' exists here: every engine and execution context stays loaded."""
    initial_subnet: str | None = None
    # accepted so the inference node can pass the same parameters to every back end; the engines
    # already hold the weights, and TensorRT does not use host threads
    checkpoint: Any = None
    threads: int | None = None
    _engines: dict[str, _ResidentEngine] = field(init=False, default_factory=dict)
    _shapes: dict[str, tuple[int, int, int]] = field(init=False, default_factory=dict)
    _active: str = field(init=False, default="")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mode != "resident":
            raise BackendError(f"the tensorrt back end keeps every engine resident; mode {self.mode!r} is not offered")
        if not self.engine_dir:
            if not self.model:
                raise BackendError("the tensorrt back end needs engine_dir= or model=")
            self.engine_dir = Path("build/engines") / Path(self.model).stem
        if not tensorrt_available():
            raise BackendError("the tensorrt back end needs the `tensorrt` Python package and a CUDA GPU "
                               "(torch with CUDA); use backend 'torch' elsewhere")
        import torch

        manifest = read_manifest(self.engine_dir)
        self.name, self.model_id = "tensorrt", str(manifest.get("model", ""))
        self.metadata = {k: v for k, v in manifest.items() if k != "subnets"}
        self._torch = torch
        torch.cuda.set_device(torch.device(self.device))
        self._stream = torch.cuda.Stream()
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        for entry in manifest["subnets"]:
            sid = str(entry["id"])
            self._shapes[sid] = tuple(entry["input_shape"])  # type: ignore[assignment]
            self._engines[sid] = self._load(Path(self.engine_dir) / entry["engine"], int(entry.get("batch", 1)), sid)
        self._active = self.initial_subnet or list(self._engines)[-1]
        if self._active not in self._engines:
            raise BackendError(f"initial sub-network {self._active!r} not among {list(self._engines)}")

    def _load(self, path: Path, batch: int, sid: str) -> _ResidentEngine:
        torch = self._torch
        if not path.is_file():
            raise BackendError(f"engine file {path} for sub-network {sid!r} is missing")
        engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise BackendError(f"TensorRT could not deserialise {path} (built with another TensorRT version or GPU?)")
        context = engine.create_execution_context()
        c, h, w = self._shapes[sid]
        if hasattr(engine, "num_io_tensors"):  # TensorRT >= 8.5 named-tensor API (the only one in 10.x)
            names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
            inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
            outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
            input_name, output_name = inputs[0], outputs[0]
            context.set_input_shape(input_name, (batch, c, h, w))
            out_shape = tuple(context.get_tensor_shape(output_name))
        else:  # TensorRT 8.x before the named-tensor API
            input_name, output_name = engine.get_binding_name(0), engine.get_binding_name(1)
            context.set_binding_shape(0, (batch, c, h, w))
            out_shape = tuple(context.get_binding_shape(1))
        x = torch.empty((batch, c, h, w), dtype=torch.float32, device=self.device)
        y = torch.empty(out_shape, dtype=torch.float32, device=self.device)
        if hasattr(context, "set_tensor_address"):
            context.set_tensor_address(input_name, x.data_ptr())
            context.set_tensor_address(output_name, y.data_ptr())
        return _ResidentEngine(engine, context, input_name, output_name, x, y, [x.data_ptr(), y.data_ptr()])

    def available_subnets(self) -> list[str]:
        return list(self._engines)

    @property
    def active_subnet(self) -> str:
        return self._active

    def input_shape_of(self, subnet_id: str) -> tuple[int, int, int]:
        return self._shapes[subnet_id]

    def _activate(self, subnet_id: str) -> None:
        self._active = subnet_id  # every context is resident: selecting one is the whole switch

    def _run(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        e = self._engines[self._active]
        if batch.shape[0] != e.input.shape[0]:
            raise ValueError(f"engine for {self._active!r} was built for batch {e.input.shape[0]}, got {batch.shape[0]}")
        with torch.cuda.stream(self._stream):
            e.input.copy_(torch.from_numpy(batch), non_blocking=False)
            if hasattr(e.context, "execute_async_v3"):
                ok = e.context.execute_async_v3(self._stream.cuda_stream)
            else:
                ok = e.context.execute_async_v2(e.bindings, self._stream.cuda_stream)
            if not ok:
                raise BackendError(f"TensorRT execution of {self._active!r} failed")
            scores = e.output.cpu()  # synchronises the stream
        return scores.numpy()

    def close(self) -> None:
        self._engines.clear()
