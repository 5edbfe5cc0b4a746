# SPDX-License-Identifier: Apache-2.0
"""Zalando's Fashion-MNIST (MIT licence): 60,000 + 10,000 28x28 grey images, 10 classes.

Read from the idx .gz files of the Debian/Ubuntu package `dataset-fashion-mnist`: the installed
path /usr/share/datasets/fashion-mnist/, or the package unpacked without root into the cache
(`apt-get download` + `dpkg-deb -x`, see `fetch_into_cache`). Every file is checked against its
SHA-256 before it is parsed.

The pinned SHA-256 values are of the package's files (0.0~git20200523.55506a9-1). Debian
re-compressed them (gzip header time June 2020), so they differ from upstream's .gz MD5s
(https://github.com/zalandoresearch/fashion-mnist README: train images
8d4fb7e6c68d591d4c3dfef9ec88bf0d, train labels 25c81989df183df01b3e8a0aad5dffbe, test images
bef4ecab320f06d8554ea6380940ec79, test labels bb300cfdad3c16e7a12a480ee83cd310). `IDX_SHA256`
also pins the decompressed idx payloads (computed from the package), so a differently compressed
copy of the same data passes.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PACKAGE = "dataset-fashion-mnist"
INSTALLED_DIR = Path("/usr/share/datasets/fashion-mnist")
CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
GZ_SHA256 = {  # the Debian package's .gz files
    "train_images": "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
    "train_labels": "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
    "test_images": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
    "test_labels": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
}
IDX_SHA256 = {  # the decompressed idx payloads, whoever compressed them
    "train_images": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train_labels": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "test_images": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "test_labels": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}


class DatasetUnavailable(RuntimeError):
    """Neither the installed package nor the cache holds valid Fashion-MNIST files."""


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "dyndnn_ros" / "datasets" / "fashion-mnist"


@dataclass(frozen=True)
class ImageDataset:
    """uint8 images N x H x W and int64 labels, split into train and test."""

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    classes: tuple[str, ...]
    source: str


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def parse_idx(raw: bytes) -> np.ndarray:
    """An idx file (big-endian magic 0x0000 0x08 ndim, then ndim uint32 sizes, then uint8 data)."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError("not an unsigned-byte idx file (bad magic)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int(v) for v in np.frombuffer(raw[4:header], dtype=">u4"))
    if len(raw) != header + int(np.prod(shape)):
        raise ValueError(
            f"idx file of shape {shape} needs {header + int(np.prod(shape))} bytes, has {len(raw)}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _checked(folder: Path, key: str) -> bytes:
    """The decompressed idx bytes of file `key`, if the .gz or its payload has its SHA-256."""
    path = folder / FILES[key]
    raw = gzip.decompress(path.read_bytes())
    if sha256_of(path) != GZ_SHA256[key] and hashlib.sha256(raw).hexdigest() != IDX_SHA256[key]:
        raise ValueError(f"{path}: SHA-256 matches neither the package's file nor the idx payload")
    return raw


def _complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in FILES.values())


def fetch_into_cache(target: Path | None = None) -> Path:
    """`apt-get download` the package and `dpkg-deb -x` it into the cache (no root needed)."""
    target = target or cache_dir()
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            ["apt-get", "download", PACKAGE],
            cwd=tmp,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        debs = list(Path(tmp).glob(f"{PACKAGE}_*.deb"))
        if not debs:
            raise DatasetUnavailable(f"apt-get download {PACKAGE} left no .deb in {tmp}")
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(Path(tmp) / "x")], check=True)
        unpacked = Path(tmp) / "x" / INSTALLED_DIR.relative_to("/")
        target.mkdir(parents=True, exist_ok=True)
        for key, name in FILES.items():
            _checked(unpacked, key)
            shutil.copyfile(unpacked / name, target / name)
    return target


def locate(fetch: bool = True) -> Path:
    """The folder with the four files: installed package, else the cache, else fetch into it."""
    for folder in (INSTALLED_DIR, cache_dir()):
        if _complete(folder):
            return folder
    problem = "not installed and not in the cache"
    if fetch:
        try:
            return fetch_into_cache()
        except (OSError, subprocess.CalledProcessError, ValueError, DatasetUnavailable) as exc:
            said = getattr(exc, "stderr", None)  # apt-get's own reason, on its last line
            reason = said.decode(errors="replace").strip().splitlines()[-1] if said else str(exc)
            problem = f"fetching failed ({reason})"
    raise DatasetUnavailable(
        f"Fashion-MNIST {problem}: install it (sudo apt install {PACKAGE}, "
        f"files in {INSTALLED_DIR})"
        f" or unpack it into {cache_dir()} (apt-get download {PACKAGE} && dpkg-deb -x <deb> <tmp>,"
        f" then copy {INSTALLED_DIR.relative_to('/')}/*.gz there)"
    )


def load(
    folder: Path | None = None, fetch: bool = True, which: tuple[str, ...] = tuple(FILES)
) -> ImageDataset:
    """The dataset; `which` limits the files read (the others are empty arrays)."""
    folder = folder or locate(fetch)
    arrays = {
        key: parse_idx(_checked(folder, key)) if key in which else np.zeros((0,), np.uint8)
        for key in FILES
    }
    return ImageDataset(
        "fashion-mnist",
        arrays["train_images"],
        arrays["train_labels"].astype(np.int64),
        arrays["test_images"],
        arrays["test_labels"].astype(np.int64),
        CLASSES,
        str(folder),
    )
