# SPDX-License-Identifier: Apache-2.0
"""The small Fashion-MNIST super-network (same elastic code as the ImageNet one, other widths) and
the progressive-shrinking / Pareto-search helpers of train_ofa."""

from __future__ import annotations

import random

import pytest
import torch

from dyndnn_ros.models import build_dynamic_model
from dyndnn_ros.models.ofa_family import save_bn_stats
from dyndnn_ros.models.registry import load_model_config
from dyndnn_ros.training.train_ofa import (
    Phase,
    arch_id,
    build_supernet,
    crossover,
    materialise,
    mutate,
    pareto,
    sample_arch,
    set_arch,
    Shrinking,
    shrinking_schedule,
    smallest_arch,
    spread_over_latency,
)

CONFIG = load_model_config("ofa_fashion")


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return build_supernet(CONFIG).eval()


def test_small_supernet_takes_28x28_grey_images_at_every_extreme(net) -> None:
    x = torch.rand(2, 1, 28, 28)
    for ks, e, d in ((3, 3, 1), (7, 6, 3), ([3, 5, 7], [6, 4, 3], [1, 3, 2])):
        net.set_active_subnet(net.subnet_config(ks, e, d, 28))
        with torch.no_grad():
            shared = net(x)
            torch.testing.assert_close(
                net.get_active_subnet().eval()(x), shared, rtol=1e-4, atol=1e-5
            )
        assert shared.shape == (2, 10)


def test_schedule_follows_once_for_all_order(net) -> None:
    names = [p.name for p in shrinking_schedule(net)]
    assert names == ["largest", "kernel", "depth_1", "depth_2", "expand_1", "expand_2"]
    rng = random.Random(0)
    largest = sample_arch(shrinking_schedule(net)[0], net, rng)
    assert largest == ((7, 7, 7), (6, 6, 6), (3, 3, 3))
    depth_1 = shrinking_schedule(net)[2]
    for _ in range(20):
        _, e, d = sample_arch(depth_1, net, rng)
        assert set(d) <= {2, 3} and set(e) == {6}
    assert smallest_arch(depth_1, net) == ((3, 3, 3), (6, 6, 6), (2, 2, 2))
    assert smallest_arch(shrinking_schedule(net)[0], net) == largest


def test_pareto_keeps_only_undominated_points_and_spreads_them() -> None:
    points = [
        {"id": "a", "accuracy": 0.80, "latency_ms": 1.0},
        {"id": "b", "accuracy": 0.79, "latency_ms": 1.5},
        {"id": "c", "accuracy": 0.85, "latency_ms": 2.0},
        {"id": "d", "accuracy": 0.86, "latency_ms": 3.0},
        {"id": "e", "accuracy": 0.87, "latency_ms": 4.0},
    ]
    front = pareto(points)
    assert [p["id"] for p in front] == ["a", "c", "d", "e"]
    assert [p["id"] for p in spread_over_latency(front, 3)] == ["a", "c", "e"]


def test_mutation_and_crossover_stay_in_the_search_space(net) -> None:
    rng = random.Random(1)
    everything = Phase(
        "all", 0, tuple(net.ks_list), tuple(net.expand_ratio_list), tuple(net.depth_list)
    )
    for _ in range(30):
        child = crossover(
            mutate(sample_arch(everything, net, rng), net, rng),
            sample_arch(everything, net, rng),
            rng,
        )
        set_arch(net, child, 28)  # validates every value against the elastic sets
        assert arch_id(child).startswith("k")


def test_trained_set_loads_with_its_accuracies_and_bn_statistics(net, tmp_path) -> None:
    arch = ((3, 5, 7), (3, 4, 6), (1, 2, 3))
    sub, stats = materialise(net, arch, 28, torch.rand(64, 1, 28, 28))
    checkpoint = tmp_path / "supernet.pt"
    torch.save(net.state_dict(), checkpoint)
    subnet_set = tmp_path / "set.yaml"
    subnet_set.write_text(
        f"name: tiny\nsubnets:\n  - {{id: {arch_id(arch)}, kernel: [3, 5, 7], expand: [3, 4, 6], "
        f"depth: [1, 2, 3], resolution: 28, accuracy: 0.5}}\n"
    )
    save_bn_stats(tmp_path / "bn.pt", "tiny", {arch_id(arch): stats}, "test")
    config = dict(CONFIG, subnets=str(subnet_set), bn_stats=str(tmp_path / "bn.pt"))
    model = build_dynamic_model(config, checkpoint=checkpoint)
    assert model.family.accuracy(arch_id(arch)) == 0.5
    assert model.input_shape(arch_id(arch)) == (1, 28, 28)
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(model.forward(x), sub(x), rtol=1e-4, atol=1e-5)
    random_weights = build_dynamic_model(dict(config, checkpoint=None))
    assert random_weights.family.accuracy(arch_id(arch)) is None  # not measured with these weights


def test_distillation_loss_is_cross_entropy_against_the_teacher() -> None:
    import torch.nn.functional as F

    from dyndnn_ros.training.train_ofa import soft_target_loss, steps_for

    logits = torch.randn(6, 10)
    labels = torch.randint(0, 10, (6,))
    one_hot = F.one_hot(labels, 10).float()
    torch.testing.assert_close(soft_target_loss(logits, one_hot), F.cross_entropy(logits, labels))
    assert steps_for(0.5, 1000, 100) == 5 and steps_for(2, 1001, 100) == 22


def tiny_split():
    from dyndnn_ros.training.train_groupconv import Split

    torch.manual_seed(4)
    x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
    return Split(x, y, x[:2], y[:2], x[:2], y[:2])


def test_each_shrinking_step_trains_the_full_the_smallest_and_a_sampled_network(
    net, monkeypatch
) -> None:
    trained = build_supernet(CONFIG)
    trained.load_state_dict(net.state_dict())
    seen = []
    select = trained.set_active_subnet
    monkeypatch.setattr(trained, "set_active_subnet", lambda c: (seen.append(c), select(c)))
    kernel = Phase("kernel", 1, kernels=(3, 5, 7))
    Shrinking(batch_size=4).train(trained, tiny_split(), [kernel], 28, seed=0)

    def arch(c):
        return c.ks[0::3], c.e[0::3], c.d  # first block of each stage, depths

    largest, smallest = ((7, 7, 7), (6, 6, 6), (3, 3, 3)), ((3, 3, 3), (6, 6, 6), (3, 3, 3))
    assert len(seen) == 2 * 3 + 1  # 8 images, batch 4: two steps of three, then the full one
    for step in (seen[0:3], seen[3:6]):
        assert [arch(c) for c in step[:2]] == [largest, smallest]
        assert set(step[2].e) == {6} and set(step[2].d) == {3}
    assert arch(seen[-1]) == largest
    first = dict(net.named_parameters())
    assert any(not torch.equal(p, first[n]) for n, p in trained.named_parameters())


def test_a_resumed_shrinking_run_ends_where_an_unbroken_one_does(tmp_path) -> None:
    schedule = [Phase("largest", 0.5), Phase("depth", 0.5, depths=(1, 2, 3))]

    def run(stages):
        torch.manual_seed(0)
        net = build_supernet(CONFIG)
        Shrinking(batch_size=4).train(net, tiny_split(), schedule, 28, 0, stages)
        return net.state_dict()

    unbroken = run(None)
    run(tmp_path)
    (tmp_path / "phase_1_depth.pt").unlink()  # stopped after the first phase
    resumed = run(tmp_path)
    for name, value in unbroken.items():
        torch.testing.assert_close(resumed[name], value, rtol=0, atol=0, msg=name)
