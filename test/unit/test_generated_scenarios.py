"""The manager against the oracle on seeded random scenarios nobody tuned it on.

Property (issue 9): the manager never beats the oracle (that would be a bug in one of them), its
energy per processed frame stays within 5 % of the oracle's, and its settled late frames are never
more than 2 points above the oracle's. Each seed is a 10 s scenario of one or two apps.
"""

import pytest

from dyndnn_ros.evaluation.report import ORACLE_MARGIN, metrics
from dyndnn_ros.evaluation.runner import DEFAULT_SPECS, run_policy
from dyndnn_ros.evaluation.scenario import generate_scenario
from dyndnn_ros.platforms.model import PlatformModel

MODEL = PlatformModel.load("xavier_nx")
SEEDS = range(6)


def test_the_generator_is_seeded_and_varied():
    assert generate_scenario(3) == generate_scenario(3)
    shapes = {(len(s.apps), len(s.phases)) for s in map(generate_scenario, range(10))}
    assert len(shapes) > 2


# Measured at this commit: the property does not hold on every seed yet (issue 9, reported):
KNOWN_GAPS = {
    0: "two apps, goals infeasible: the manager's energy per frame on goal 892 mJ < oracle's 964",
    3: "the manager's energy per frame is 9 % above the oracle's (537 vs 493 mJ)",
    5: "the manager's energy per frame is 5.1 % above the oracle's (433 vs 412 mJ)",
}


@pytest.mark.parametrize(
    "seed",
    [pytest.param(s, marks=pytest.mark.xfail(strict=True, reason=KNOWN_GAPS[s])) if s in KNOWN_GAPS
     else s for s in SEEDS],
)
def test_manager_tracks_the_oracle_on_generated_scenarios(seed):
    scenario = generate_scenario(seed, duration_s=10.0)
    runs = {
        label: metrics(
            run_policy(scenario, next(s for s in DEFAULT_SPECS if s.label == label), MODEL)
        )
        for label in ("hierarchical", "oracle")
    }
    h, o = runs["hierarchical"], runs["oracle"]
    figures = f"seed {seed}: hierarchical {h}\noracle {o}"
    assert h.energy_per_frame_on_goal_mj >= o.energy_per_frame_on_goal_mj * (1 - ORACLE_MARGIN), (
        figures
    )
    assert h.energy_per_frame_mj <= 1.05 * o.energy_per_frame_mj, figures
    assert h.violation_settled_pct <= o.violation_settled_pct + 2.0, figures
