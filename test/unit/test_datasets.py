# SPDX-License-Identifier: Apache-2.0
"""Fashion-MNIST files: idx parsing, checksums, and the error that names both ways to get them."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from dyndnn_ros.datasets import fashion_mnist


def _idx(array: np.ndarray) -> bytes:
    return (
        bytes([0, 0, 0x08, array.ndim])
        + struct.pack(f">{array.ndim}I", *array.shape)
        + array.tobytes()
    )


def test_parse_idx_reads_shape_and_data():
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(fashion_mnist.parse_idx(_idx(images)), images)
    labels = np.array([9, 0, 3], dtype=np.uint8)
    assert np.array_equal(fashion_mnist.parse_idx(_idx(labels)), labels)


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"\x00\x00\x0d\x01\x00\x00\x00\x01\x00", "bad magic"),  # float idx, not unsigned byte
        (_idx(np.zeros((2, 2), np.uint8))[:-1], "needs 16 bytes"),  # truncated
    ],
)
def test_parse_idx_rejects_bad_files(raw, message):
    with pytest.raises(ValueError, match=message):
        fashion_mnist.parse_idx(raw)


def test_a_file_with_the_wrong_checksum_is_refused(tmp_path):
    for name in fashion_mnist.FILES.values():
        (tmp_path / name).write_bytes(gzip.compress(_idx(np.zeros((1, 28, 28), np.uint8))))
    with pytest.raises(ValueError, match="SHA-256"):
        fashion_mnist.load(tmp_path)


def test_missing_everywhere_names_both_ways(tmp_path, monkeypatch):
    monkeypatch.setattr(fashion_mnist, "INSTALLED_DIR", tmp_path / "nowhere")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(fashion_mnist.DatasetUnavailable) as caught:
        fashion_mnist.locate(fetch=False)
    message = str(caught.value)
    assert "\n" not in message
    assert "apt install dataset-fashion-mnist" in message and "apt-get download" in message
    assert str(tmp_path / "cache" / "dyndnn_ros" / "datasets" / "fashion-mnist") in message


def test_the_real_files_verify_and_parse():
    try:
        data = fashion_mnist.load(fetch=False)
    except fashion_mnist.DatasetUnavailable as exc:
        pytest.skip(f"Fashion-MNIST not installed or cached here: {exc}")
    assert data.train_images.shape == (60000, 28, 28) and data.test_images.shape == (10000, 28, 28)
    assert data.train_labels.dtype == np.int64 and set(np.unique(data.test_labels)) == set(
        range(10)
    )
    assert np.bincount(data.test_labels).tolist() == [1000] * 10  # the published balanced test set
