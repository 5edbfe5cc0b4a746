# SPDX-License-Identifier: Apache-2.0
"""Recalibrate BatchNorm statistics of every sub-network of an OFA set and save them with the set.

    python -m dyndnn_ros.models.ofa_bn_calibrate --model ofa_mbv3_cpu --images calib.npy
    python -m dyndnn_ros.models.ofa_bn_calibrate --model ofa_mbv3_cpu --synthetic   # no data:
    noise

A sub-network cut out of the super-network needs its own BN running statistics (OFA recomputes
them on a few thousand training images). --images is a .npy array of images, either uint8
(N, H, W, 3) or float (N, 3, H, W) already normalised; each sub-network sees them resized to its
resolution. The file is written where the model config's `bn_stats` points (or --out) and is
restored by `build_dynamic_model` in both modes.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from dyndnn_ros.models.ofa_family import OFAFamily, recalibrate_bn, save_bn_stats
from dyndnn_ros.models.registry import build_family, load_model_config

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def load_images(path: Path) -> torch.Tensor:
    array = np.load(path)
    if array.ndim != 4:
        raise ValueError(f"{path}: need a 4-D image array, got shape {array.shape}")
    if array.dtype == np.uint8:
        if array.shape[-1] != 3:
            raise ValueError(f"{path}: uint8 images must be (N, H, W, 3), got {array.shape}")
        x = torch.from_numpy(array).permute(0, 3, 1, 2).float() / 255.0
        mean, std = (
            torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1),
            torch.tensor(IMAGENET_STD).view(1, 3, 1, 1),
        )
        return (x - mean) / std
    if array.shape[1] != 3:
        raise ValueError(f"{path}: float images must be (N, 3, H, W), got {array.shape}")
    return torch.from_numpy(array.astype(np.float32))


def calibrate(
    family: OFAFamily, images: torch.Tensor, batch_size: int
) -> dict[str, dict[str, torch.Tensor]]:
    stats = {}
    for sid in tqdm(family.subnet_ids(), desc="BN recalibration", unit="subnet"):
        _, h, w = family.input_shape(sid)
        batches = [
            F.interpolate(
                images[i : i + batch_size], size=(h, w), mode="bilinear", align_corners=False
            )
            for i in range(0, len(images), batch_size)
        ]
        stats[sid] = recalibrate_bn(family.materialise(sid), batches, max_batches=len(batches))
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", required=True, help="an ofa_mbv3 model config name or YAML path"
    )
    parser.add_argument("--checkpoint", type=Path, default=None)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", type=Path, help=".npy calibration images")
    source.add_argument(
        "--synthetic", type=int, metavar="N", help="N random-noise images (weights-only demo)"
    )
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument(
        "--out", type=Path, default=None, help="default: the config's bn_stats path"
    )
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    config = load_model_config(args.model)
    family = build_family(
        {**config, "bn_stats": None}, args.checkpoint
    )  # start from the super-network's stats
    if not isinstance(family, OFAFamily):
        parser.error(f"{args.model} is not an OFA model (family {family.family!r})")
    out = args.out or (Path(config["bn_stats"]) if config.get("bn_stats") else None)
    if out is None:
        parser.error("no --out and the model config names no bn_stats path")
    if args.images:
        images, what = load_images(args.images), f"images {args.images}"
    else:
        images, what = (
            torch.randn(args.synthetic, 3, 224, 224, generator=torch.Generator().manual_seed(0)),
            f"{args.synthetic} synthetic noise images (not real data)",
        )
    stats = calibrate(family, images, args.batch_size)
    source_note = f"{what}; weights: {family.metadata.get('weights')}"
    save_bn_stats(out, str(family.metadata["subnet_set"]), stats, source_note)
    print(f"wrote BN statistics of {len(stats)} sub-networks ({source_note}) to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
