# SPDX-License-Identifier: Apache-2.0
"""The manager against the oracle on seeded random scenarios (which seeds were seen when: CASES).

Property (issue 9): the manager never beats the oracle (report.beats_oracle: that would be a bug
in one of them), its energy per processed frame stays within 5 % of the oracle's, and its settled
late frames are never more than 2 points above the oracle's. Each seed is a 10 s scenario of one
or two apps, on the Xavier NX, on a board with other tables (AGX Orin) and on two boards nothing
was chosen on (UNSEEN_BOARDS), run on REALIZATIONS simulator seeds (the frames' latency draws)
and judged on the pooled frames: the oracle decides for the expected frame, and one 10 s run's
late share moves by several points with its draws.
"""

import traceback
from multiprocessing import get_context

import pytest

from dyndnn_ros.evaluation.report import beats_oracle, pooled_metrics
from dyndnn_ros.evaluation.runner import DEFAULT_SPECS, run_policy
from dyndnn_ros.evaluation.scenario import generate_scenario
from dyndnn_ros.platforms.model import PlatformModel

UNSEEN_BOARDS = ("orin_nano_7w", "xavier_nx_2core")
"""boards no default, rule or fix was chosen on: the Orin Nano at 7 W (one 4-core cluster, a
slower GPU table) and the Xavier NX in its 2-core mode (both apps' host threads on one cluster).
Seeds 0-191 of each were first run on 2026-11-28, after every change before it, and nothing was
changed after; 0-95 are here (CI's time), 96-191 and the held-out 192-383 in
docs/evaluation.md"""
# Xavier NX 0-95 and AGX Orin 0-27 were looked at while the manager's estimates and the conflict
# rule were improved (2026-11-27); Xavier NX 96-143 and AGX Orin 28-41 were first run after most
# of that (one of them, Xavier NX 100, then led to the last change to the load estimates);
# Xavier NX 144-191 and AGX Orin 42-55 were first run after all of it; Xavier NX 192-255 and AGX
# Orin 56-71 were first run after the share reading's fix for Xavier NX 39 (the same day), and
# nothing was chosen on them until four of them failed; three of those four led to the last
# changes to the oracle and the conflict rule. Xavier NX 256-383 and AGX Orin 72-103 were first
# run after those changes, and nothing was chosen on them until three failed; two of those led
# to the changes of 2026-11-28. Xavier NX 384-511 and AGX Orin 104-135 were first run after
# those (AGX Orin 110 then informed the conflict rule's counting shares at the goal), and Xavier
# NX 512-639 and AGX Orin 136-167, held out from that change, before and after it; both sets are
# left out here for CI's time (docs/evaluation.md gives their figures). The AGX Orin has other
# clocks, power and cores than the board the manager's defaults were chosen on.
CASES = (
    [("xavier_nx", seed) for seed in range(384)]
    + [("agx_orin_maxn", seed) for seed in range(104)]
    + [(board, seed) for board in UNSEEN_BOARDS for seed in range(96)]
)
pytestmark = pytest.mark.timeout(3600)  # the first case waits for all: about 43 minutes

REALIZATIONS = 4
"""simulator seeds per case (docs/evaluation.md, "Generated scenarios": on one realization 2 to 6
of the first 186 cases failed, and 9 to 12 of the 488 on the last code before the draws were
shared, a different set for each seed;
pooled over 4, none of the first 248 and 4 of the 80 run next; 1 of those 328 after the changes
they led to, and 3 of the 160 first run after those; 3 of the 488 after the changes of
2026-11-28, and 2 of 160 more first run after them; since the conflict rule counts shares at
the goal, 2 of the 488, still 2 of those 160, and 1 of 160 more held out from that change).
Since the runs share their draws (the simulator's InferenceDraws, later on 2026-11-28), 2 to 6
of the 488 fail on one realization (6 to 7 of the 192 unseen-board cases, 7 to 8 before), and
pooled 3 of the 488 and 5 of the 192; since ties within the report's margins count
(search.TIE_MARGIN), 2 of the 488 and still 5 of the 192, and since the oracle plans the whole
run, 4 of the 192. 4 is what CI's time allows (about 43 minutes on two cores)"""
# Where the property fails, and why (docs/evaluation.md, "Generated scenarios"). Xavier NX 201
# and 245 and AGX Orin 60, three of the four of the 80 that failed when first run, pass since the
# oracle decides for goals that change within a period and ranks frames in time where none can be
# on goal, and the manager tries each app's fastest sub-network where goals conflict. AGX Orin 87
# and 100 and Xavier NX 374 failed when first run, after those changes; 87 and 374 pass since a
# priority counts as served at GOAL_QUANTILE of its frames on goal, every candidate of the
# conflict rule is resolved on the table's clocks around its own best point, and the managed
# apps' GPU busy is no longer capped by a latency the held share stretched. Xavier NX 346 failed
# after the first of those (12.3 points later) until the conflict rule counted a priority's
# frames at its goal, not within the headroom (now 0.7 points). AGX Orin 100 is the manager's
# 3 % headroom: it passes at headroom 0 (docs/evaluation.md gives the manager's figures at
# headroom 0 to 5 %). When the draws came to be shared, Xavier NX 249 (a trade inside the
# report's margins, 2.3 % less energy per frame on goal) came to pass, and Xavier NX 39 and 193,
# which had passed on the earlier draws, to fail. Xavier NX 39 passes since the conflict rule and
# the oracle count shares within the report's 1-point margin as ties (search.TIE_MARGIN), and
# Xavier NX 2-core 7 (beaten by the manager, the oracle keeping 0.4 % of an app's frames on goal
# and the rest late) since the oracle plans the whole run (OraclePolicy.plan).
KNOWN_FAILURES = {
    ("agx_orin_maxn", 100): "5.8 % more energy per frame: the same sub-networks at one GPU step"
    " higher (1122-1224 MHz against the oracle's 1020-1122), as punctual (0.2 against 1.0 % of"
    " settled frames late). It is the manager's 3 % headroom: the oracle holds app1's goals to"
    " 0.1 % (106.5 of 106.7 ms, 121.6 of 121.7), the manager under 0.97 of them, a GPU step up"
    " on this table. Energy per frame against the oracle's at headroom 0, 1, 2, 3, 5 %: +1.5,"
    " +2.4, +2.5, +5.8, +8.4 %, never more than 0.2 points later",
    ("xavier_nx", 193): "2.3 points later (30.7 against 28.4 % of settled frames), the same"
    " energy per frame: from 0.5 s on the manager runs the oracle's sub-networks, at other CPU"
    " clocks (cluster1, priority-1 app1's host thread, at 1190 against 1421 MHz until 7 s, and"
    " cluster0 higher), which the model predicts within 1-2 ms of the oracle's for app1 where"
    " its frames are 8-9 % over the goal; 43.6 against 47.9 % of app1's frames in time. Not"
    " traced further. +9.3, +2.9, +2.3 points at a headroom of 0, 1.5, 3 %. It passed before the"
    " draws were shared (2026-11-28), on other draws",
    # the boards nothing was chosen on (UNSEEN_BOARDS); energy per frame against the oracle's at
    # a headroom of 0, 1.5 and 3 % where it is the headroom
    ("orin_nano_7w", 17): "9.0 % more energy per frame, 1.5 points later (24.6 against 23.1 % of"
    " settled frames; as late on the earlier draws, the later part not traced): the manager's 3 %"
    " headroom. The oracle holds priority-1 app1's 124.1 ms"
    " goal at a predicted 123.8 ms with the CPU at 576 MHz, the manager under 0.97 of it at"
    " 960 MHz; +1.0, +1.9, +9.0 %",
    ("xavier_nx_2core", 5): "6.5 % more energy per frame, as late (0.5 against 0.5 %): the"
    " 3 % headroom. The oracle holds priority-2 app1's 112.7 ms goal at a predicted 112.7 ms"
    " with the GPU at 1007 MHz, the manager at 109.2 ms with 1058 MHz; +0.7, +3.5, +6.5 %",
    ("xavier_nx_2core", 12): "6.9 % more energy per frame, as late (17.0 against 16.7 %): the 3 %"
    " headroom. The oracle holds priority-2 app0's 97.1 ms goal at a predicted 97.0 ms with the"
    " GPU at 1058 MHz, the manager under 0.97 of it at 1109 MHz; +1.4, +4.0, +6.9 %",
    ("xavier_nx_2core", 39): "8.1 points later (36.9 against 28.7 % of settled frames): both"
    " apps' host threads share the one cluster and a 0.2 job holds the GPU near saturation,"
    " where priority-2 app1's predicted frames in time move steeply with the unmanaged share."
    " On estimates 0.01 under the true 0.2 (traced on the draws before 2026-11-28) the"
    " conflict rule takes the EMC at 1066 MHz for 2"
    " more points of app1's frames (99.6 against 97.3 % predicted), which leaves priority-1"
    " app0 52 % of its frames on goal against 72 % at the oracle's 1331 MHz: a lead of a higher"
    " priority wider than the report's 1-point tie, on a noisy estimate, outranks any share of"
    " a lower one (Xavier NX 39, the same class, passes since such ties count)."
    " +10.7, +10.0, +9.4 points at a headroom of 0, 1.5, 3 % before ties counted",
}


def _run(case):
    """One case's pooled metrics per policy, or the traceback of what it raised: one case that
    raises fails alone, and the others are still judged."""
    board, seed = case
    try:
        model = PlatformModel.load(board)
        clusters = model.description.clocks.cluster_names
        scenario = generate_scenario(seed, duration_s=10.0, clusters=clusters)
        return case, {
            label: pooled_metrics([
                run_policy(scenario, next(s for s in DEFAULT_SPECS if s.label == label), model,
                           seed=realization)
                for realization in range(REALIZATIONS)
            ])
            for label in ("hierarchical", "oracle")
        }
    except Exception:  # reported as that case's failure
        return case, traceback.format_exc()


@pytest.fixture(scope="module")
def runs():
    """Every case's metrics (or the traceback of what it raised), on two processes (CI has two
    cores)."""
    with get_context("fork").Pool(2) as pool:
        return dict(pool.imap_unordered(_run, CASES))


def test_the_generator_is_seeded_and_varied():
    assert generate_scenario(3) == generate_scenario(3)
    shapes = {(len(s.apps), len(s.phases)) for s in map(generate_scenario, range(10))}
    assert len(shapes) > 2
    two_apps = next(seed for seed in range(10) if len(generate_scenario(seed).apps) == 2)
    assert [a.cluster for a in generate_scenario(two_apps).apps] == ["cluster0", "cluster1"]
    one_cluster = generate_scenario(two_apps, clusters=("cluster0",))  # an Orin Nano's
    assert [a.cluster for a in one_cluster.apps] == ["cluster0", "cluster0"]
    assert one_cluster.phases == generate_scenario(two_apps).phases


@pytest.mark.parametrize(
    "board,seed",
    [
        pytest.param(*case, marks=pytest.mark.xfail(
            strict=True, raises=AssertionError, reason=KNOWN_FAILURES[case]))
        if case in KNOWN_FAILURES
        else case
        for case in CASES
    ],
)
def test_manager_tracks_the_oracle_on_generated_scenarios(runs, board, seed):
    if isinstance(runs[(board, seed)], str):
        pytest.fail(runs[(board, seed)], pytrace=False)
    h, o = runs[(board, seed)]["hierarchical"], runs[(board, seed)]["oracle"]
    figures = f"{board} seed {seed}: hierarchical {h}\noracle {o}"
    assert not beats_oracle(h, o), figures
    assert h.energy_per_frame_mj <= 1.05 * o.energy_per_frame_mj, figures
    assert h.violation_settled_pct <= o.violation_settled_pct + 2.0, figures
