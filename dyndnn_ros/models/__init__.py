# SPDX-License-Identifier: Apache-2.0
"""Dynamic DNN families (group-convolution, Once-for-All MobileNetV3) behind one switching API."""
from dyndnn_ros.models.dynamic import MODES, DynamicModel, build_dynamic_model
from dyndnn_ros.models.registry import (
    DynamicFamily,
    ModelConfigError,
    UnknownSubnetError,
    available_families,
    available_model_configs,
    build_family,
    register_family,
)

# the built-in families register themselves when imported (one-way: registry.py imports none)
from dyndnn_ros.models import groupconv_family, ofa_family  # noqa: E402,F401

__all__ = [
    "MODES",
    "DynamicFamily",
    "DynamicModel",
    "ModelConfigError",
    "UnknownSubnetError",
    "available_families",
    "available_model_configs",
    "build_dynamic_model",
    "build_family",
    "register_family",
]
