# SPDX-License-Identifier: Apache-2.0
"""Inference back ends by name: `create_backend('torch', model='groupconv_digits')`; also
'tensorrt', 'simulation'."""
from __future__ import annotations

from typing import Any

from dyndnn_ros.backends.base import BackendError, FrameResult, InferenceBackend
from dyndnn_ros.registry import Factory, Registry

BACKENDS: Registry[InferenceBackend] = Registry("inference back end", BackendError, "back ends")


def register_backend(name: str, factory: Factory) -> None:
    """Add a back end under `name`: a class or function, or "module:attribute" to import it only
    when it is built."""
    BACKENDS.register(name, factory)


def available_backends() -> list[str]:
    return BACKENDS.names()


def create_backend(name: str, **params: Any) -> InferenceBackend:
    """Build the back end `name` with its parameters, e.g. model=, mode=, device=, threads= for
    'torch'."""
    return BACKENDS.create(name, **params)


# by import path: naming a back end must not import torch, TensorRT or the platform model
register_backend("torch", "dyndnn_ros.backends.torch_backend:TorchBackend")
register_backend("tensorrt", "dyndnn_ros.backends.tensorrt_backend:TensorRTBackend")
register_backend("simulation", "dyndnn_ros.backends.simulated:SimulatedBackend")

__all__ = ["BackendError", "FrameResult", "InferenceBackend", "available_backends",
           "create_backend", "register_backend"]
