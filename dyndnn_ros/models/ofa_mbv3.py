# SPDX-License-Identifier: Apache-2.0
"""Once-for-All MobileNetV3 elastic super-network (Dynamic-OFA), compact and checkpoint-compatible.

Follows the reference implementation of Cai et al., "Once for All" (ICLR 2020), MIT licensed,
https://github.com/mit-han-lab/once-for-all (ofa 0.1.0): same module names and tensor shapes, so
`state_dict` keys match the official `ofa_mbv3_d234_e346_k357_w1.0` checkpoint and it loads from a
local path. Elastic dimensions: depthwise kernel 3/5/7 (smaller kernels are the centre of the 7x7
kernel passed through the learnt kernel-transformation matrices), expand ratio 3/4/6, depth 2/3/4
per stage, input resolution; width multiplier 1.0 or 1.2 is fixed per super-network.

`OFAMobileNetV3.forward` runs the active sub-network on the shared weights (slicing);
`get_active_subnet()` materialises it as a plain `MobileNetV3` with copied weights.
"""
from __future__ import annotations

import copy
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

CHANNEL_DIVISIBLE = 8
SE_REDUCTION = 4
BASE_STAGE_WIDTH = (16, 16, 24, 40, 80, 112, 160, 960, 1280)
STAGE_STRIDES = (1, 2, 2, 2, 1, 2)
STAGE_ACTS = ("relu", "relu", "relu", "h_swish", "h_swish", "h_swish")
STAGE_SE = (False, False, True, False, True, True)


def make_divisible(v: float, divisor: int = CHANNEL_DIVISIBLE) -> int:
    """Round to a multiple of `divisor`, never more than 10% below `v` (as the TF MobileNet code).
    """
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


def activation(name: str | None) -> nn.Module | None:
    # hard-swish/-sigmoid as in MobileNetV3: x*relu6(x+3)/6 and relu6(x+3)/6
    table = {"relu": nn.ReLU, "h_swish": nn.Hardswish, "h_sigmoid": nn.Hardsigmoid}
    if name is None:
        return None
    if name not in table:
        raise ValueError(f"unsupported activation {name!r}; known: {sorted(table)}")
    return table[name](inplace=True)


def _seq(*named: tuple[str, nn.Module | None]) -> nn.Sequential:
    return nn.Sequential(OrderedDict((k, m) for k, m in named if m is not None))


class ConvLayer(nn.Sequential):
    """conv -> (bn) -> (act); keys conv.weight, bn.*"""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel_size: int = 3,
        stride: int = 1,
        act: str | None = "relu",
        use_bn: bool = True,
    ) -> None:
        super().__init__(OrderedDict((k, m) for k, m in (
            ("conv", nn.Conv2d(c_in, c_out, kernel_size, stride, kernel_size // 2, bias=False)),
            ("bn", nn.BatchNorm2d(c_out) if use_bn else None),
            ("act", activation(act)),
        ) if m is not None))


class LinearLayer(nn.Module):
    """dropout -> linear; keys linear.weight, linear.bias"""

    def __init__(self, in_features: int, out_features: int, dropout_rate: float = 0.0) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout_rate) if dropout_rate > 0 else None
        self.linear = nn.Linear(in_features, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.dropout(x) if self.dropout is not None else x)


class SEModule(nn.Module):
    def __init__(self, channel: int) -> None:
        super().__init__()
        mid = make_divisible(channel // SE_REDUCTION)
        self.fc = _seq(
            ("reduce", nn.Conv2d(channel, mid, 1, bias=True)),
            ("relu", nn.ReLU(inplace=True)),
            ("expand", nn.Conv2d(mid, channel, 1, bias=True)),
            ("h_sigmoid", nn.Hardsigmoid(inplace=True)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc(x.mean((2, 3), keepdim=True))


class MBConvLayer(nn.Module):
    """Static inverted-residual block: 1x1 expand -> kxk depthwise (+SE) -> 1x1 project."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel_size: int,
        stride: int,
        mid_channels: int,
        act: str,
        use_se: bool,
    ) -> None:
        super().__init__()
        # expand ratio 1 (the first block): no 1x1 expansion
        self.inverted_bottleneck = (
            None
            if mid_channels == c_in
            else _seq(
                ("conv", nn.Conv2d(c_in, mid_channels, 1, bias=False)),
                ("bn", nn.BatchNorm2d(mid_channels)),
                ("act", activation(act)),
            )
        )
        self.depth_conv = _seq(
            (
                "conv",
                nn.Conv2d(
                    mid_channels,
                    mid_channels,
                    kernel_size,
                    stride,
                    kernel_size // 2,
                    groups=mid_channels,
                    bias=False,
                ),
            ),
            ("bn", nn.BatchNorm2d(mid_channels)),
            ("act", activation(act)),
            ("se", SEModule(mid_channels) if use_se else None),
        )
        self.point_linear = _seq(
            ("conv", nn.Conv2d(mid_channels, c_out, 1, bias=False)), ("bn", nn.BatchNorm2d(c_out))
        )
        self.out_channels = c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.inverted_bottleneck is not None:
            x = self.inverted_bottleneck(x)
        return self.point_linear(self.depth_conv(x))


class ResidualBlock(nn.Module):
    def __init__(self, conv: nn.Module, identity_shortcut: bool) -> None:
        super().__init__()
        self.conv = conv
        self.identity_shortcut = identity_shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + x if self.identity_shortcut else self.conv(x)


class MobileNetV3(nn.Module):
    """A fixed MobileNetV3 (what a sub-network materialises into)."""

    def __init__(
        self,
        first_conv: nn.Module,
        blocks: Sequence[nn.Module],
        final_expand_layer: nn.Module,
        feature_mix_layer: nn.Module,
        classifier: nn.Module,
    ) -> None:
        super().__init__()
        self.first_conv = first_conv
        self.blocks = nn.ModuleList(blocks)
        self.final_expand_layer = final_expand_layer
        self.feature_mix_layer = feature_mix_layer
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first_conv(x)
        for block in self.blocks:
            x = block(x)
        x = self.final_expand_layer(x).mean((2, 3), keepdim=True)
        return self.classifier(torch.flatten(self.feature_mix_layer(x), 1))


# ---------------------------------------------------------------------------------------- elastic
# ops


class DynamicConv2d(nn.Module):
    """1x1 conv whose active in/out channels are the leading slices of the full weight."""

    def __init__(self, max_in: int, max_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(max_in, max_out, 1, bias=False)

    def forward(self, x: torch.Tensor, out_channels: int) -> torch.Tensor:
        return F.conv2d(x, self.conv.weight[:out_channels, :x.size(1)])


class DynamicSeparableConv2d(nn.Module):
    """Depthwise conv with elastic kernel: a smaller kernel is the centre of the larger one times a
    learnt (k*k x k*k) transformation matrix, applied 7->5->3."""

    def __init__(self, max_channels: int, kernel_sizes: Sequence[int], stride: int) -> None:
        super().__init__()
        self.kernel_sizes = sorted(set(kernel_sizes))
        self.stride = stride
        self.conv = nn.Conv2d(
            max_channels,
            max_channels,
            max(self.kernel_sizes),
            stride,
            groups=max_channels,
            bias=False,
        )
        for small, large in zip(self.kernel_sizes, self.kernel_sizes[1:]):
            self.register_parameter(
                f"{large}to{small}_matrix", nn.Parameter(torch.eye(small * small))
            )

    def active_filter(self, channels: int, kernel_size: int) -> torch.Tensor:
        if kernel_size not in self.kernel_sizes:
            raise ValueError(
                f"kernel size {kernel_size} not in the elastic set {self.kernel_sizes}"
            )
        weight = self.conv.weight[:channels]
        for large, small in zip(self.kernel_sizes[::-1], self.kernel_sizes[-2::-1]):
            if large <= kernel_size:
                break
            start = (large - small) // 2
            centre = weight[:, :, start : start + small, start : start + small].reshape(
                -1, small * small
            )
            weight = F.linear(centre, getattr(self, f"{large}to{small}_matrix")).view(
                channels, 1, small, small
            )
        return weight

    def forward(self, x: torch.Tensor, kernel_size: int) -> torch.Tensor:
        channels = x.size(1)
        return F.conv2d(
            x,
            self.active_filter(channels, kernel_size),
            None,
            self.stride,
            kernel_size // 2,
            1,
            channels,
        )


class DynamicBatchNorm2d(nn.Module):
    def __init__(self, max_features: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(max_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bn, n = self.bn, x.size(1)
        if n == bn.num_features:
            return bn(x)
        # slices of the running statistics are views, so training-mode updates land in the full
        # buffers
        return F.batch_norm(x, bn.running_mean[:n], bn.running_var[:n], bn.weight[:n], bn.bias[:n],
                            bn.training, bn.momentum if bn.momentum is not None else 0.0, bn.eps)


class DynamicSE(SEModule):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.size(1)
        mid = make_divisible(c // SE_REDUCTION)
        fc = self.fc
        y = x.mean((2, 3), keepdim=True)
        y = F.relu(F.conv2d(y, fc.reduce.weight[:mid, :c], fc.reduce.bias[:mid]))
        y = F.hardsigmoid(F.conv2d(y, fc.expand.weight[:c, :mid], fc.expand.bias[:c]))
        return x * y


class DynamicMBConvLayer(nn.Module):
    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel_sizes: Sequence[int],
        expand_ratios: Sequence[int],
        stride: int,
        act: str,
        use_se: bool,
    ) -> None:
        super().__init__()
        self.c_in, self.c_out, self.stride, self.act, self.use_se = (
            c_in,
            c_out,
            stride,
            act,
            use_se,
        )
        self.kernel_sizes, self.expand_ratios = sorted(kernel_sizes), sorted(expand_ratios)
        max_mid = make_divisible(round(c_in * max(expand_ratios)))
        self.inverted_bottleneck = _seq(
            ("conv", DynamicConv2d(c_in, max_mid)),
            ("bn", DynamicBatchNorm2d(max_mid)),
            ("act", activation(act)),
        )
        self.depth_conv = _seq(("conv", DynamicSeparableConv2d(max_mid, kernel_sizes, stride)),
                               ("bn", DynamicBatchNorm2d(max_mid)), ("act", activation(act)),
                               ("se", DynamicSE(max_mid) if use_se else None))
        self.point_linear = _seq(
            ("conv", DynamicConv2d(max_mid, c_out)), ("bn", DynamicBatchNorm2d(c_out))
        )
        self.active_kernel_size = max(kernel_sizes)
        self.active_expand_ratio = max(expand_ratios)

    def mid_channels(self, c_in: int | None = None) -> int:
        return make_divisible(round((c_in or self.c_in) * self.active_expand_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mid = self.mid_channels(x.size(1))
        ib, dc, pl = self.inverted_bottleneck, self.depth_conv, self.point_linear
        x = ib.act(ib.bn(ib.conv(x, mid)))
        x = dc.act(dc.bn(dc.conv(x, self.active_kernel_size)))
        if self.use_se:
            x = dc.se(x)
        return pl.bn(pl.conv(x, self.c_out))

    @torch.no_grad()
    def get_active_subnet(self) -> MBConvLayer:
        mid, k = self.mid_channels(), self.active_kernel_size
        sub = MBConvLayer(self.c_in, self.c_out, k, self.stride, mid, self.act, self.use_se)
        sub.inverted_bottleneck.conv.weight.copy_(self.inverted_bottleneck.conv.conv.weight[:mid])
        _copy_bn(sub.inverted_bottleneck.bn, self.inverted_bottleneck.bn.bn)
        sub.depth_conv.conv.weight.copy_(self.depth_conv.conv.active_filter(mid, k))
        _copy_bn(sub.depth_conv.bn, self.depth_conv.bn.bn)
        if self.use_se:
            se_mid = make_divisible(mid // SE_REDUCTION)
            src, dst = self.depth_conv.se.fc, sub.depth_conv.se.fc
            dst.reduce.weight.copy_(src.reduce.weight[:se_mid, :mid])
            dst.reduce.bias.copy_(src.reduce.bias[:se_mid])
            dst.expand.weight.copy_(src.expand.weight[:mid, :se_mid])
            dst.expand.bias.copy_(src.expand.bias[:mid])
        sub.point_linear.conv.weight.copy_(self.point_linear.conv.conv.weight[:, :mid])
        _copy_bn(sub.point_linear.bn, self.point_linear.bn.bn)
        return sub


def _copy_bn(dst: nn.BatchNorm2d, src: nn.BatchNorm2d) -> None:
    n = dst.num_features
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(dst, name).copy_(getattr(src, name)[:n])
    dst.eps, dst.momentum = src.eps, src.momentum


# ----------------------------------------------------------------------------------------
# super-network


@dataclass(frozen=True)
class SubnetConfig:
    """One sub-network: kernel and expand ratio per elastic block, depth per stage, input
    resolution."""

    ks: tuple[int, ...]
    e: tuple[int, ...]
    d: tuple[int, ...]
    resolution: int


class OFAMobileNetV3(nn.Module):
    """The elastic super-network. The defaults are OFA's ImageNet layout (checkpoint-compatible);
    `stage_widths`, `stage_strides`, `in_channels` and `first_stride` shrink it for small images
    (stage_widths: first conv, first block, one per elastic stage, final expand, last channel)."""

    def __init__(
        self,
        n_classes: int = 1000,
        width_mult: float = 1.0,
        ks_list: Sequence[int] = (3, 5, 7),
        expand_ratio_list: Sequence[int] = (3, 4, 6),
        depth_list: Sequence[int] = (2, 3, 4),
        dropout_rate: float = 0.1,
        bn_momentum: float = 0.1,
        bn_eps: float = 1e-5,
        in_channels: int = 3,
        stage_widths: Sequence[int] = BASE_STAGE_WIDTH,
        stage_strides: Sequence[int] = STAGE_STRIDES,
        stage_acts: Sequence[str] = STAGE_ACTS,
        stage_se: Sequence[bool] = STAGE_SE,
        first_stride: int = 2,
        min_resolution: int = 32,
    ) -> None:
        super().__init__()
        n_stages = len(stage_strides)
        if len(stage_widths) != n_stages + 3 or not len(stage_acts) == len(stage_se) == n_stages:
            raise ValueError(f"{n_stages} stage strides need {n_stages + 3} stage widths and "
                             f"{n_stages} activations and SE flags")
        self.width_mult, self.in_channels = width_mult, in_channels
        self.min_resolution = min_resolution
        self.ks_list, self.expand_ratio_list, self.depth_list = (
            sorted(ks_list),
            sorted(expand_ratio_list),
            sorted(depth_list),
        )
        widths = [make_divisible(w * width_mult) for w in stage_widths[:-2]]
        final_expand = make_divisible(stage_widths[-2] * width_mult)
        last_channel = make_divisible(stage_widths[-1] * width_mult)

        self.first_conv = ConvLayer(in_channels, widths[0], 3, first_stride, "h_swish")
        first = MBConvLayer(widths[0], widths[1], 3, stage_strides[0], widths[0], stage_acts[0],
                            stage_se[0])
        blocks: list[nn.Module] = [ResidualBlock(first, widths[0] == widths[1])]
        self.block_group_info: list[list[int]] = []
        feature = widths[1]
        max_depth = max(self.depth_list)
        stages = zip(widths[2:], stage_strides[1:], stage_acts[1:], stage_se[1:])
        for width, stride, act, se in stages:
            self.block_group_info.append(list(range(len(blocks), len(blocks) + max_depth)))
            for i in range(max_depth):
                s = stride if i == 0 else 1
                conv = DynamicMBConvLayer(
                    feature, width, self.ks_list, self.expand_ratio_list, s, act, se
                )
                blocks.append(ResidualBlock(conv, s == 1 and feature == width))
                feature = width
        self.blocks = nn.ModuleList(blocks)
        self.final_expand_layer = ConvLayer(feature, final_expand, 1, 1, "h_swish")
        self.feature_mix_layer = ConvLayer(
            final_expand, last_channel, 1, 1, "h_swish", use_bn=False
        )
        self.classifier = LinearLayer(last_channel, n_classes, dropout_rate)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum, m.eps = bn_momentum, bn_eps
        self.runtime_depth = [max_depth] * len(self.block_group_info)

    @property
    def n_elastic_blocks(self) -> int:
        return len(self.blocks) - 1

    def subnet_config(
        self,
        ks: int | Sequence[int],
        e: int | Sequence[int],
        d: int | Sequence[int],
        resolution: int,
    ) -> SubnetConfig:
        """Expand scalars / per-stage lists to the per-block form and validate against the elastic
        sets."""
        n_blocks, n_stages = self.n_elastic_blocks, len(self.block_group_info)

        def per_block(
            value: int | Sequence[int], what: str, allowed: list[int]
        ) -> tuple[int, ...]:
            values = [value] if isinstance(value, int) else list(value)
            if len(values) == 1:
                values = values * n_blocks
            elif len(values) == n_stages:
                values = [v for v, group in zip(values, self.block_group_info) for _ in group]
            if len(values) != n_blocks or any(v not in allowed for v in values):
                raise ValueError(
                    f"{what} {value!r}: need one value, {n_stages} per-stage or {n_blocks} "
                    "per-block "
                    f"values from {allowed}"
                )
            return tuple(int(v) for v in values)

        depths = [d] * n_stages if isinstance(d, int) else list(d)
        if len(depths) != n_stages or any(v not in self.depth_list for v in depths):
            raise ValueError(
                f"depth {d!r}: need one value or {n_stages} per-stage values from "
                f"{self.depth_list}"
            )
        if not isinstance(resolution, int) or resolution < self.min_resolution or resolution % 4:
            raise ValueError(f"input resolution {resolution!r} must be an integer >= "
                             f"{self.min_resolution} and a multiple of 4")
        return SubnetConfig(
            per_block(ks, "kernel", self.ks_list),
            per_block(e, "expand", self.expand_ratio_list),
            tuple(int(v) for v in depths),
            resolution,
        )

    def set_active_subnet(self, config: SubnetConfig) -> None:
        for block, k, e in zip(self.blocks[1:], config.ks, config.e):
            block.conv.active_kernel_size, block.conv.active_expand_ratio = k, e
        self.runtime_depth = list(config.d)

    def active_subnet_config(self, resolution: int) -> SubnetConfig:
        """The configuration the super-network computes now (resolution is the caller's to say)."""
        convs = [block.conv for block in self.blocks[1:]]
        return SubnetConfig(
            tuple(c.active_kernel_size for c in convs),
            tuple(c.active_expand_ratio for c in convs),
            tuple(self.runtime_depth),
            resolution,
        )

    def active_block_indices(self) -> list[int]:
        return [0] + [
            i
            for group, depth in zip(self.block_group_info, self.runtime_depth)
            for i in group[:depth]
        ]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first_conv(x)
        for i in self.active_block_indices():
            x = self.blocks[i](x)
        x = self.final_expand_layer(x).mean((2, 3), keepdim=True)
        return self.classifier(torch.flatten(self.feature_mix_layer(x), 1))

    @torch.no_grad()
    def get_active_subnet(self) -> MobileNetV3:
        blocks = [copy.deepcopy(self.blocks[0])]
        for i in self.active_block_indices()[1:]:
            block = self.blocks[i]
            blocks.append(ResidualBlock(block.conv.get_active_subnet(), block.identity_shortcut))
        sub = MobileNetV3(
            copy.deepcopy(self.first_conv),
            blocks,
            copy.deepcopy(self.final_expand_layer),
            copy.deepcopy(self.feature_mix_layer),
            copy.deepcopy(self.classifier),
        )
        return sub.train(self.training)

    def load_state_dict(
        self, state_dict: dict[str, Any], strict: bool = True, assign: bool = False
    ) -> Any:
        """Accept the official OFA checkpoint (also its older key spellings and a {'state_dict':
        ...} wrapper)."""
        if "state_dict" in state_dict and isinstance(state_dict["state_dict"], dict):
            state_dict = state_dict["state_dict"]
        own = super().state_dict()
        renamed = {}
        for key, value in state_dict.items():
            key = key.replace(".mobile_inverted_conv.", ".conv.")
            if key not in own:
                key = next((alt for alt in _key_variants(key) if alt in own), key)
            renamed[key] = value
        # older checkpoints lack num_batches_tracked counters; they do not affect inference
        for key in own:
            if key.endswith("num_batches_tracked") and key not in renamed:
                renamed[key] = own[key]
        return super().load_state_dict(renamed, strict=strict, assign=assign)


def _key_variants(key: str) -> list[str]:
    """Alternative spellings used by OFA checkpoints for static vs. dynamic wrappers."""
    return [key.replace(".bn.bn.", ".bn."), key.replace(".conv.conv.weight", ".conv.weight"),
            key.replace(".linear.linear.", ".linear."), key.replace(".bn.", ".bn.bn."),
            key.replace(".conv.weight", ".conv.conv.weight")]
