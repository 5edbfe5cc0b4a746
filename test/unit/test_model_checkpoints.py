# SPDX-License-Identifier: Apache-2.0
"""A shipped config's relative checkpoint path resolves against the package, wherever the node was
started (ros2 launch from a robot user's home directory must not fall back to random weights)."""
from __future__ import annotations

from pathlib import Path

import pytest

from dyndnn_ros.models.registry import load_model_config, resolve_checkpoint
from dyndnn_ros.paths import share_dir


def test_the_default_checkpoint_is_found_from_any_working_directory(tmp_path, monkeypatch):
    doc = load_model_config("groupconv_fashion")
    monkeypatch.chdir(tmp_path)
    assert resolve_checkpoint(doc, None) == share_dir() / doc["checkpoint"]


def test_an_explicit_checkpoint_must_exist(tmp_path):
    doc = load_model_config("groupconv_fashion")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_checkpoint(doc, tmp_path / "missing.pt")


def test_a_missing_default_checkpoint_means_random_weights(tmp_path, monkeypatch):
    doc = dict(load_model_config("groupconv_fashion"), checkpoint="models/none/checkpoint.pt")
    monkeypatch.chdir(tmp_path)
    assert resolve_checkpoint(doc, None) is None
    assert not Path("models/none/checkpoint.pt").exists()
