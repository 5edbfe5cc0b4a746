# SPDX-License-Identifier: Apache-2.0
"""Model families by name (timm-style) and the interface a family offers to `DynamicModel`."""
from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable, Dict

import torch
import yaml
from torch import nn

from dyndnn_ros.paths import known_configs, resolve_config, share_dir
from dyndnn_ros.registry import Registry

log = logging.getLogger(__name__)


class ModelConfigError(ValueError):
    """A model config is missing, malformed or names an unknown family."""


class UnknownSubnetError(KeyError):
    """A sub-network id that the model does not offer (a KeyError naming the known ids)."""

    def __init__(self, subnet_id: object, known: list[str]) -> None:
        super().__init__(f"unknown sub-network {subnet_id!r}; known sub-networks: {known}")
        self.subnet_id = subnet_id
        self.known = list(known)

    def __str__(self) -> str:  # KeyError would otherwise print the repr of the message
        return str(self.args[0])


class DynamicFamily(ABC):
    """What one dynamic network offers: its sub-networks, run on shared weights or materialised
    alone."""

    name: str
    family: str
    metadata: dict[str, Any]
    """Provenance written into profiles, e.g. {'weights': 'random'} or the checkpoint path."""

    @abstractmethod
    def subnet_ids(self) -> list[str]: ...

    @abstractmethod
    def input_shape(self, subnet_id: str) -> tuple[int, int, int]:
        """(channels, height, width) of one input frame for this sub-network."""

    @abstractmethod
    def activate_shared(self, subnet_id: str) -> Callable[[torch.Tensor], torch.Tensor]:
        """Make the shared weights compute `subnet_id`; return the callable that runs one frame."""

    @abstractmethod
    def materialise(self, subnet_id: str) -> nn.Module:
        """`subnet_id` as a standalone eval-mode module holding its own copy of the weights.

        Must leave what `activate_shared` set up unchanged. Not safe while a shared-mode frame runs
        in another thread: go through `DynamicModel.standalone`, which waits for the frame.
        """

    def accuracy(self, subnet_id: str) -> float | None:
        """Measured top-1 accuracy where the checkpoint or training table knows it."""
        return None

    def to(self, device: str) -> "DynamicFamily":
        return self


FamilyBuilder = Callable[[Dict[str, Any], "Path | None"], DynamicFamily]  # typing.Dict: Python 3.8
FAMILIES: Registry[DynamicFamily] = Registry("model family", ModelConfigError, "families")
"""Families by name; the family modules register themselves (models/__init__.py imports them)."""


def register_family(name: str) -> Callable[[FamilyBuilder], FamilyBuilder]:
    return FAMILIES.register(name)


def available_families() -> list[str]:
    return FAMILIES.names()


def available_model_configs() -> list[str]:
    return known_configs("models")


def load_model_config(config: str | Path | dict[str, Any]) -> dict[str, Any]:
    """A dict as is; a path to a YAML file; or a name looked up in config/models/<name>.yaml."""
    if isinstance(config, dict):
        doc = dict(config)
    else:
        path = resolve_config("models", config, "model config", ModelConfigError)
        doc = yaml.safe_load(path.read_text()) or {}
    if not isinstance(doc, dict) or "family" not in doc or "name" not in doc:
        raise ModelConfigError(f"model config {config!r} needs at least 'name' and 'family'")
    return doc


def build_family(
    config: str | Path | dict[str, Any], checkpoint: str | Path | None = None
) -> DynamicFamily:
    doc = load_model_config(config)
    if doc["family"] not in FAMILIES.names():
        raise ModelConfigError(f"model {doc['name']!r} names unknown family {doc['family']!r}; "
                               f"known families: {FAMILIES.names()}")
    return FAMILIES.factory(doc["family"])(doc, resolve_checkpoint(doc, checkpoint))


def resolve_checkpoint(doc: dict[str, Any], checkpoint: str | Path | None) -> Path | None:
    """An explicit checkpoint must exist; the config's default one may be absent (random weights).
    """
    if checkpoint is not None:
        path = Path(checkpoint)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint {path} for model {doc['name']!r} does not exist")
        return path
    default = doc.get("checkpoint")
    if default:
        # a relative path in a shipped config is relative to the package (source checkout or
        # share/dyndnn_ros), wherever the node was started; the working directory comes first
        for path in (Path(default), share_dir() / default):
            if path.is_file():
                return path
    log.warning(
        "model %s: no checkpoint (%s not found) -> RANDOM WEIGHTS; outputs are meaningless, "
        "timings are still valid",
        doc["name"],
        default,
    )
    return None
