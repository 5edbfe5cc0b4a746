# SPDX-License-Identifier: Apache-2.0
"""The manager against the oracle on seeded random scenarios nobody tuned it on.

Property (issue 9): the manager never beats the oracle (report.beats_oracle: that would be a bug
in one of them), its energy per processed frame stays within 5 % of the oracle's, and its settled
late frames are never more than 2 points above the oracle's. Each seed is a 10 s scenario of one
or two apps, on the Xavier NX and on a board with other tables (AGX Orin).
"""

from multiprocessing import get_context

import pytest

from dyndnn_ros.evaluation.report import beats_oracle, metrics
from dyndnn_ros.evaluation.runner import DEFAULT_SPECS, run_policy
from dyndnn_ros.evaluation.scenario import generate_scenario
from dyndnn_ros.platforms.model import PlatformModel

# Xavier NX 0-47 and AGX Orin 0-13 were looked at while the manager's estimates were improved
# (2026-11-27); Xavier NX 48-95 and AGX Orin 14-27 were first run after that change. The AGX Orin
# has other clocks, power and cores than the board the manager's defaults were chosen on.
CASES = [("xavier_nx", seed) for seed in range(96)] + [
    ("agx_orin_maxn", seed) for seed in range(28)
]
# Where the property fails, each for a reason in the manager's estimates or in the oracle, not a
# tolerance away (the fraction is in docs/evaluation.md): where goals conflict the manager decides
# by the oracle's rule from filtered estimates, and an error of a few percent can tip its order
# (priorities in turn, in steps of 1 % of frames), or an estimate lags a change the oracle knows.
KNOWN_FAILURES = {
    # settled late frames 9 points above the oracle's: the unmanaged GPU share, read from a GPU
    # that is not quite saturated, comes out 0.16 for a 0.2 job, so the manager believes the
    # priority-2 app can have 99 % of its frames on goal (it gets 79 %, the oracle 95 %) and
    # gives the priority-1 app's accuracy up for it
    ("xavier_nx", 39): "late",
    # beats the oracle, 2.2 % cheaper per frame on goal: the oracle chooses one period at a time
    # from the steady-state model, which is not the frame timeline's optimum
    ("xavier_nx", 53): "beats",
    ("xavier_nx", 66): "late",  # 4.7 points
    ("xavier_nx", 82): "late",  # 2.7 points
    ("xavier_nx", 87): "late",  # 9.6 points
    ("xavier_nx", 89): "late",  # 3.9 points
    ("agx_orin_maxn", 16): "energy",  # +5.2 % per frame
    ("agx_orin_maxn", 17): "energy",  # +5.7 % per frame
    ("agx_orin_maxn", 25): "energy",  # +6.5 % per frame
}


def _run(case):
    board, seed = case
    model = PlatformModel.load(board)
    scenario = generate_scenario(seed, duration_s=10.0)
    return case, {
        label: metrics(
            run_policy(scenario, next(s for s in DEFAULT_SPECS if s.label == label), model)
        )
        for label in ("hierarchical", "oracle")
    }


@pytest.fixture(scope="module")
def runs():
    """Every case's metrics, on two processes (CI has two cores)."""
    with get_context("fork").Pool(2) as pool:
        return dict(pool.imap_unordered(_run, CASES))


def test_the_generator_is_seeded_and_varied():
    assert generate_scenario(3) == generate_scenario(3)
    shapes = {(len(s.apps), len(s.phases)) for s in map(generate_scenario, range(10))}
    assert len(shapes) > 2


@pytest.mark.parametrize(
    "board,seed",
    [
        pytest.param(*case, marks=pytest.mark.xfail(strict=True, reason=KNOWN_FAILURES[case]))
        if case in KNOWN_FAILURES
        else case
        for case in CASES
    ],
)
def test_manager_tracks_the_oracle_on_generated_scenarios(runs, board, seed):
    h, o = runs[(board, seed)]["hierarchical"], runs[(board, seed)]["oracle"]
    figures = f"{board} seed {seed}: hierarchical {h}\noracle {o}"
    assert not beats_oracle(h, o), figures
    assert h.energy_per_frame_mj <= 1.05 * o.energy_per_frame_mj, figures
    assert h.violation_settled_pct <= o.violation_settled_pct + 2.0, figures
