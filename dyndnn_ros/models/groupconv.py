"""Group-convolution dynamic network trained incrementally (Xun, Hare, Merrett, MLCAD 2019).

Every conv layer's output channels are split into G groups. Group j of a layer reads only group j
of the previous layer (a grouped convolution), so the first k groups form an independent path:
sub-network k = groups 1..k of every layer + classifier head k. Because a group's activations never
depend on a later group, per-channel BatchNorm statistics are exact for every sub-network, and
training group k with groups 1..k-1 frozen can never change what sub-networks 1..k-1 compute.

The weights live in one full-size tensor per layer (the "shared" copy, sliced at run time);
`standalone(k)` materialises sub-network k as a plain torch module with copied weights.
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
    bn_momentum: float = 0.1
    bn_eps: float = 1e-5

    def __post_init__(self) -> None:
        if (self.groups < 1 or not self.group_channels or min(self.group_channels) < 1
                or self.head_pool < 1):
            raise ValueError(f"invalid group-conv spec: {self}")
        if any(not 0 <= i < len(self.group_channels) for i in self.pool_after):
            raise ValueError(f"pool_after {self.pool_after} names a layer outside 0..{len(self.group_channels) - 1}")


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


class GroupConvNet(nn.Module):
    """The full network: per layer one conv weight [G*c_out, c_in_per_group, 3, 3] + BN over G*c_out."""

    def __init__(self, spec: GroupConvSpec) -> None:
        super().__init__()
        self.spec = spec
        G = spec.groups
        self.conv_weights = nn.ParameterList()
        self.bn_weights = nn.ParameterList()
        self.bn_biases = nn.ParameterList()
        in_per_group = spec.in_channels  # layer 0: every group sees the whole input image
        for i, c in enumerate(spec.group_channels):
            w = torch.empty(G * c, in_per_group, 3, 3)
            for j in range(G):  # initialise each group like a fresh conv of its own size
                nn.init.kaiming_normal_(w[j * c:(j + 1) * c], nonlinearity="relu")
            self.conv_weights.append(nn.Parameter(w))
            self.bn_weights.append(nn.Parameter(torch.ones(G * c)))
            self.bn_biases.append(nn.Parameter(torch.zeros(G * c)))
            self.register_buffer(f"bn_mean_{i}", torch.zeros(G * c))
            self.register_buffer(f"bn_var_{i}", torch.ones(G * c))
            in_per_group = c
        feat = spec.group_channels[-1] * spec.head_pool ** 2
        self.heads = nn.ModuleList(nn.Linear(k * feat, spec.num_classes) for k in range(1, G + 1))

    @property
    def subnet_ids(self) -> list[str]:
        return subnet_ids(self.spec.groups)

    def running_stats(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        return getattr(self, f"bn_mean_{layer}"), getattr(self, f"bn_var_{layer}")

    def forward_groups(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """Inference of sub-network k on the shared weights: slices, no copies (BN in eval mode)."""
        s = self.spec
        for i, c in enumerate(s.group_channels):
            n = k * c
            x = F.conv2d(x, self.conv_weights[i][:n], None, 1, 1, 1, 1 if i == 0 else k)
            mean, var = self.running_stats(i)
            x = F.batch_norm(x, mean[:n], var[:n], self.bn_weights[i][:n], self.bn_biases[i][:n], False, 0.0, s.bn_eps)
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
            for i, c in enumerate(self.spec.group_channels):
                n = k * c
                conv, bn = sub.features[i].conv, sub.features[i].bn
                conv.weight.copy_(self.conv_weights[i][:n])
                mean, var = self.running_stats(i)
                bn.weight.copy_(self.bn_weights[i][:n])
                bn.bias.copy_(self.bn_biases[i][:n])
                bn.running_mean.copy_(mean[:n])
                bn.running_var.copy_(var[:n])
            sub.head.load_state_dict(self.heads[k - 1].state_dict())
        return sub.eval()


class _ConvBNReLU(nn.Module):
    def __init__(self, c_in: int, c_out: int, groups: int, pool: bool, spec: GroupConvSpec) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(c_out, eps=spec.bn_eps, momentum=spec.bn_momentum)
        self.pool = pool

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
        layers = []
        c_in = spec.in_channels
        for i, c in enumerate(spec.group_channels):
            groups = 1 if i == 0 or dense else k
            layers.append(_ConvBNReLU(c_in, k * c, groups, i in spec.pool_after, spec))
            c_in = k * c
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(k * spec.group_channels[-1] * spec.head_pool ** 2, spec.num_classes)
        self.head_pool = spec.head_pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(head_features(self.features(x), self.head_pool))


class GroupStage(nn.Module):
    """Trainable view of the network while group k is trained: groups < k are frozen.

    The new group's weights, BN parameters/statistics and head k are fresh tensors owned by this
    module; the frozen groups are read from the network through `.detach()` and with BN in eval mode.
    Nothing the optimizer or BN updates can reach the frozen groups, so they stay bit-identical.
    `commit()` writes the trained group back into the network's full-size tensors.
    """

    def __init__(self, net: GroupConvNet, k: int) -> None:
        super().__init__()
        self.__dict__["net"] = net  # not a sub-module: the frozen network's tensors must stay out of parameters()
        self.k = k
        s = net.spec
        self.conv = nn.ParameterList()
        self.bn_w = nn.ParameterList()
        self.bn_b = nn.ParameterList()
        for i, c in enumerate(s.group_channels):
            block = slice((k - 1) * c, k * c)
            self.conv.append(nn.Parameter(net.conv_weights[i].detach()[block].clone()))
            self.bn_w.append(nn.Parameter(net.bn_weights[i].detach()[block].clone()))
            self.bn_b.append(nn.Parameter(net.bn_biases[i].detach()[block].clone()))
            mean, var = net.running_stats(i)
            self.register_buffer(f"mean_{i}", mean[block].clone())
            self.register_buffer(f"var_{i}", var[block].clone())
        self.head = nn.Linear(net.heads[k - 1].in_features, s.num_classes)
        self.head.load_state_dict(net.heads[k - 1].state_dict())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s, k = self.net.spec, self.k
        for i, c in enumerate(s.group_channels):
            old = (k - 1) * c
            weight = torch.cat([self.net.conv_weights[i].detach()[:old], self.conv[i]])
            x = F.conv2d(x, weight, None, 1, 1, 1, 1 if i == 0 else k)
            mean, var = self.net.running_stats(i)
            x_new = F.batch_norm(x[:, old:], getattr(self, f"mean_{i}"), getattr(self, f"var_{i}"), self.bn_w[i],
                                 self.bn_b[i], self.training, s.bn_momentum, s.bn_eps)
            if old:  # frozen groups: always inference-mode BN, so their running statistics never move
                x_old = F.batch_norm(x[:, :old], mean[:old], var[:old], self.net.bn_weights[i].detach()[:old],
                                     self.net.bn_biases[i].detach()[:old], False, 0.0, s.bn_eps)
                x_new = torch.cat([x_old, x_new], 1)
            x = F.relu(x_new)
            if i in s.pool_after:
                x = F.max_pool2d(x, 2)
        return self.head(head_features(x, s.head_pool))

    @torch.no_grad()
    def commit(self) -> None:
        net, k = self.net, self.k
        for i, c in enumerate(net.spec.group_channels):
            block = slice((k - 1) * c, k * c)
            net.conv_weights[i][block] = self.conv[i]
            net.bn_weights[i][block] = self.bn_w[i]
            net.bn_biases[i][block] = self.bn_b[i]
            mean, var = net.running_stats(i)
            mean[block] = getattr(self, f"mean_{i}")
            var[block] = getattr(self, f"var_{i}")
        net.heads[k - 1].load_state_dict(self.head.state_dict())
