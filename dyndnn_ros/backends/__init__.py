"""Inference back ends by name: `create_backend('torch', model='groupconv_digits')`; also 'tensorrt', 'simulation'."""
from __future__ import annotations

from typing import Any, Callable

from dyndnn_ros.backends.base import BackendError, FrameResult, InferenceBackend

BackendFactory = Callable[..., InferenceBackend]
_BACKENDS: dict[str, BackendFactory] = {}


def register_backend(name: str, factory: BackendFactory) -> None:
    """Add a back end (e.g. the simulated one) under `name`."""
    if name in _BACKENDS and _BACKENDS[name] is not factory:
        raise ValueError(f"back end {name!r} registered twice")
    _BACKENDS[name] = factory


def available_backends() -> list[str]:
    return sorted(_BACKENDS)


def create_backend(name: str, **params: Any) -> InferenceBackend:
    """Build the back end `name` with its parameters, e.g. model=, mode=, device=, threads= for 'torch'."""
    factory = _BACKENDS.get(name)
    if factory is None:
        raise BackendError(f"unknown inference back end {name!r}; known back ends: {available_backends()}")
    try:
        return factory(**params)
    except TypeError as exc:  # unknown or missing keyword: say which back end it was for
        raise BackendError(f"bad parameters for back end {name!r}: {exc}") from exc


def _torch_backend(**params: Any) -> InferenceBackend:
    from dyndnn_ros.backends.torch_backend import TorchBackend
    return TorchBackend(**params)


def _tensorrt_backend(**params: Any) -> InferenceBackend:
    from dyndnn_ros.backends.tensorrt_backend import TensorRTBackend
    return TensorRTBackend(**params)


def _simulated_backend(**params: Any) -> InferenceBackend:
    from dyndnn_ros.backends.simulated import SimulatedBackend
    return SimulatedBackend(**params)


# lazy factories: importing this package must not import torch-heavy or platform modules
register_backend("torch", _torch_backend)
register_backend("tensorrt", _tensorrt_backend)
register_backend("simulation", _simulated_backend)

__all__ = ["BackendError", "FrameResult", "InferenceBackend", "available_backends", "create_backend",
           "register_backend"]
