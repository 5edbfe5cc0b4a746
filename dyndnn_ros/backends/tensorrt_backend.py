# SPDX-License-Identifier: Apache-2.0
"""TensorRT back end: one engine per sub-network, all engines and execution contexts resident.

Built by `python -m dyndnn_ros.export.tensorrt_build` from the ONNX files of
`python -m dyndnn_ros.export.onnx_export`; both write a manifest.yaml listing every sub-network's
file and input shape. At start-up every engine is deserialised and gets its own execution context
and I/O buffers, so a switch only selects another context: no engine build or load at run time.
Only one context runs at a time (frames are serialised), so all contexts share one activation
(scratch) buffer, sized for the largest engine, instead of one each. Each engine runs one warm-up
frame at start: with CUDA's lazy module loading (default from CUDA 11.7) the first frame after a
switch would otherwise load its kernels. Every TensorRT call that reports failure is checked.
Works with the TensorRT 8.5+ and 10.x named-tensor Python API (JetPack 5.1 ships 8.5, JetPack 6
ships 10.x); device buffers and the CUDA stream come from torch (CUDA build), which JetPack ships.
Where engines live: `engine_dir` if given (absolute, or relative to the package's share folder),
else <share>/engines/<model>.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np
import yaml

from dyndnn_ros.backends.base import BackendError, InferenceBackend
from dyndnn_ros.paths import share_dir

try:  # TensorRT only exists on NVIDIA machines; the module must import without it
    import tensorrt as trt
except ImportError:  # pragma: no cover - exercised only where TensorRT is absent
    trt = None


def tensorrt_available() -> bool:
    if trt is None:
        return False
    import torch

    return torch.cuda.is_available()


def resolve_engine_dir(engine_dir: str | Path, model: str) -> Path:
    """An absolute engine folder as given; a relative one, or the default engines/<model>, inside
    the package's share folder, so it does not depend on where `ros2 launch` runs."""
    if not engine_dir:
        if not model:
            raise BackendError("the tensorrt back end needs engine_dir= or model=")
        engine_dir = Path("engines") / Path(model).stem
    path = Path(engine_dir)
    return path if path.is_absolute() else share_dir() / path


def _check(ok: Any, what: str) -> Any:
    """TensorRT reports many failures by returning False or None, not by raising."""
    if ok is None or ok is False:
        raise BackendError(f"TensorRT: {what} failed")
    return ok


def read_manifest(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / "manifest.yaml"
    if not path.is_file():
        raise BackendError(
            f"no manifest.yaml in {directory}; build engines with "
            f"`python -m dyndnn_ros.export.tensorrt_build`"
        )
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
    input_shape: Tuple[int, ...]
    output_shape: Tuple[int, ...]
    input: Any = None  # torch CUDA tensor
    output: Any = None  # torch CUDA tensor


@dataclass
class TensorRTBackend(InferenceBackend):
    model: str = ""
    """Model config name; the engines are at <share>/engines/<model> unless engine_dir is given."""
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
    _engines: Dict[str, _ResidentEngine] = field(init=False, default_factory=dict)
    _shapes: Dict[str, Tuple[int, int, int]] = field(init=False, default_factory=dict)
    _active: str = field(init=False, default="")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mode != "resident":
            raise BackendError(
                f"the tensorrt back end keeps every engine resident; no mode {self.mode!r}"
            )
        if not str(self.device).startswith("cuda"):
            raise BackendError(
                f"the tensorrt back end runs on a CUDA device (e.g. cuda:0), not {self.device!r}"
            )
        if trt is None:
            raise BackendError(
                "the tensorrt back end needs the `tensorrt` Python package (JetPack / NVIDIA "
                "TensorRT); use backend 'torch' elsewhere"
            )
        self.engine_dir = resolve_engine_dir(self.engine_dir, self.model)
        manifest = read_manifest(self.engine_dir)
        self.name, self.model_id = "tensorrt", str(manifest.get("model", ""))
        self.metadata = {k: v for k, v in manifest.items() if k != "subnets"}
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = _check(trt.Runtime(self._logger), "creating a runtime")
        for entry in manifest["subnets"]:
            sid = str(entry["id"])
            self._shapes[sid] = tuple(entry["input_shape"])  # type: ignore[assignment]
            self._engines[sid] = self._open(
                Path(self.engine_dir) / entry["engine"], int(entry.get("batch", 1)), sid
            )
        self._active = self.initial_subnet or list(self._engines)[-1]
        if self._active not in self._engines:
            raise BackendError(
                f"initial sub-network {self._active!r} not among {list(self._engines)}"
            )
        self._allocate()
        for sid in self._engines:
            self._warm_up(sid)

    def _open(self, path: Path, batch: int, sid: str) -> _ResidentEngine:
        """Deserialise one engine and make its context, without device memory of its own."""
        if not path.is_file():
            raise BackendError(f"engine file {path} for sub-network {sid!r} is missing")
        engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise BackendError(
                f"TensorRT could not deserialise {path} (built by another TensorRT or GPU?)"
            )
        if not hasattr(engine, "num_io_tensors"):
            raise BackendError(
                f"TensorRT {getattr(trt, '__version__', '?')} predates the named-tensor API (8.5)"
            )
        if hasattr(trt, "ExecutionContextAllocationStrategy"):  # TensorRT 10
            context = engine.create_execution_context(
                trt.ExecutionContextAllocationStrategy.USER_MANAGED
            )
        else:
            context = engine.create_execution_context_without_device_memory()
        _check(context, f"creating the execution context of {sid!r}")
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or len(outputs) != 1:
            raise BackendError(
                f"{path}: expected one input and one output tensor, got {inputs} and {outputs}"
            )
        c, h, w = self._shapes[sid]
        _check(
            context.set_input_shape(inputs[0], (batch, c, h, w)),
            f"setting the input shape of {sid!r}",
        )
        out_shape = tuple(context.get_tensor_shape(outputs[0]))
        if any(d < 0 for d in out_shape):
            raise BackendError(
                f"{sid!r}: output shape {out_shape} still unknown after setting the input shape"
            )
        return _ResidentEngine(engine, context, inputs[0], outputs[0], (batch, c, h, w), out_shape)

    @staticmethod
    def _activation_bytes(engine: Any) -> int:
        size = getattr(engine, "device_memory_size_v2", None)  # TensorRT >= 10.1
        return int(engine.device_memory_size if size is None else size)

    def _allocate(self) -> None:
        """I/O buffers per engine and one activation buffer for all of them, on the GPU."""
        import torch

        if not torch.cuda.is_available():
            raise BackendError(
                f"{len(self._engines)} engines opened, but no CUDA device for them: "
                "torch.cuda.is_available() is False (a CPU-only torch build?)"
            )
        self._torch = torch
        device = torch.device(self.device)
        torch.cuda.set_device(device)
        self._stream = torch.cuda.Stream()
        scratch = max(self._activation_bytes(e.engine) for e in self._engines.values())
        self._activations = torch.empty(max(scratch, 1), dtype=torch.uint8, device=device)
        for sid, e in self._engines.items():
            e.input = torch.empty(e.input_shape, dtype=torch.float32, device=device)
            e.output = torch.empty(e.output_shape, dtype=torch.float32, device=device)
            if hasattr(e.context, "set_device_memory"):  # TensorRT >= 10.1
                e.context.set_device_memory(
                    self._activations.data_ptr(), self._activations.numel()
                )
            else:
                e.context.device_memory = self._activations.data_ptr()
            _check(
                e.context.set_tensor_address(e.input_name, e.input.data_ptr()),
                f"binding the input of {sid!r}",
            )
            _check(
                e.context.set_tensor_address(e.output_name, e.output.data_ptr()),
                f"binding the output of {sid!r}",
            )

    def _execute(self, sid: str) -> None:
        e = self._engines[sid]
        _check(e.context.execute_async_v3(self._stream.cuda_stream), f"execution of {sid!r}")

    def _warm_up(self, sid: str) -> None:
        with self._torch.cuda.stream(self._stream):
            self._engines[sid].input.zero_()
            self._execute(sid)
        self._stream.synchronize()

    def available_subnets(self) -> List[str]:
        return list(self._engines)

    @property
    def active_subnet(self) -> str:
        return self._active

    def input_shape_of(self, subnet_id: str) -> Tuple[int, int, int]:
        return self._shapes[subnet_id]

    def _activate(self, subnet_id: str) -> None:
        self._active = subnet_id  # every context is resident: selecting one is the whole switch

    def _run(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        e = self._engines[self._active]
        if batch.shape[0] != e.input.shape[0]:
            raise ValueError(
                f"engine for {self._active!r} was built for batch {e.input.shape[0]}, "
                f"got {batch.shape[0]}"
            )
        with torch.cuda.stream(self._stream):
            e.input.copy_(torch.from_numpy(batch), non_blocking=False)
            self._execute(self._active)
            scores = e.output.cpu()  # synchronises the stream
        return scores.numpy()

    def close(self) -> None:
        self._engines.clear()
