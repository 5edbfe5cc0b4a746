# SPDX-License-Identifier: Apache-2.0
"""The group-convolution network as a `DynamicFamily` (registered as 'groupconv')."""
from __future__ import annotations

import logging
from dataclasses import fields
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from dyndnn_ros.models.groupconv import GroupConvNet, GroupConvSpec, groups_of, subnet_ids
from dyndnn_ros.models.registry import DynamicFamily, ModelConfigError, register_family

log = logging.getLogger(__name__)


def spec_from_dict(doc: dict[str, Any]) -> GroupConvSpec:
    known = {f.name for f in fields(GroupConvSpec)}
    unknown = set(doc) - known
    if unknown:
        raise ModelConfigError(
            f"group-conv spec has unknown keys {sorted(unknown)}; known: {sorted(known)}"
        )
    return GroupConvSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in doc.items()})


class GroupConvFamily(DynamicFamily):
    family = "groupconv"

    def __init__(
        self, name: str, net: GroupConvNet, metadata: dict[str, Any], accuracy: dict[str, float]
    ) -> None:
        self.name, self.net, self.metadata, self._accuracy = name, net.eval(), metadata, accuracy

    def subnet_ids(self) -> list[str]:
        return subnet_ids(self.net.spec.groups)

    def input_shape(self, subnet_id: str) -> tuple[int, int, int]:
        groups_of(subnet_id, self.net.spec.groups)
        s = self.net.spec
        return (s.in_channels, s.image_size, s.image_size)

    def activate_shared(self, subnet_id: str) -> Callable[[torch.Tensor], torch.Tensor]:
        k = groups_of(subnet_id, self.net.spec.groups)
        return lambda x: self.net.forward_groups(x, k)

    def materialise(self, subnet_id: str) -> nn.Module:
        return self.net.standalone(groups_of(subnet_id, self.net.spec.groups))

    def accuracy(self, subnet_id: str) -> float | None:
        return self._accuracy.get(subnet_id)

    def to(self, device: str) -> "GroupConvFamily":
        self.net.to(device)
        return self


@register_family("groupconv")
def build_groupconv(config: dict[str, Any], checkpoint: Path | None) -> GroupConvFamily:
    spec = spec_from_dict(config.get("spec") or {})
    accuracy: dict[str, float] = {}
    if checkpoint is None:
        with torch.random.fork_rng(
            devices=[]
        ):  # seeded: random weights are the same in every process
            torch.manual_seed(int(config.get("seed", 0)))
            net = GroupConvNet(spec)
        metadata = {"weights": "random", "checkpoint": None}
    else:
        saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
        if saved.get("family") != "groupconv":
            raise ModelConfigError(
                f"{checkpoint} is not a group-conv checkpoint (family {saved.get('family')!r})"
            )
        saved_spec = spec_from_dict(saved["spec"])
        if saved_spec != spec:
            log.warning(
                "model %s: checkpoint %s has spec %s, config says %s; using the checkpoint's",
                config["name"],
                checkpoint,
                saved_spec,
                spec,
            )
        net = GroupConvNet(saved_spec)
        net.load_state_dict(saved["state_dict"])
        accuracy = {str(k): float(v) for k, v in (saved.get("accuracy") or {}).items()}
        metadata = {"weights": "trained", "checkpoint": str(checkpoint)}
    return GroupConvFamily(str(config["name"]), net, metadata, accuracy)
