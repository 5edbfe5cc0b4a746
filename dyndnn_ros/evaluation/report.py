# SPDX-License-Identifier: Apache-2.0
"""Metrics of a run, the markdown report and the plots."""
from __future__ import annotations

import math

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from dyndnn_ros.evaluation.runner import BASELINE_LABEL, THESIS_BASELINE_LABEL, RunResult
from dyndnn_ros.evaluation.scenario import Scenario
from dyndnn_ros.simulation.simulator import Frame


@dataclass(frozen=True)
class Metrics:
    """What a run's frames show against its scenario's goals, however they were produced (the
    fast evaluation, the ROS nodes, one app's share of a run)."""

    energy_j: float
    """nan where only frames are judged"""
    frames: int
    energy_per_frame_mj: float
    mean_latency_ms: float
    p95_latency_ms: float
    violation_pct: float
    """frames whose latency exceeds their app's max_latency_ms at the time"""
    violation_settled_pct: float
    """the same, leaving out frames that start within settle_s after a change of goals or load"""
    mean_accuracy: float
    accuracy_short_pct: float
    """frames run with a sub-network below the app's min_accuracy at the time"""
    frames_on_goal: int
    """frames that met their app's latency and accuracy goals"""
    energy_per_frame_on_goal_mj: float
    """energy for a fixed amount of useful work: run energy / frames that met their goals"""
    on_goal_pct_by_priority: tuple[tuple[int, float], ...] = ()
    """(priority, % of that priority's frames that met their goals), highest priority first"""
    in_time_pct_by_priority: tuple[tuple[int, float], ...] = ()
    """(priority, % of its frames with a latency goal that met it, whatever their accuracy)"""
    lateness_by_priority: tuple[tuple[int, float], ...] = ()
    """(priority, mean of its frames' latency past the goal as a fraction of the goal, 0 for a
    frame in time): the best effort of an app whose frames cannot be on goal"""
    decide_ms: float = 0.0
    """mean time of one Policy.decide call (the fast evaluation only)"""
    subnet_switches: int = 0
    """sub-network changes over the run, all models together"""
    clock_changes: int = 0
    """ticks at which any clock (CPU clusters, GPU, EMC) changed"""


def change_times(scenario: Scenario) -> list[float]:
    return [p.at_s for p in scenario.phases if p.at_s > 0]


def frame_metrics(
    scenario: Scenario, frames: Sequence[Frame], energy_j: float = float("nan")
) -> Metrics:
    """Latency, late frames (all, and outside settle_s after the start and each change),
    accuracy and energy per frame, each frame judged against its app's goal in force when it
    started; `energy_j` is what the run used while these frames ran."""
    changes = np.array(
        [0.0, *change_times(scenario)]
    )  # the first goals arrive at 0 s: a change too
    latency = np.array([f.latency_ms for f in frames]) if frames else np.zeros(0)
    late, short, settled_total, settled_late, counted, on_goal = 0, 0, 0, 0, 0, 0
    # priority -> [frames, frames on goal, frames with a latency goal, in time, lateness sum]
    by_priority: dict[int, list[float]] = {}
    for f in frames:
        goal = scenario.phase_at(f.start_s).goals.get(f.app)
        if goal is None:
            continue
        below = bool(goal.min_accuracy and f.accuracy < goal.min_accuracy)
        short += below
        over = bool(goal.max_latency_ms and f.latency_ms > goal.max_latency_ms)
        met = scenario.on_goal(f.app, f.start_s, f.latency_ms, f.accuracy)
        on_goal += met
        counts = by_priority.setdefault(goal.priority, [0, 0, 0, 0, 0.0])
        counts[0] += 1
        counts[1] += met
        if not goal.max_latency_ms:
            continue
        counts[2] += 1
        counts[3] += not over
        counts[4] += max(0.0, f.latency_ms / goal.max_latency_ms - 1.0)
        counted += 1
        late += over
        since = f.start_s - changes[changes <= f.start_s] if changes.size else np.zeros(0)
        if not (since.size and since.min() < scenario.settle_s):
            settled_total += 1
            settled_late += over
    n = len(frames)
    energy_j = float(energy_j)
    return Metrics(
        energy_j=energy_j,
        frames=n,
        energy_per_frame_mj=1000.0 * energy_j / n if n else float("nan"),
        mean_latency_ms=float(latency.mean()) if n else float("nan"),
        p95_latency_ms=float(np.percentile(latency, 95)) if n else float("nan"),
        violation_pct=100.0 * late / counted if counted else 0.0,
        violation_settled_pct=100.0 * settled_late / settled_total if settled_total else 0.0,
        mean_accuracy=float(np.mean([f.accuracy for f in frames])) if n else float("nan"),
        accuracy_short_pct=100.0 * short / n if n else 0.0,
        frames_on_goal=on_goal,
        energy_per_frame_on_goal_mj=1000.0 * energy_j / on_goal if on_goal else float("inf"),
        on_goal_pct_by_priority=tuple(
            (p, 100.0 * c[1] / c[0]) for p, c in sorted(by_priority.items())[::-1]
        ),
        in_time_pct_by_priority=tuple(
            (p, 100.0 * c[3] / c[2]) for p, c in sorted(by_priority.items())[::-1] if c[2]
        ),
        lateness_by_priority=tuple(
            (p, c[4] / c[2]) for p, c in sorted(by_priority.items())[::-1] if c[2]
        ),
    )


def metrics(result: RunResult) -> Metrics:
    """A fast-evaluation run: its frames, energy, decision time and how often it switched."""
    frames = result.frames
    return replace(
        frame_metrics(result.scenario, frames, result.energy_j),
        decide_ms=float(np.mean(result.decide_ms)) if result.decide_ms else 0.0,
        subnet_switches=sum(
            a.subnet != b.subnet
            for app in {f.app for f in frames}
            for a, b in zip(
                [f for f in frames if f.app == app], [f for f in frames if f.app == app][1:]
            )
        ),
        clock_changes=sum(a != b for a, b in zip(_clock_trace(result), _clock_trace(result)[1:])),
    )


def pooled_metrics(results: Sequence[RunResult]) -> Metrics:
    """One policy's runs of one scenario on several simulator seeds, as one run: every frame
    judged against its goals, energy summed (decide_ms, subnet_switches and clock_changes stay
    0: they describe one run). A 10 s run's late frames depend on which latency draws its frames
    got as much as on what the policy decided; pooled runs estimate what it decided."""
    scenarios = {r.scenario.name for r in results}
    policies = {r.spec.label for r in results}
    if len(scenarios) != 1 or len(policies) != 1:
        raise ValueError("pooled runs must share one scenario and one policy, got scenarios"
                         f" {sorted(scenarios)} and policies {sorted(policies)}")
    return frame_metrics(
        results[0].scenario,
        [f for r in results for f in r.frames],
        sum(r.energy_j for r in results),
    )


def _clock_trace(result: RunResult) -> list[tuple]:
    log = result.log
    return list(zip(log.cpu_khz, log.gpu_hz, log.emc_hz))


def _pct(new: float, ref: float) -> str:
    return f"{100.0 * (new - ref) / ref:+.1f}%" if ref else "n/a"


def scenario_table(results: Sequence[RunResult]) -> str:
    by_label = {r.spec.label: metrics(r) for r in results}
    base = by_label.get(BASELINE_LABEL)
    oracle = by_label.get("oracle")
    lines = [
        "| policy | energy J | mJ/frame | vs schedutil | mJ/frame on goal | vs schedutil"
        " | vs oracle | frames | on goal | mean ms | vs schedutil | p95 ms | late %"
        " | late % settled | accuracy | below acc. goal % | switches | clock changes"
        " | decide ms |",
        "|---|" + "---:|" * 18,
    ]

    def vs(value: float, ref: Metrics | None, field: str) -> str:
        return _pct(value, getattr(ref, field)) if ref else ""

    for label, m in by_label.items():
        on_goal = m.energy_per_frame_on_goal_mj
        cells = [
            label, f"{m.energy_j:.1f}", f"{m.energy_per_frame_mj:.0f}",
            vs(m.energy_per_frame_mj, base, "energy_per_frame_mj"), f"{on_goal:.0f}",
            vs(on_goal, base, "energy_per_frame_on_goal_mj"),
            vs(on_goal, oracle, "energy_per_frame_on_goal_mj"), str(m.frames),
            str(m.frames_on_goal),
            f"{m.mean_latency_ms:.1f}", vs(m.mean_latency_ms, base, "mean_latency_ms"),
            f"{m.p95_latency_ms:.1f}", f"{m.violation_pct:.1f}", f"{m.violation_settled_pct:.1f}",
            f"{100 * m.mean_accuracy:.2f}", f"{m.accuracy_short_pct:.1f}", str(m.subnet_switches),
            str(m.clock_changes), f"{m.decide_ms:.1f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def app_table(results: Sequence[RunResult]) -> str:
    """Per policy and app: frames, mean latency, late frames and accuracy (a run's mean mixes
    apps whose latencies differ by orders of magnitude), and the threads a CPU model ran."""
    lines = [
        "| policy | app | frames | mean ms | late % settled | accuracy | threads |",
        "|---|---|" + "---:|" * 4 + "---|",
    ]
    for r in results:
        for a in r.scenario.apps:
            figures = frame_metrics(r.scenario, [f for f in r.frames if f.app == a.app])
            threads = sorted({p.threads[a.profile.model] for p in r.periods
                              if a.profile.model in p.threads})
            cells = [
                r.spec.label, a.app, str(figures.frames), f"{figures.mean_latency_ms:.1f}",
                f"{figures.violation_settled_pct:.1f}", f"{100 * figures.mean_accuracy:.2f}",
                " / ".join(str(t) for t in threads) or "-",
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


ORACLE_MARGIN = 0.01
"""a policy 'beats' the oracle when its energy per frame on goal is lower by more than this: the
oracle optimises the platform model's expectation, the simulator adds jitter and per-tick timing"""
SERVED_MARGIN_PCT = 1.0
"""... while it puts each priority's frames on goal, and within their latency goal, at most
this many points less often (the oracle ranks shares of frames in steps of 1 %)"""
LATENESS_MARGIN = 0.01
"""... and its frames past their latency goal at most this fraction of the goal later on
average (the oracle ranks the lateness of an app with no frame in time in steps of 1 %)"""


def beats_oracle(x: Metrics, oracle: Metrics) -> bool:
    """Whether `x` did the oracle's job better: less energy per frame on goal (by more than
    ORACLE_MARGIN) while serving every priority at least as well on each measure the oracle
    ranks before energy (search.most_on_goal): each priority's share of frames on goal and of
    frames within their latency goal within SERVED_MARGIN_PCT of the oracle's, and its mean
    lateness within LATENESS_MARGIN. A policy that spends less by serving a priority less, or by
    letting a given-up app's frames run later, made another trade, not a better one. A priority
    the oracle ran frames for and `x` did not counts as not served."""
    on_goal, in_time = dict(x.on_goal_pct_by_priority), dict(x.in_time_pct_by_priority)
    lateness = dict(x.lateness_by_priority)
    return (
        x.energy_per_frame_on_goal_mj
        < oracle.energy_per_frame_on_goal_mj * (1 - ORACLE_MARGIN)
        and all(on_goal.get(p, 0.0) >= pct - SERVED_MARGIN_PCT
                for p, pct in oracle.on_goal_pct_by_priority)
        and all(in_time.get(p, 0.0) >= pct - SERVED_MARGIN_PCT
                for p, pct in oracle.in_time_pct_by_priority)
        and all(lateness.get(p, math.inf) <= late + LATENESS_MARGIN
                for p, late in oracle.lateness_by_priority)
    )


def oracle_beaten(results: Sequence[RunResult]) -> list[str]:
    """Runs where a policy beats the oracle (beats_oracle): a bug in one of them (or in the
    model the oracle trusts)."""
    by_scenario: dict[str, dict[str, Metrics]] = {}
    for r in results:
        by_scenario.setdefault(r.scenario.name, {})[r.spec.label] = metrics(r)
    flagged = []
    for name, m in by_scenario.items():
        oracle = m.get("oracle")
        if oracle is None:
            continue
        for label, x in m.items():
            if label != "oracle" and beats_oracle(x, oracle):
                flagged.append(
                    f"{name}: {label} {x.energy_per_frame_on_goal_mj:.0f} mJ/frame on goal"
                    " < oracle "
                    f"{oracle.energy_per_frame_on_goal_mj:.0f}"
                )
    return flagged


def given_up_summary(result: RunResult) -> list[str]:
    """Distinct given-up reasons with the time span in which they were reported."""
    spans: dict[tuple[str, str], list[float]] = {}
    for p in result.periods:
        for app, why in p.given_up.items():
            spans.setdefault((app, why.split(";")[0].split("(")[0].strip()), []).append(p.time_s)
    return [
        f"{app} {min(t):.2f}-{max(t):.2f} s ({len(t)} periods): {why}"
        for (app, why), t in spans.items()
    ]


PLOTTED = (BASELINE_LABEL, "hierarchical", "oracle")
COLOURS = {BASELINE_LABEL: "tab:red", "hierarchical": "tab:blue", "oracle": "tab:green"}


def plot_scenario(results: Sequence[RunResult], path: Path, bin_s: float = 0.5) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in results if r.spec.label in PLOTTED]
    scenario = shown[0].scenario
    fig, axes = plt.subplots(4, 1, figsize=(11, 10), sharex=True)
    edges = np.arange(0.0, scenario.duration_s + bin_s, bin_s)
    styles = ["-", "--", ":"]
    for app_index, app in enumerate(a.app for a in scenario.apps):
        times = [p.at_s for p in scenario.phases] + [scenario.duration_s]
        targets = [
            p.goals[app].max_latency_ms if app in p.goals else np.nan for p in scenario.phases
        ]
        axes[0].step(
            times,
            targets + targets[-1:],
            where="post",
            color="black",
            lw=1.2,
            ls=styles[app_index % 3],
            label=f"target {app}",
        )
    for r in shown:
        colour = COLOURS.get(r.spec.label, "tab:gray")
        for app_index, app in enumerate(a.app for a in scenario.apps):
            frames = [f for f in r.frames if f.app == app]
            t = np.array([f.start_s for f in frames])
            lat = np.array([f.latency_ms for f in frames])
            acc = np.array([f.accuracy for f in frames])
            idx = np.digitize(t, edges) - 1
            centres = edges[:-1] + bin_s / 2
            mean_lat = np.array(
                [lat[idx == i].max() if np.any(idx == i) else np.nan for i in range(len(centres))]
            )
            axes[0].plot(
                centres,
                mean_lat,
                color=colour,
                ls=styles[app_index % 3],
                lw=1.2,
                label=f"{r.spec.label}: {app}",
            )
            axes[2].step(
                t,
                100 * acc,
                where="post",
                color=colour,
                ls=styles[app_index % 3],
                lw=1.2,
                label=f"{r.spec.label}: {app}",
            )
        log_t = np.array(r.log.time_s)
        axes[1].plot(
            log_t, np.array(r.log.gpu_hz) / 1e6, color=colour, lw=1.0, label=f"{r.spec.label}: GPU"
        )
        axes[1].plot(
            log_t,
            np.array(r.log.cpu_khz)[:, 0] / 1e3,
            color=colour,
            lw=0.8,
            ls=":",
            label=f"{r.spec.label}: CPU cluster0",
        )
        power = np.array(r.log.power_w)
        bins = np.digitize(log_t, edges) - 1
        axes[3].plot(
            edges[:-1] + bin_s / 2,
            [
                power[bins == i].mean() if np.any(bins == i) else np.nan
                for i in range(len(edges) - 1)
            ],
            color=colour,
            lw=1.2,
            label=r.spec.label,
        )
    axes[0].set_ylabel(f"latency ms\n(max per {bin_s:g} s)")
    axes[1].set_ylabel("clock MHz")
    axes[2].set_ylabel("top-1 %\n(sub-network)")
    axes[3].set_ylabel(f"board power W\n(mean per {bin_s:g} s)")
    axes[3].set_xlabel("time s")
    for ax in axes:
        ax.grid(alpha=0.3)
        for t in change_times(scenario):
            ax.axvline(t, color="gray", lw=0.6, alpha=0.6)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.suptitle(f"{scenario.name}: {scenario.description}", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(
    results: Sequence[RunResult],
    out: Path,
    command: str,
    elapsed_s: float,
    sensitivity_lines: Sequence[str] = (),
) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    scenarios: dict[str, list[RunResult]] = {}
    for r in results:
        scenarios.setdefault(r.scenario.name, []).append(r)
    lines = [
        "# Evaluation: runtime-management policies on the simulated "
        + (results[0].board if results else "board"),
        "",
        f"Command: `{command}` ({len(results)} runs in {elapsed_s:.0f} s). Platform model, "
        "constants and",
        "assumptions: docs/evaluation.md and config/platforms/xavier_nx.yaml. Energy is the "
        "board's",
        "(VDD_IN) over the whole scenario; 'late %' counts frames over their app's "
        "max_latency_ms;",
        "'settled' leaves out frames that start within settle_s after the start or a change.",
        "",
        "'mJ/frame on goal' is the energy for a fixed amount of useful work: run energy /",
        "frames that met their app's latency and accuracy goals. 'schedutil' is the baseline:",
        "the default governors with sub-networks fixed for the targets in force (no look-ahead);",
        "'largest' is the thesis' baseline.",
        "",
        "## Summary: hierarchical vs schedutil+podgov, the thesis' baseline and the oracle",
        "",
        "| scenario | mJ/frame vs schedutil | mJ/frame on goal vs schedutil"
        " | energy J vs schedutil |"
        " mean latency vs schedutil | mJ/frame on goal vs largest | mJ/frame on goal vs oracle |"
        " late % settled (hier. / sched.) | below acc. goal % (hier. / sched.) |",
        "|---|" + "---:|" * 8,
    ]
    for name, runs in scenarios.items():
        m = {r.spec.label: metrics(r) for r in runs}
        h, b, t, o = (
            m.get("hierarchical"),
            m.get(BASELINE_LABEL),
            m.get(THESIS_BASELINE_LABEL),
            m.get("oracle"),
        )
        if h and b and t and o:
            on_goal = h.energy_per_frame_on_goal_mj
            cells = [
                name, _pct(h.energy_per_frame_mj, b.energy_per_frame_mj),
                _pct(on_goal, b.energy_per_frame_on_goal_mj), _pct(h.energy_j, b.energy_j),
                _pct(h.mean_latency_ms, b.mean_latency_ms),
                _pct(on_goal, t.energy_per_frame_on_goal_mj),
                _pct(on_goal, o.energy_per_frame_on_goal_mj),
                f"{h.violation_settled_pct:.1f} / {b.violation_settled_pct:.1f}",
                f"{h.accuracy_short_pct:.1f} / {b.accuracy_short_pct:.1f}",
            ]
            lines.append("| " + " | ".join(cells) + " |")
    flagged = oracle_beaten(results)
    lines += [
        "",
        "Runs where a policy beats the oracle (energy per frame on goal lower by more than "
        f"{100 * ORACLE_MARGIN:g} % with each priority's frames on goal and in time within "
        f"{SERVED_MARGIN_PCT:g} point of the oracle's and its lateness within "
        f"{100 * LATENESS_MARGIN:g} % of the goal): " + ("none." if not flagged else ""),
    ]
    lines += [f"- **{line}**" for line in flagged]
    lines += sensitivity_lines
    for name, runs in scenarios.items():
        scenario = runs[0].scenario
        png = plot_scenario(runs, out / f"{name}.png")
        lines += [
            "",
            f"## {name}",
            "",
            scenario.description,
            "",
            scenario_table(runs),
            "",
            f"![{name}]({png.name})",
            "",
        ]
        if len(scenario.apps) > 1:
            lines += ["Per app:", "", app_table(runs), ""]
        hier = [r for r in runs if r.spec.label == "hierarchical"]
        if hier and given_up_summary(hier[0]):
            lines += ["Goals the hierarchical manager relaxed or gave up:", ""]
            lines += [f"- {line}" for line in given_up_summary(hier[0])]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def metrics_table(results: Sequence[RunResult]) -> list[dict]:
    return [
        {"scenario": r.scenario.name, "policy": r.spec.label, **asdict(metrics(r))}
        for r in results
    ]
