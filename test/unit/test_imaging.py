# SPDX-License-Identifier: Apache-2.0
"""Image buffers to model input, and the camera's frame source."""
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dyndnn_ros.imaging import (
    FrameSource,
    ImageFormatError,
    check_image_header,
    image_to_array,
    to_model_input,
)


def test_packed_rgb_buffer_is_viewed_without_copy():
    frame = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    data = frame.tobytes()
    view = image_to_array(data, 4, 5, "rgb8")
    assert np.array_equal(view, frame)
    assert not view.flags.owndata


def test_padded_rows_and_bgr_order():
    frame = np.random.default_rng(0).integers(0, 255, (3, 4, 3), dtype=np.uint8)
    padded = np.zeros((3, 16), dtype=np.uint8)
    padded[:, :12] = frame[..., ::-1].reshape(3, 12)  # stored as BGR with 4 bytes of row padding
    assert np.array_equal(image_to_array(padded.tobytes(), 3, 4, "bgr8", step=16), frame)


@pytest.mark.parametrize(
    "args, message",
    [
        ((b"\0" * 10, 4, 5, "rgb8"), "needs 60 bytes"),
        ((b"\0" * 60, 4, 5, "yuv422"), "unsupported encoding"),
        ((b"\0" * 60, 0, 5, "rgb8"), "needs"),
    ],
)
def test_malformed_images_are_rejected(args, message):
    with pytest.raises(ImageFormatError, match=message):
        image_to_array(*args)


def test_digits_frames_round_trip_to_the_8x8_model_input():
    source = FrameSource(None, 64, 64)
    from sklearn.datasets import load_digits

    digit = load_digits().images[0] / 16.0
    model_input = to_model_input(source.next(), (1, 8, 8))
    assert model_input.shape == (1, 1, 8, 8) and model_input.dtype == np.float32
    assert np.abs(model_input[0, 0] - digit).max() < 1 / 255 + 1e-6


@given(
    h=st.integers(1, 40), w=st.integers(1, 40), c=st.sampled_from([1, 3]), out=st.integers(1, 16)
)
def test_model_input_always_has_the_requested_shape_and_range(h, w, c, out):
    frame = np.random.default_rng(h * w).integers(0, 256, (h, w, 3), dtype=np.uint8)
    x = to_model_input(frame, (c, out, out))
    assert x.shape == (1, c, out, out)
    assert 0.0 <= x.min() and x.max() <= 1.0


def test_folder_source_loads_npy_images(tmp_path):
    np.save(tmp_path / "a.npy", np.full((6, 7), 200, dtype=np.uint8))
    source = FrameSource(tmp_path)
    frame = source.next()
    assert frame.shape == (6, 7, 3) and frame.dtype == np.uint8


def test_empty_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ImageFormatError, match="no .png"):
        FrameSource(tmp_path)


@pytest.mark.parametrize("header, message", [
    ((5000, 3500, "rgb8", 10500, 52_500_000), "exceeds the 33554432 byte limit"),
    ((0, 0, "rgb8", 0, 0), "empty image"),
    ((4, 4, "rgb8", 12, 0), "empty image"),
    ((4, 4, "yuv422" + "x" * 100, 0, 48), "unsupported encoding"),
    ((480, 640, "rgb8", 1920, 100), "needs 921600 bytes, got 100"),
    ((4, 4, "rgb8", 8, 48), "step 8 needs"),
])
def test_frames_are_judged_from_their_header_before_any_copy(header, message):
    with pytest.raises(ImageFormatError, match=re.escape(message)):
        check_image_header(*header)
    check_image_header(480, 640, "rgb8", 1920, 921_600)
    check_image_header(2, 2, "mono8", 0, 4)


def test_fashion_frames_round_trip_to_the_28x28_model_input():
    from dyndnn_ros.datasets import fashion_mnist

    try:
        data = fashion_mnist.load(fetch=False, which=("test_images", "test_labels"))
    except fashion_mnist.DatasetUnavailable as exc:
        pytest.skip(f"Fashion-MNIST not installed or cached here: {exc}")
    source = FrameSource(None, 64, 64, dataset="fashion-mnist")
    assert source.labels[:5] == [int(t) for t in data.test_labels[:5]]
    frame = source.next()
    assert frame.shape == (56, 56, 3)  # 28x28 in whole 2x2 blocks
    model_input = to_model_input(frame, (1, 28, 28))
    assert np.abs(model_input[0, 0] - data.test_images[0] / 255.0).max() < 1 / 255 + 1e-6


def test_unknown_dataset_is_a_clear_error():
    with pytest.raises(ImageFormatError, match="unknown dataset 'cifar'"):
        FrameSource(None, dataset="cifar")
