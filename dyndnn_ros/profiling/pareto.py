# SPDX-License-Identifier: Apache-2.0
"""Pareto front of sub-networks (accuracy up, latency down) and its plot."""
from __future__ import annotations

from pathlib import Path

from dyndnn_ros.profiles import ModelProfile, SubnetProfile


def pareto_front(subnets: list[SubnetProfile] | tuple[SubnetProfile, ...]) -> list[SubnetProfile]:
    """Sub-networks no other one beats on both p50 latency and accuracy, fastest first."""
    front = []
    for s in subnets:
        dominated = any(
            o is not s
            and o.latency_p50_ms <= s.latency_p50_ms
            and o.accuracy >= s.accuracy
            and (o.latency_p50_ms < s.latency_p50_ms or o.accuracy > s.accuracy)
            for o in subnets
        )
        if not dominated:
            front.append(s)
    return sorted(front, key=lambda s: s.latency_p50_ms)


def plot_profile(profile: ModelProfile, path: str | Path) -> Path:
    """Accuracy vs latency (Pareto front marked; whiskers p50..p99) beside MACs vs latency."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    subnets = list(profile.subnets)
    accuracy_known = bool(profile.metadata.get("accuracy_known", True))
    fig, (ax_acc, ax_mac) = plt.subplots(1, 2, figsize=(11, 4.5))
    lat = [s.latency_p50_ms for s in subnets]
    err = [[0.0] * len(subnets), [s.latency_p99_ms - s.latency_p50_ms for s in subnets]]

    if accuracy_known:
        front = pareto_front(subnets)
        ax_acc.errorbar(
            lat,
            [100 * s.accuracy for s in subnets],
            xerr=err,
            fmt="o",
            color="tab:blue",
            ecolor="lightsteelblue",
            capsize=3,
            label="sub-network (p50, whisker to p99)",
        )
        ax_acc.plot(
            [s.latency_p50_ms for s in front],
            [100 * s.accuracy for s in front],
            "-",
            color="tab:red",
            label="Pareto front",
        )
        for s in subnets:
            ax_acc.annotate(
                s.id,
                (s.latency_p50_ms, 100 * s.accuracy),
                textcoords="offset points",
                xytext=(6, 4),
                fontsize=8,
            )
        ax_acc.set_ylabel("top-1 accuracy [%]")
        ax_acc.margins(x=0.15, y=0.12)
        ax_acc.legend(loc="lower right", fontsize=8)
        ax_acc.set_title("accuracy vs latency")
    else:  # no accuracy to trade against: show the latency distribution instead
        ids = [s.id for s in subnets]
        width = 0.27
        for offset, (label, attr) in enumerate(
            (("p50", "latency_p50_ms"), ("p95", "latency_p95_ms"), ("p99", "latency_p99_ms"))
        ):
            ax_acc.barh(
                [i + (offset - 1) * width for i in range(len(ids))],
                [getattr(s, attr) for s in subnets],
                height=width,
                label=label,
            )
        ax_acc.set_yticks(range(len(ids)), ids, fontsize=8)
        ax_acc.legend(loc="lower right", fontsize=8)
        ax_acc.set_title(
            f"accuracy unknown ({profile.metadata.get('weights', '?')} weights): latency "
            "percentiles"
        )
    ax_acc.set_xlabel("latency p50 [ms]" if accuracy_known else "latency [ms]")
    ax_acc.grid(alpha=0.3)

    ax_mac.errorbar(lat, [s.macs / 1e6 for s in subnets], xerr=err, fmt="s", color="tab:green",
                    ecolor="darkseagreen", capsize=3)
    for s in subnets:
        ax_mac.annotate(
            s.id,
            (s.latency_p50_ms, s.macs / 1e6),
            textcoords="offset points",
            xytext=(6, 4),
            fontsize=8,
        )
    ax_mac.margins(x=0.15, y=0.12)
    ax_mac.set_xlabel("latency p50 [ms]")
    ax_mac.set_ylabel("MMACs per frame")
    ax_mac.set_title("compute vs latency")
    ax_mac.grid(alpha=0.3)
    fig.suptitle(
        f"{profile.model} on {profile.device}, {profile.threads} thread(s), "
        f"batch {profile.metadata.get('batch', 1)}, {profile.metadata.get('mode', '')} mode"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
