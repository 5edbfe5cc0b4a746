# SPDX-License-Identifier: Apache-2.0
"""ONNX export of every sub-network, checked numerically against torch with onnxruntime (for real).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from dyndnn_ros.export.onnx_export import check_with_onnxruntime, export_model, export_module
from dyndnn_ros.models.ofa_family import recalibrate_bn
from dyndnn_ros.models.ofa_mbv3 import OFAMobileNetV3


def test_groupconv_all_subnets_match_onnxruntime(tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = {
        "name": "gc",
        "family": "groupconv",
        "checkpoint": None,
        "spec": {"group_channels": [2, 4, 4], "groups": 3},
    }
    manifest, checks = export_model(config, tmp_path, progress=False)
    assert [c.subnet_id for c in checks] == ["g1", "g2", "g3"]
    for c in checks:
        assert c.path.is_file()
        assert c.max_abs_output > 1e-3, "degenerate outputs would make the comparison meaningless"
        assert c.max_abs_diff <= 1e-4 * c.max_abs_output + 1e-6, c
    on_disk = yaml.safe_load((tmp_path / "manifest.yaml").read_text())
    assert on_disk == manifest and on_disk["subnets"][0]["input_shape"] == [1, 8, 8]


def test_ofa_subnet_matches_onnxruntime(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = OFAMobileNetV3(n_classes=10).eval()
    net.set_active_subnet(net.subnet_config([3, 5, 7, 5, 3], [3, 4, 6, 4, 3], 2, 128))
    sub = net.get_active_subnet()
    # random weights with default BN statistics shrink activations to ~0; calibrated ones keep them
    # alive
    recalibrate_bn(sub, [torch.randn(4, 3, 128, 128)])
    sub.eval()
    path = export_module(sub, (3, 128, 128), tmp_path / "sub.onnx")
    x = torch.randn(1, 3, 128, 128)
    diff, scale = check_with_onnxruntime(sub, path, x)
    with torch.no_grad():
        assert float((sub(x) - sub(torch.randn(1, 3, 128, 128))).abs().max()) > 1e-4, (
            "output must depend on input"
        )
    assert diff <= 1e-4 * scale + 1e-6, (diff, scale)


def test_unknown_model_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="known model configs"):
        export_model("no_such_model", tmp_path, progress=False)
