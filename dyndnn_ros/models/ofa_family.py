# SPDX-License-Identifier: Apache-2.0
"""The OFA MobileNetV3 super-network as a `DynamicFamily` (registered as 'ofa_mbv3').

The sub-networks offered are a named set from config/subnets/<set>.yaml, chosen per device kind
(CPU: deep-narrow, GPU: shallow-wide). Each sub-network may carry its own BatchNorm running
statistics (recalibrated on a few batches, see `recalibrate_bn`), saved in one file with the set
and restored both into the materialised module (resident mode) and into the super-network's
slices on every shared-mode switch.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Dict, Iterable

import torch
import yaml
from torch import nn

from dyndnn_ros.models.ofa_mbv3 import MobileNetV3, OFAMobileNetV3, SubnetConfig
from dyndnn_ros.models.registry import (
    DynamicFamily,
    ModelConfigError,
    UnknownSubnetError,
    register_family,
)
from dyndnn_ros.paths import resolve_config

log = logging.getLogger(__name__)

BNStats = Dict[str, torch.Tensor]  # typing.Dict: a run-time alias must work on Python 3.8
"""Running mean/var of one materialised sub-network, by its own state_dict keys."""


def load_subnet_set(name_or_path: str | Path) -> dict[str, Any]:
    path = resolve_config("subnets", name_or_path, "sub-network set", ModelConfigError)
    doc = yaml.safe_load(path.read_text()) or {}
    if not doc.get("subnets"):
        raise ModelConfigError(f"sub-network set {path} lists no sub-networks")
    return doc


def parse_subnets(net: OFAMobileNetV3, doc: dict[str, Any]) -> dict[str, SubnetConfig]:
    configs: dict[str, SubnetConfig] = {}
    for entry in doc["subnets"]:
        sid = str(entry.get("id", ""))
        if not sid or sid in configs:
            raise ModelConfigError(
                f"sub-network set {doc.get('name')!r}: missing or repeated id {sid!r}"
            )
        try:
            configs[sid] = net.subnet_config(
                entry["kernel"], entry["expand"], entry["depth"], entry["resolution"]
            )
        except (KeyError, ValueError) as exc:
            raise ModelConfigError(
                f"sub-network {sid!r} of set {doc.get('name')!r}: {exc}"
            ) from exc
    return configs


def bn_buffers(module: nn.Module) -> BNStats:
    return {
        k: v.detach().clone()
        for k, v in module.state_dict().items()
        if k.endswith(("running_mean", "running_var"))
    }


@torch.no_grad()
def recalibrate_bn(
    module: nn.Module, batches: Iterable[torch.Tensor], max_batches: int = 50
) -> BNStats:
    """Re-estimate BN running statistics of a materialised sub-network (exact averages over the
    batches)."""
    bns = [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]
    saved_momentum = [m.momentum for m in bns]
    was_training = module.training
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average instead of an exponential one
    module.train()
    seen = 0
    for batch in batches:
        if seen >= max_batches:
            break
        module(batch)
        seen += 1
    if seen == 0:
        raise ValueError("recalibrate_bn needs at least one batch")
    for m, momentum in zip(bns, saved_momentum):
        m.momentum = momentum
    module.train(was_training)
    return bn_buffers(module)


class OFAFamily(DynamicFamily):
    family = "ofa_mbv3"

    def __init__(self, name: str, net: OFAMobileNetV3, subnets: dict[str, SubnetConfig],
                 bn_stats: dict[str, BNStats], metadata: dict[str, Any],
                 accuracy: dict[str, float] | None = None) -> None:
        self.name, self.net, self.subnets, self.bn_stats, self.metadata = (
            name,
            net.eval(),
            subnets,
            bn_stats,
            metadata,
        )
        self._accuracy = dict(accuracy or {})

    def subnet_ids(self) -> list[str]:
        return list(self.subnets)

    def config_of(self, subnet_id: str) -> SubnetConfig:
        if subnet_id not in self.subnets:
            raise UnknownSubnetError(subnet_id, list(self.subnets))
        return self.subnets[subnet_id]

    def accuracy(self, subnet_id: str) -> float | None:
        """Top-1 written with the sub-network set (measured with these weights), if any."""
        return self._accuracy.get(subnet_id)

    def input_shape(self, subnet_id: str) -> tuple[int, int, int]:
        r = self.config_of(subnet_id).resolution
        return (self.net.in_channels, r, r)

    def activate_shared(self, subnet_id: str) -> Callable[[torch.Tensor], torch.Tensor]:
        self.net.set_active_subnet(self.config_of(subnet_id))
        stats = self.bn_stats.get(subnet_id)
        if stats:
            self._load_stats_into_supernet(stats)
        return self.net

    def materialise(self, subnet_id: str) -> MobileNetV3:
        # leave the super-network computing what it computed before: a shared-mode model may be
        # using it
        previous = self.net.active_subnet_config(resolution=0)
        self.net.set_active_subnet(self.config_of(subnet_id))
        try:
            sub = self.net.get_active_subnet().eval()
        finally:
            self.net.set_active_subnet(previous)
        stats = self.bn_stats.get(subnet_id)
        if stats:
            sub.load_state_dict(stats, strict=False)
        return sub

    @torch.no_grad()
    def _load_stats_into_supernet(self, stats: BNStats) -> None:
        own = self.net.state_dict(keep_vars=True)
        blocks = self.net.active_block_indices()
        for key, value in stats.items():
            target = supernet_key(key, blocks)
            own[target][:value.numel()].copy_(value)

    def to(self, device: str) -> "OFAFamily":
        self.net.to(device)
        return self


def supernet_key(subnet_key: str, active_blocks: list[int]) -> str:
    """Map a materialised sub-network's key to the super-network's (block j -> its super-net
    block)."""
    parts = subnet_key.split(".")
    if parts[0] != "blocks" or parts[1] == "0":
        return subnet_key  # first conv, first block and the head are not elastic
    parts[1] = str(active_blocks[int(parts[1])])
    key = ".".join(parts)
    return key.replace(".bn.running_", ".bn.bn.running_")


def save_bn_stats(
    path: str | Path, subnet_set: str, stats: dict[str, BNStats], source: str
) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"subnet_set": subnet_set, "source": source, "stats": stats}, path)
    return path


def load_bn_stats(path: str | Path, subnet_set: str) -> dict[str, BNStats]:
    saved = torch.load(path, map_location="cpu", weights_only=True)
    if saved.get("subnet_set") != subnet_set:
        raise ModelConfigError(
            f"BN statistics {path} belong to set {saved.get('subnet_set')!r}, not {subnet_set!r}"
        )
    return saved["stats"]


@register_family("ofa_mbv3")
def build_ofa(config: dict[str, Any], checkpoint: Path | None) -> OFAFamily:
    supernet_args = dict(config.get("supernet") or {})
    with torch.random.fork_rng(devices=[]):  # seeded: random weights are the same in every process
        torch.manual_seed(int(config.get("seed", 0)))
        net = OFAMobileNetV3(**supernet_args)
    if checkpoint is None:
        metadata: dict[str, Any] = {"weights": "random", "checkpoint": None,
                                    "note": "random weights: timings valid, accuracy unknown"}
    else:
        net.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True))
        metadata = {"weights": "pretrained", "checkpoint": str(checkpoint)}
        log.info("model %s: loaded OFA weights from %s", config["name"], checkpoint)
    subnet_set = load_subnet_set(config.get("subnets") or config["name"])
    subnets = parse_subnets(net, subnet_set)
    set_name = str(subnet_set.get("name", config.get("subnets")))
    bn_stats: dict[str, BNStats] = {}
    stats_path = config.get("bn_stats")
    if stats_path and Path(stats_path).is_file():
        bn_stats = load_bn_stats(stats_path, set_name)
        metadata["bn_stats"] = str(stats_path)
    else:
        metadata["bn_stats"] = "super-network statistics (no per-sub-network file)"
    metadata.update(subnet_set=set_name, device_kind=subnet_set.get("device_kind", ""))
    # a set's accuracies were measured with its own trained weights: not valid for random ones
    accuracy = {str(e["id"]): float(e["accuracy"]) for e in subnet_set["subnets"]
                if "accuracy" in e and checkpoint is not None}
    return OFAFamily(str(config["name"]), net, subnets, bn_stats, metadata, accuracy)
