# SPDX-License-Identifier: Apache-2.0
"""Group-convolution dynamic network trained incrementally (Xun, Hare, Merrett, MLCAD 2019).

Every conv layer's output channels are split into G groups. Group j of a layer reads group j of the
previous layer (a grouped convolution) or, with `lateral`, groups 1..j of it; either way it never
reads a later group, so the first k groups form an independent path: sub-network k = groups 1..k of
every layer + classifier head k. Because a group's activations never depend on a later group,
per-channel BatchNorm statistics are exact for every sub-network, and training group k with groups
1..k-1 frozen can never change what sub-networks 1..k-1 compute.

Groups may differ in width (`group_scale`): a narrow first group and wider later ones spread the
sub-networks over a wider accuracy/latency range than equal groups do.

Each group's conv weights are their own tensor; BatchNorm parameters and statistics live in one
full-size tensor per layer (the "shared" copy, sliced at run time). `standalone(k)` materialises
sub-network k as a plain torch module with copied weights.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dyndnn_ros.models.registry import UnknownSubnetError


@dataclass(frozen=True)
class GroupConvSpec:
    """Architecture: input channels/size, per-group channels of each 3x3 conv, where to pool."""

    in_channels: int = 1
    image_size: int = 8
    group_channels: tuple[int, ...] = (4, 8, 16)
    pool_after: tuple[int, ...] = (1,)
    """Indices of conv layers followed by a 2x2 max-pool."""
    groups: int = 4
    num_classes: int = 10
    head_pool: int = 1
    """The last feature map is average-pooled to head_pool x head_pool and flattened into the head
    (1: global average pooling; larger keeps where things are, which clothes need)."""
    group_scale: tuple[int, ...] = ()
    """Width of each group in units of group_channels (empty: every group 1 unit wide)."""
    lateral: bool = False
    """Group j of a layer reads groups 1..j of the previous layer instead of group j alone."""
    bn_momentum: float = 0.1
    bn_eps: float = 1e-5

    def __post_init__(self) -> None:
        if (self.groups < 1 or not self.group_channels or min(self.group_channels) < 1
                or self.head_pool < 1):
            raise ValueError(f"invalid group-conv spec: {self}")
        if any(not 0 <= i < len(self.group_channels) for i in self.pool_after):
            raise ValueError(f"pool_after {self.pool_after} names a layer outside "
                             f"0..{len(self.group_channels) - 1}")
        if self.group_scale and (len(self.group_scale) != self.groups
                                 or min(self.group_scale) < 1):
            raise ValueError(f"group_scale {self.group_scale} needs {self.groups} positive "
                             "entries (one per group)")

    def widths(self, layer: int) -> list[int]:
        """Output channels of each group of conv layer `layer`."""
        scale = self.group_scale or (1,) * self.groups
        return [self.group_channels[layer] * s for s in scale]

    def channels(self, layer: int, k: int) -> int:
        """Output channels of groups 1..k of conv layer `layer`."""
        return sum(self.widths(layer)[:k])

    def group_slice(self, layer: int, j: int) -> slice:
        """The output channels of group j (0-based) of conv layer `layer`."""
        return slice(self.channels(layer, j), self.channels(layer, j + 1))

    def input_slice(self, layer: int, j: int) -> slice:
        """The input channels group j (0-based) of conv layer `layer` reads."""
        if layer == 0:
            return slice(0, self.in_channels)  # every group sees the whole image
        if self.lateral:
            return slice(0, self.channels(layer - 1, j + 1))
        return self.group_slice(layer - 1, j)


def head_features(x: torch.Tensor, head_pool: int) -> torch.Tensor:
    """Pool the last feature map for the head, keeping each group's features together."""
    if head_pool == 1:
        return x.mean((2, 3))
    window = uniform_window(int(x.shape[-1]), head_pool)
    if window is not None and x.shape[-1] == x.shape[-2]:
        # the same windows as adaptive pooling, as a plain average pool: ONNX can export it
        return torch.flatten(F.avg_pool2d(x, window[0], window[1]), 1)
    return torch.flatten(F.adaptive_avg_pool2d(x, head_pool), 1)


def uniform_window(size: int, out: int) -> tuple[int, int] | None:
    """(kernel, stride) if adaptive pooling of `size` to `out` uses equal, evenly spaced windows"""
    kernel = -(-size // out)
    stride = (size - kernel) // (out - 1) if out > 1 else size
    starts_ends = [(i * size // out, -(-(i + 1) * size // out)) for i in range(out)]
    if all(start == i * stride and end == start + kernel
           for i, (start, end) in enumerate(starts_ends)):
        return kernel, stride
    return None


def subnet_ids(groups: int) -> list[str]:
    return [f"g{k}" for k in range(1, groups + 1)]


def groups_of(subnet_id: str, groups: int) -> int:
    """'g3' -> 3, with a clear error for anything else."""
    known = subnet_ids(groups)
    if subnet_id not in known:
        raise UnknownSubnetError(subnet_id, known)
    return int(subnet_id[1:])


def grouped_conv(x: torch.Tensor, spec: GroupConvSpec, layer: int,
                 weights: list[torch.Tensor]) -> torch.Tensor:
    """Conv layer `layer` of groups 1..len(weights): each group's 3x3 conv of what it reads."""
    return torch.cat([F.conv2d(x[:, spec.input_slice(layer, j)], w, None, 1, 1)
                      for j, w in enumerate(weights)], 1)


class GroupConvNet(nn.Module):
    """The full network: per layer one conv weight per group + BN over all the layer's channels."""

    def __init__(self, spec: GroupConvSpec) -> None:
        super().__init__()
        self.spec = spec
        G = spec.groups
        self.conv_weights = nn.ModuleList()
        self.bn_weights = nn.ParameterList()
        self.bn_biases = nn.ParameterList()
        for i in range(len(spec.group_channels)):
            per_group = nn.ParameterList()
            for j, c in enumerate(spec.widths(i)):
                reads = spec.input_slice(i, j)
                w = torch.empty(c, reads.stop - reads.start, 3, 3)
                nn.init.kaiming_normal_(w, nonlinearity="relu")  # like a fresh conv of its size
                per_group.append(nn.Parameter(w))
            self.conv_weights.append(per_group)
            n = spec.channels(i, G)
            self.bn_weights.append(nn.Parameter(torch.ones(n)))
            self.bn_biases.append(nn.Parameter(torch.zeros(n)))
            self.register_buffer(f"bn_mean_{i}", torch.zeros(n))
            self.register_buffer(f"bn_var_{i}", torch.ones(n))
        last = len(spec.group_channels) - 1
        self.heads = nn.ModuleList(
            nn.Linear(spec.channels(last, k) * spec.head_pool ** 2, spec.num_classes)
            for k in range(1, G + 1))

    @property
    def subnet_ids(self) -> list[str]:
        return subnet_ids(self.spec.groups)

    def running_stats(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        return getattr(self, f"bn_mean_{layer}"), getattr(self, f"bn_var_{layer}")

    def forward_groups(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """Inference of sub-network k on the shared weights: slices, no copies (BN in eval mode).
        """
        s = self.spec
        for i in range(len(s.group_channels)):
            n = s.channels(i, k)
            x = grouped_conv(x, s, i, list(self.conv_weights[i])[:k])
            mean, var = self.running_stats(i)
            x = F.batch_norm(x, mean[:n], var[:n], self.bn_weights[i][:n], self.bn_biases[i][:n],
                             False, 0.0, s.bn_eps)
            x = F.relu(x)
            if i in s.pool_after:
                x = F.max_pool2d(x, 2)
        return self.heads[k - 1](head_features(x, s.head_pool))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_groups(x, self.spec.groups)

    def standalone(self, k: int) -> "GroupConvSubnet":
        """Sub-network k as an independent static module holding copies of its weights."""
        if not 1 <= k <= self.spec.groups:
            raise UnknownSubnetError(f"g{k}", self.subnet_ids)
        sub = GroupConvSubnet(self.spec, k)
        with torch.no_grad():
            for i in range(len(self.spec.group_channels)):
                n = self.spec.channels(i, k)
                layer = sub.features[i]
                for conv, w in zip(layer.conv.convs, self.conv_weights[i]):
                    conv.weight.copy_(w)
                mean, var = self.running_stats(i)
                layer.bn.weight.copy_(self.bn_weights[i][:n])
                layer.bn.bias.copy_(self.bn_biases[i][:n])
                layer.bn.running_mean.copy_(mean[:n])
                layer.bn.running_var.copy_(var[:n])
            sub.head.load_state_dict(self.heads[k - 1].state_dict())
        return sub.eval()


class _GroupedConv(nn.Module):
    """Conv layer `layer` of groups 1..k as ordinary convs, one per group (dense: one conv)."""

    def __init__(self, spec: GroupConvSpec, layer: int, k: int, dense: bool) -> None:
        super().__init__()
        self.spec, self.layer = spec, layer
        if dense:
            c_in = spec.in_channels if layer == 0 else spec.channels(layer - 1, k)
            widths = [spec.channels(layer, k)]
            self.reads = [slice(0, c_in)]
        else:
            widths = spec.widths(layer)[:k]
            self.reads = [spec.input_slice(layer, j) for j in range(k)]
        self.convs = nn.ModuleList(
            nn.Conv2d(r.stop - r.start, c, 3, padding=1, bias=False)
            for r, c in zip(self.reads, widths))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([conv(x[:, r]) for conv, r in zip(self.convs, self.reads)], 1)


class _ConvBNReLU(nn.Module):
    def __init__(self, spec: GroupConvSpec, layer: int, k: int, dense: bool) -> None:
        super().__init__()
        self.conv = _GroupedConv(spec, layer, k, dense)
        self.bn = nn.BatchNorm2d(spec.channels(layer, k), eps=spec.bn_eps,
                                 momentum=spec.bn_momentum)
        self.pool = layer in spec.pool_after

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.conv(x)))
        return F.max_pool2d(x, 2) if self.pool else x


class GroupConvSubnet(nn.Module):
    """A static network with the architecture of sub-network k (also the from-scratch baseline).

    `dense=True` gives the same layer widths with ordinary (ungrouped) convolutions: the static
    network "of the sub-network's width" without the group structure, a stronger baseline.
    """

    def __init__(self, spec: GroupConvSpec, k: int, dense: bool = False) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *(_ConvBNReLU(spec, i, k, dense) for i in range(len(spec.group_channels))))
        last = len(spec.group_channels) - 1
        self.head = nn.Linear(spec.channels(last, k) * spec.head_pool ** 2, spec.num_classes)
        self.head_pool = spec.head_pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(head_features(self.features(x), self.head_pool))


class GroupStage(nn.Module):
    """Trainable view of the network while group k is trained: groups < k are frozen.

    The new group's weights, BN parameters/statistics and head k are fresh tensors owned by this
    module; the frozen groups are read from the network through `.detach()` and with BN in eval
    mode. Nothing the optimizer or BN updates can reach the frozen groups, so they stay
    bit-identical. `commit()` writes the trained group back into the network's tensors.
    """

    def __init__(self, net: GroupConvNet, k: int) -> None:
        super().__init__()
        # not a sub-module: the frozen network's tensors must stay out of parameters()
        self.__dict__["net"] = net
        self.k = k
        s = net.spec
        self.conv = nn.ParameterList()
        self.bn_w = nn.ParameterList()
        self.bn_b = nn.ParameterList()
        for i in range(len(s.group_channels)):
            block = s.group_slice(i, k - 1)
            self.conv.append(nn.Parameter(net.conv_weights[i][k - 1].detach().clone()))
            self.bn_w.append(nn.Parameter(net.bn_weights[i].detach()[block].clone()))
            self.bn_b.append(nn.Parameter(net.bn_biases[i].detach()[block].clone()))
            mean, var = net.running_stats(i)
            self.register_buffer(f"mean_{i}", mean[block].clone())
            self.register_buffer(f"var_{i}", var[block].clone())
        self.head = nn.Linear(net.heads[k - 1].in_features, s.num_classes)
        self.head.load_state_dict(net.heads[k - 1].state_dict())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s, k = self.net.spec, self.k
        frozen, new = x, x
        for i in range(len(s.group_channels)):
            if i == 0:
                reads = x
            elif s.lateral and k > 1:  # the new group reads groups 1..k of the previous layer
                reads = torch.cat([frozen, new], 1)
            else:
                reads = new
            new = F.conv2d(reads, self.conv[i], None, 1, 1)
            new = F.relu(F.batch_norm(new, getattr(self, f"mean_{i}"), getattr(self, f"var_{i}"),
                                      self.bn_w[i], self.bn_b[i], self.training, s.bn_momentum,
                                      s.bn_eps))
            if k > 1:  # frozen groups: no gradient, inference-mode BN (statistics never move)
                frozen = self._frozen_layer(frozen, i)
            if i in s.pool_after:
                new = F.max_pool2d(new, 2)
        features = new if k == 1 else torch.cat([frozen, new], 1)
        return self.head(head_features(features, s.head_pool))

    @torch.no_grad()
    def _frozen_layer(self, x: torch.Tensor, i: int) -> torch.Tensor:
        net, s, k = self.net, self.net.spec, self.k
        old = s.channels(i, k - 1)
        mean, var = net.running_stats(i)
        x = grouped_conv(x, s, i, list(net.conv_weights[i])[:k - 1])
        x = F.relu(F.batch_norm(x, mean[:old], var[:old], net.bn_weights[i][:old],
                                net.bn_biases[i][:old], False, 0.0, s.bn_eps))
        return F.max_pool2d(x, 2) if i in s.pool_after else x

    @torch.no_grad()
    def commit(self) -> None:
        net, k = self.net, self.k
        for i in range(len(net.spec.group_channels)):
            block = net.spec.group_slice(i, k - 1)
            net.conv_weights[i][k - 1].copy_(self.conv[i])
            net.bn_weights[i][block] = self.bn_w[i]
            net.bn_biases[i][block] = self.bn_b[i]
            mean, var = net.running_stats(i)
            mean[block] = getattr(self, f"mean_{i}")
            var[block] = getattr(self, f"var_{i}")
        net.heads[k - 1].load_state_dict(self.head.state_dict())
