# SPDX-License-Identifier: Apache-2.0
"""Frames in and out of numpy: camera-source frames, and sensor_msgs/Image bytes to model input.

No ROS types here: the nodes pass the message's fields, so this is tested without ROS.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

CHANNELS = {"rgb8": 3, "bgr8": 3, "mono8": 1, "rgba8": 4, "bgra8": 4}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".npy")
DATASETS = ("fashion-mnist", "digits")
FRAMES_PER_DATASET = 200


class ImageFormatError(ValueError):
    """An image's encoding, size or buffer does not make a frame."""


DEFAULT_MAX_IMAGE_BYTES = 32 * 1024 * 1024
"""a 4K RGB frame is 24.9 MB; anything bigger on a camera topic is a mistake, not a frame"""


def check_image_header(height: int, width: int, encoding: str, step: int, size: int,
                       max_bytes: int = DEFAULT_MAX_IMAGE_BYTES) -> None:
    """Reject a frame from its header and buffer length alone, before any copy or conversion."""
    if size > max_bytes:
        raise ImageFormatError(f"{size} byte image exceeds the {max_bytes} byte limit")
    if height <= 0 or width <= 0 or size == 0:
        raise ImageFormatError(f"empty image: {height}x{width}, {size} bytes")
    if encoding not in CHANNELS:
        raise ImageFormatError(
            f"unsupported encoding {encoding[:32]!r}; supported: {sorted(CHANNELS)}")
    row = width * CHANNELS[encoding]
    step = step or row
    if step < row or size < step * height:
        raise ImageFormatError(f"{height}x{width} {encoding} image with step {step} needs "
                               f"{step * height} bytes, got {size}")


def image_to_array(
    data: bytes | memoryview, height: int, width: int, encoding: str, step: int = 0
) -> np.ndarray:
    """View an Image message's buffer as an H x W x C uint8 array (no copy where the rows are
    packed)."""
    if encoding not in CHANNELS:
        raise ImageFormatError(f"unsupported encoding {encoding!r}; supported: {sorted(CHANNELS)}")
    channels = CHANNELS[encoding]
    row = width * channels
    step = step or row
    buffer = np.frombuffer(data, dtype=np.uint8)
    if height <= 0 or width <= 0 or step < row or buffer.size < step * height:
        raise ImageFormatError(
            f"{height}x{width} {encoding} image with step {step} needs {step * height} bytes, "
            f"got {buffer.size}"
        )
    rows = buffer[: step * height].reshape(height, step)[:, :row]
    frame = rows.reshape(height, width, channels)
    return frame[..., 2::-1] if encoding in ("bgr8", "bgra8") else frame  # to RGB order


def _area_resize(plane: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Average-pool an H x W x C float image to out_h x out_w (block means, cropped to a multiple).
    """
    h, w = plane.shape[:2]
    if h >= out_h and w >= out_w:
        fy, fx = h // out_h, w // out_w
        cropped = plane[: out_h * fy, : out_w * fx]
        return cropped.reshape(out_h, fy, out_w, fx, -1).mean(axis=(1, 3))
    rows = (np.arange(out_h) * h // out_h).clip(0, h - 1)
    cols = (np.arange(out_w) * w // out_w).clip(0, w - 1)
    return plane[rows][:, cols]


def to_model_input(frame: np.ndarray, input_shape: tuple[int, ...]) -> np.ndarray:
    """H x W x C uint8 frame -> 1 x C' x H' x W' float32 in [0, 1] for a model taking (C', H', W').
    """
    channels, out_h, out_w = input_shape[-3:]
    plane = frame[..., :3].astype(np.float32) / 255.0
    if channels == 1:
        plane = plane.mean(axis=2, keepdims=True)
    elif plane.shape[2] == 1:
        plane = np.repeat(plane, channels, axis=2)
    resized = _area_resize(plane, out_h, out_w)
    return np.ascontiguousarray(resized.transpose(2, 0, 1)[None], dtype=np.float32)


class FrameSource:
    """Loops over images from a folder, or over test images of a dataset scaled up: Fashion-MNIST's
    (28x28, dyndnn_ros.datasets.fashion_mnist) or scikit-learn's bundled 8x8 digits."""

    def __init__(self, folder: str | Path | None, width: int = 64, height: int = 64,
                 dataset: str = "digits"):
        if width <= 0 or height <= 0:
            raise ImageFormatError(f"frame size must be positive, got {width}x{height}")
        if dataset not in DATASETS:
            raise ImageFormatError(f"unknown dataset {dataset!r}; known: {list(DATASETS)}")
        self.dataset = dataset
        self.index = 0
        if folder:
            self.folder = Path(folder)
            files = (
                sorted(p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
                if self.folder.is_dir()
                else []
            )
            if not files:
                raise ImageFormatError(f"no {'/'.join(IMAGE_SUFFIXES)} images in {folder}")
            self.frames = [self._load(p) for p in files]
            self.labels: list[int] | None = None
        else:
            self.folder = None
            images, self.labels = self._fashion() if dataset == "fashion-mnist" else self._digits()
            self.frames = [self._scaled(image, width, height) for image in images]

    @staticmethod
    def _load(path: Path) -> np.ndarray:
        if path.suffix == ".npy":
            image = np.load(path)
        else:
            import matplotlib.image

            image = matplotlib.image.imread(path)
        if image.dtype != np.uint8:
            image = (np.clip(image, 0, 1) * 255).astype(np.uint8)
        if image.ndim == 2:
            image = image[..., None]
        return np.ascontiguousarray(
            np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image[..., :3]
        )

    @staticmethod
    def _digits() -> tuple[list[np.ndarray], list[int]]:
        from sklearn.datasets import load_digits  # ships with scikit-learn: no download

        digits = load_digits()
        images = (digits.images[:FRAMES_PER_DATASET] * (255.0 / 16.0)).astype(np.uint8)
        return list(images), [int(t) for t in digits.target[:FRAMES_PER_DATASET]]

    @staticmethod
    def _fashion() -> tuple[list[np.ndarray], list[int]]:
        from dyndnn_ros.datasets import fashion_mnist

        data = fashion_mnist.load(which=("test_images", "test_labels"))
        return (list(data.test_images[:FRAMES_PER_DATASET]),
                [int(t) for t in data.test_labels[:FRAMES_PER_DATASET]])

    @staticmethod
    def _scaled(image: np.ndarray, width: int, height: int) -> np.ndarray:
        """A grey image as RGB in whole-pixel blocks (so the model input resizes back exactly)."""
        h, w = image.shape
        big = np.kron(image, np.ones((max(1, height // h), max(1, width // w)), dtype=np.uint8))
        return np.ascontiguousarray(np.repeat(big[..., None], 3, axis=2))

    def describe(self) -> str:
        h, w = self.frames[0].shape[:2]
        names = {"digits": "scikit-learn handwritten digits",
                 "fashion-mnist": "Fashion-MNIST test images"}
        origin = f"images from {self.folder}" if self.folder else names[self.dataset]
        return f"{len(self.frames)} {w}x{h} {origin}"

    def next(self) -> np.ndarray:
        frame = self.frames[self.index % len(self.frames)]
        self.index += 1
        return frame
