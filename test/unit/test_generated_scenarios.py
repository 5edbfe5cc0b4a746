# SPDX-License-Identifier: Apache-2.0
"""The manager against the oracle on seeded random scenarios (which seeds were seen when: CASES).

Property (issue 9): the manager never beats the oracle (report.beats_oracle: that would be a bug
in one of them), its energy per processed frame stays within 5 % of the oracle's, and its settled
late frames are never more than 2 points above the oracle's. Each seed is a 10 s scenario of one
or two apps, on the Xavier NX and on a board with other tables (AGX Orin), run on REALIZATIONS
simulator seeds (the frames' latency draws) and judged on the pooled frames: the oracle decides
for the expected frame, and one 10 s run's late share moves by several points with its draws.
"""

import traceback
from multiprocessing import get_context

import pytest

from dyndnn_ros.evaluation.report import beats_oracle, pooled_metrics
from dyndnn_ros.evaluation.runner import DEFAULT_SPECS, run_policy
from dyndnn_ros.evaluation.scenario import generate_scenario
from dyndnn_ros.platforms.model import PlatformModel

# Xavier NX 0-95 and AGX Orin 0-27 were looked at while the manager's estimates and the conflict
# rule were improved (2026-11-27); Xavier NX 96-143 and AGX Orin 28-41 were first run after most
# of that (one of them, Xavier NX 100, then led to the last change to the load estimates);
# Xavier NX 144-191 and AGX Orin 42-55 were first run after all of it; Xavier NX 192-255 and AGX
# Orin 56-71 were first run after the share reading's fix for Xavier NX 39 (the same day), and
# nothing was chosen on them until four of them failed; three of those four led to the last
# changes to the oracle and the conflict rule. The AGX Orin has other clocks, power and cores
# than the board the manager's defaults were chosen on.
CASES = [("xavier_nx", seed) for seed in range(256)] + [
    ("agx_orin_maxn", seed) for seed in range(72)
]
pytestmark = pytest.mark.timeout(2400)  # the first case waits for all: about 17 minutes

REALIZATIONS = 4
"""simulator seeds per case (docs/evaluation.md, "Generated scenarios": on one realization 2 to 6
of the first 186 cases fail, a different set for each seed; pooled over 4, none of the first 248
and 4 of the 80 run next; 1 of all 328 after the changes they led to); 4 is what CI's time
allows (about 17 minutes on two cores)"""
# Where the property fails, and why (docs/evaluation.md, "Generated scenarios"). Xavier NX 201
# and 245 and AGX Orin 60, the other three of the 80 that failed when first run, pass since the
# oracle decides for goals that change within a period and ranks frames in time where none can be
# on goal, and the manager tries each app's fastest sub-network where goals conflict.
KNOWN_FAILURES = {
    ("xavier_nx", 249): "beats the oracle by 2.3 % energy per frame on goal by a trade the"
    " whole-run margins do not see: in the three periods after the background job stops (7.25-8"
    " s) the manager runs app0 with cluster0 at 883 MHz, not 115 MHz, where each app0 frame costs"
    " 37 % less (model and simulator agree) and priority-2 app1, given up, takes 64.5 ms a frame"
    " instead of 57.2 against 51.2; over the run app1 is 0.98 % of its goal later, inside the 1 %"
    " lateness margin, and 2.9 % more of app0's frames are on goal",
}


def _run(case):
    """One case's pooled metrics per policy, or the traceback of what it raised: one case that
    raises fails alone, and the others are still judged."""
    board, seed = case
    try:
        model = PlatformModel.load(board)
        scenario = generate_scenario(seed, duration_s=10.0)
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
