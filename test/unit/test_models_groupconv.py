# SPDX-License-Identifier: Apache-2.0
"""Group-convolution dynamic network: sub-network k is exactly groups 1..k; incremental training
never changes frozen groups (bit-identical), with equal groups and with unequal groups that read
every earlier group (lateral)."""
from __future__ import annotations

import pytest
import torch

from dyndnn_ros.models.groupconv import GroupConvNet, GroupConvSpec, GroupConvSubnet
from dyndnn_ros.training.train_groupconv import (Split, TrainBudget, load_digits_data,
                                               train_incremental)

SPEC = GroupConvSpec(group_channels=(2, 4, 4), groups=3)
UNEQUAL = GroupConvSpec(group_channels=(1, 2, 2), groups=3, group_scale=(1, 2, 3), lateral=True)
SPECS = pytest.mark.parametrize("spec", [SPEC, UNEQUAL], ids=["equal", "unequal-lateral"])


def _small_data() -> Split:
    d = load_digits_data(seed=0)
    return Split(d.x_train[:256], d.y_train[:256], d.x_val[:64], d.y_val[:64], d.x_test[:64],
                 d.y_test[:64])


def _group_snapshot(net: GroupConvNet, k: int) -> dict[str, torch.Tensor]:
    """Every tensor that belongs to groups 1..k (and heads 1..k)."""
    snap = {}
    for i in range(len(net.spec.group_channels)):
        n = net.spec.channels(i, k)
        mean, var = net.running_stats(i)
        for name, t in (("bn_w", net.bn_weights[i]), ("bn_b", net.bn_biases[i]), ("mean", mean),
                        ("var", var)):
            snap[f"{name}{i}"] = t.detach()[:n].clone()
        for j in range(k):
            snap[f"conv{i}.{j}"] = net.conv_weights[i][j].detach().clone()
    for j in range(k):
        for name, t in net.heads[j].state_dict().items():
            snap[f"head{j}.{name}"] = t.clone()
    return snap


@SPECS
def test_incremental_training_leaves_frozen_groups_bit_identical(spec: GroupConvSpec) -> None:
    torch.manual_seed(0)
    net = GroupConvNet(spec)
    data = _small_data()
    snapshots: dict[int, dict[str, torch.Tensor]] = {}
    outputs: dict[int, torch.Tensor] = {}

    def after_stage(k: int) -> None:
        snapshots[k] = _group_snapshot(net, k)
        with torch.no_grad():
            outputs[k] = net.eval().forward_groups(data.x_test, k)

    train_incremental(
        net, data, TrainBudget(epochs=2, batch_size=64, weight_decay=0.1), after_stage=after_stage
    )
    for k, snap in snapshots.items():
        now = _group_snapshot(net, k)
        changed = [name for name in snap if not torch.equal(snap[name], now[name])]
        assert not changed, f"training later groups changed sub-network g{k}: {changed}"
        with torch.no_grad():
            assert torch.equal(outputs[k], net.forward_groups(data.x_test, k))
    # and the stages did train something: the last group moved away from its initial value
    torch.manual_seed(0)
    untrained = GroupConvNet(spec)
    assert not torch.equal(untrained.conv_weights[0][-1], net.conv_weights[0][-1].detach())


@SPECS
def test_subnet_equals_independent_static_network_with_copied_weights(spec) -> None:
    torch.manual_seed(1)
    net = GroupConvNet(spec).eval()
    with torch.no_grad():  # non-trivial BN statistics
        for i in range(len(spec.group_channels)):
            mean, var = net.running_stats(i)
            mean.uniform_(-0.5, 0.5)
            var.uniform_(0.5, 2.0)
    x = torch.randn(5, 1, 8, 8)
    for k in range(1, spec.groups + 1):
        static = GroupConvSubnet(spec, k).eval()
        static.load_state_dict(net.standalone(k).state_dict())
        with torch.no_grad():
            torch.testing.assert_close(net.forward_groups(x, k), static(x), rtol=1e-5, atol=1e-6)


@SPECS
def test_subnet_k_ignores_later_groups(spec) -> None:
    torch.manual_seed(2)
    net = GroupConvNet(spec).eval()
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        before = net.forward_groups(x, 1)
        for i in range(len(spec.group_channels)):
            for w in list(net.conv_weights[i])[1:]:
                w += 1.0  # perturb groups 2..G only
        assert torch.equal(before, net.forward_groups(x, 1))


def test_unequal_lateral_groups_have_their_widths_and_inputs() -> None:
    net = GroupConvNet(UNEQUAL)
    # layer 1: group widths 2, 4, 6; group j reads groups 1..j of layer 0 (widths 1, 2, 3)
    assert [tuple(w.shape[:2]) for w in net.conv_weights[1]] == [(2, 1), (4, 3), (6, 6)]
    assert net.heads[1].in_features == 2 + 4
    with pytest.raises(ValueError, match="group_scale"):
        GroupConvSpec(groups=3, group_scale=(1, 2))


def test_training_command_writes_checkpoint_and_table(tmp_path, capsys) -> None:
    import yaml

    from dyndnn_ros.models import build_dynamic_model
    from dyndnn_ros.training.train_groupconv import main

    args = ["--out", str(tmp_path), "--epochs", "1", "--groups", "2", "--no-baseline",
            "--stages", str(tmp_path / "s")]
    assert main(args) == 0
    assert (tmp_path / "train.log").is_file()
    assert sorted(p.name for p in (tmp_path / "s").rglob("*.pt")) == ["stage_g1.pt", "stage_g2.pt"]
    again = tmp_path / "again"  # a rerun finds the finished stages and gives the same network
    assert main(args[:1] + [str(again)] + args[2:]) == 0
    first, second = (torch.load(p / "checkpoint.pt", weights_only=True)["state_dict"]
                     for p in (tmp_path, again))
    assert all(torch.equal(first[k], second[k]) for k in first)
    table = yaml.safe_load((tmp_path / "accuracy.yaml").read_text())
    assert [r["subnet"] for r in table["subnets"]] == ["g1", "g2"]
    assert all(0.0 <= r["dynamic_accuracy"] <= 1.0 for r in table["subnets"])
    assert "g2" in capsys.readouterr().out
    config = {"name": "gc", "family": "groupconv", "checkpoint": None, "spec": {"groups": 2}}
    model = build_dynamic_model(config, checkpoint=tmp_path / "checkpoint.pt")
    assert model.family.metadata["weights"] == "trained"
    assert model.family.accuracy("g2") == table["subnets"][1]["dynamic_accuracy"]


def test_pooled_head_unequal_subnets_match_static_networks_and_export_to_onnx(tmp_path) -> None:
    import torch.nn.functional as F

    from dyndnn_ros.export.onnx_export import check_with_onnxruntime, export_module
    from dyndnn_ros.models.groupconv import head_features

    spec = GroupConvSpec(in_channels=1, image_size=28, group_channels=(2, 4, 4), pool_after=(0, 1),
                         groups=3, head_pool=3, group_scale=(1, 2, 3), lateral=True)
    torch.manual_seed(3)
    net = GroupConvNet(spec).eval()
    x = torch.rand(4, 1, 28, 28)
    for k in range(1, spec.groups + 1):
        static = GroupConvSubnet(spec, k).eval()
        static.load_state_dict(net.standalone(k).state_dict())
        with torch.no_grad():
            torch.testing.assert_close(net.forward_groups(x, k), static(x), rtol=1e-5, atol=1e-6)
    features = torch.randn(2, 8, 7, 7)  # 7 -> 3: an average pool with the adaptive pool's windows
    adaptive = torch.flatten(F.adaptive_avg_pool2d(features, 3), 1)
    torch.testing.assert_close(head_features(features, 3), adaptive)
    path = export_module(net.standalone(3), (1, 28, 28), tmp_path / "g3.onnx")
    diff, scale = check_with_onnxruntime(net.standalone(3), path, x[:1])
    assert diff <= 1e-4 * scale + 1e-6


def test_validation_split_is_fixed_and_disjoint_from_training() -> None:
    from dyndnn_ros.training.train_groupconv import carve_validation

    x = torch.arange(100.0).reshape(100, 1, 1, 1)
    y = torch.arange(100)
    first, again = (carve_validation(x, y, 20, x[:5], y[:5]) for _ in range(2))
    assert torch.equal(first.y_val, again.y_val)  # the same images every run, whatever the seed
    train, val = set(first.y_train.tolist()), set(first.y_val.tolist())
    assert len(val) == 20 and not train & val and train | val == set(range(100))
    assert torch.equal(first.y_test, y[:5])
