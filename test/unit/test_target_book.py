# SPDX-License-Identifier: Apache-2.0
"""The manager's target book: verdicts, parking and expiry, withdrawal, duplicates, unmet goals."""

from __future__ import annotations

import math

import pytest

from dyndnn_ros.log_limits import RateLimiter, shorten
from dyndnn_ros.policies import PerformanceGoal
from dyndnn_ros.profiles import ModelProfile, SubnetProfile
from dyndnn_ros.target_book import MAX_NAME_CHARS, TargetBook, TargetState, unmet_goals

KNOWN = {"digits"}


def goal(app="tracker", model="digits", **limits) -> PerformanceGoal:
    return PerformanceGoal(app, model, **limits)


def test_a_valid_target_is_accepted_and_a_repeat_is_not_a_change():
    book = TargetBook()
    first = book.submit(goal(max_latency_ms=5.0), KNOWN, now=0.0, stamp=(1, 0))
    assert first.state == TargetState.ACCEPTED and first.changed and first.stamp == (1, 0)
    assert "latency <= 5 ms" in first.reason
    again = book.submit(goal(max_latency_ms=5.0), KNOWN, now=1.0, stamp=(2, 0))
    assert again.state == TargetState.ACCEPTED and not again.changed
    assert book.goals == {"tracker": goal(max_latency_ms=5.0)}


def test_the_second_delivery_of_the_same_target_gets_no_verdict():
    book = TargetBook()
    assert (
        book.submit(goal(max_latency_ms=math.nan), KNOWN, 0.0, (7, 1)).state
        == TargetState.REJECTED
    )
    assert book.submit(goal(max_latency_ms=math.nan), KNOWN, 0.0, (7, 1)) is None, (
        "NaN is not equal to itself"
    )
    assert book.submit(goal(max_latency_ms=5.0), KNOWN, 0.0, (8, 0)) is not None
    assert book.submit(goal(max_latency_ms=5.0), KNOWN, 0.0, (8, 0)) is None


@pytest.mark.parametrize(
    "limits, reason",
    [
        (dict(max_latency_ms=math.nan), "must be finite"),
        (dict(max_power_w=-1.0), "must be >= 0"),
        (dict(min_accuracy=90.0), "fraction in [0, 1]"),
    ],
)
def test_bad_targets_are_rejected_with_the_reason_and_the_previous_target_stays(limits, reason):
    book = TargetBook()
    book.submit(goal(max_latency_ms=5.0), KNOWN, 0.0, (1, 0))
    verdict = book.submit(goal(**limits), KNOWN, 1.0, (2, 0))
    assert (
        verdict.state == TargetState.REJECTED and reason in verdict.reason and not verdict.changed
    )
    assert book.goals["tracker"] == goal(max_latency_ms=5.0)


def test_a_second_app_on_a_model_is_rejected_even_while_the_first_is_parked():
    book = TargetBook()
    assert book.submit(goal("a", "later"), KNOWN, 0.0).state == TargetState.PARKED
    verdict = book.submit(goal("b", "later"), KNOWN, 0.0)
    assert verdict.state == TargetState.REJECTED and "both use model 'later'" in verdict.reason


def test_long_names_are_rejected_and_shortened_in_the_reason():
    book = TargetBook()
    verdict = book.submit(goal(app="x" * 10_000), KNOWN, 0.0)
    assert verdict.state == TargetState.REJECTED
    assert "(10000 chars)" in verdict.reason and len(verdict.reason) < 300
    assert book.submit(goal(app="y" * MAX_NAME_CHARS), KNOWN, 0.0).state == TargetState.ACCEPTED


def test_a_parked_target_applies_when_its_model_is_announced():
    book = TargetBook(parked_timeout_s=10.0)
    verdict = book.submit(goal(model="ofa"), KNOWN, 0.0)
    assert verdict.state == TargetState.PARKED and "unknown model 'ofa'" in verdict.reason
    assert "expires in 10 s" in verdict.reason and book.goals == {}
    assert book.model_announced("other") == []
    [applied] = book.model_announced("ofa")
    assert applied.state == TargetState.ACCEPTED and applied.changed
    assert "tracker" in book.goals and not book.parked
    assert book.expire(100.0) == []


def test_a_parked_target_expires_after_the_timeout_and_a_repeat_does_not_reset_the_clock():
    book = TargetBook(parked_timeout_s=10.0)
    book.submit(goal(model="ofa"), KNOWN, 0.0, (1, 0))
    assert not book.submit(goal(model="ofa"), KNOWN, 6.0, (2, 0)).changed
    assert book.expire(9.9) == []
    [expired] = book.expire(10.0)
    assert expired.state == TargetState.EXPIRED and "not announced within 10 s" in expired.reason
    assert not book.parked and book.model_announced("ofa") == []


def test_parked_targets_never_expire_with_a_zero_timeout():
    book = TargetBook(parked_timeout_s=0.0)
    book.submit(goal(model="ofa"), KNOWN, 0.0)
    assert book.expire(1e9) == [] and "never expires" in book._parked_reason(
        goal(model="ofa"), KNOWN
    )
    with pytest.raises(ValueError):
        TargetBook(parked_timeout_s=-1.0)


def test_withdrawal_removes_a_target_in_force_or_parked():
    book = TargetBook()
    book.submit(goal(), KNOWN, 0.0)
    book.submit(goal("other", "ofa"), KNOWN, 0.0)
    done = book.withdraw("tracker", 1.0, (5, 0))
    assert done.state == TargetState.WITHDRAWN and done.changed and done.model == "digits"
    assert book.withdraw("tracker", 1.0, (5, 0)) is None, "second delivery"
    assert book.withdraw("other", 1.0).changed and not book.parked
    nothing = book.withdraw("tracker", 2.0, (6, 0))
    assert (
        nothing.state == TargetState.WITHDRAWN
        and not nothing.changed
        and "no target" in nothing.reason
    )
    assert book.submit(goal(), KNOWN, 3.0).changed, "the app can set a target again"


def test_a_target_moving_to_an_unknown_model_is_parked_and_leaves_force():
    book = TargetBook()
    book.submit(goal(), KNOWN, 0.0)
    assert book.submit(goal(model="ofa"), KNOWN, 1.0).state == TargetState.PARKED
    assert book.goals == {} and "tracker" in book.parked


PROFILE = ModelProfile(
    "digits",
    "cpu",
    (
        SubnetProfile("g1", 0.90, 1.0, 1.2, 1.3, 1.0),
        SubnetProfile("g4", 0.95, 3.0, 3.5, 3.9, 3.1),
    ),
)


def test_unmet_goals_name_each_limit_missed():
    goals = {
        "tracker": goal(min_accuracy=0.99, max_latency_ms=2.0, max_power_w=5.0, max_energy_mj=10.0)
    }
    unmet = unmet_goals(
        goals, {"digits": "g4"}, {"digits": PROFILE}, {"tracker": 3.2}, 6.5, {"digits": 12.0}
    )
    why = unmet["tracker"]
    assert "accuracy 95.0% of g4 < 99.0% (no sub-network reaches it" in why
    assert "latency 3.20 ms > 2 ms" in why and "board power 6.50 W > 5 W" in why
    assert "energy 12.0 mJ/frame > 10 mJ/frame" in why


def test_goals_met_or_not_yet_measured_are_not_reported():
    goals = {
        "tracker": goal(min_accuracy=0.95, max_latency_ms=4.0, max_power_w=5.0, max_energy_mj=10.0)
    }
    assert (
        unmet_goals(
            goals, {"digits": "g4"}, {"digits": PROFILE}, {"tracker": 3.2}, 4.0, {"digits": 9.0}
        )
        == {}
    )
    assert unmet_goals(goals, {"digits": "g4"}, {"digits": PROFILE}, {}, 0.0, {}) == {}
    relaxed = unmet_goals(
        {"tracker": goal(min_accuracy=0.95)}, {"digits": "g1"}, {"digits": PROFILE}, {}, 0, {}
    )
    assert "g4 would" in relaxed["tracker"]


def test_shorten_keeps_short_text_and_gives_the_length_of_long_text():
    assert shorten("tracker") == "tracker"
    assert shorten("a" * 10_000, 10) == "aaaaaaaaaa...(10000 chars)"


def test_the_rate_limiter_lets_a_burst_through_then_counts_what_it_held_back():
    limiter = RateLimiter(burst=3, interval_s=5.0)
    lines = [limiter.line(f"rejected {i}", now=i * 0.001) for i in range(1000)]
    assert [line for line in lines if line] == ["rejected 0", "rejected 1", "rejected 2"]
    assert limiter.line("later", now=6.0) == "later (997 similar lines suppressed before this one)"
    assert limiter.line("next", now=6.1) == "next"


def test_an_older_target_arriving_after_a_newer_one_is_rejected_as_superseded():
    book = TargetBook()
    book.submit(goal(max_latency_ms=5.0), KNOWN, 0.0, (10, 500))
    late = book.submit(goal(max_latency_ms=9.0), KNOWN, 0.1, (10, 400))
    assert late.state == TargetState.REJECTED and "superseded" in late.reason
    assert book.goals["tracker"].max_latency_ms == 5.0
    assert book.withdraw("tracker", 0.2, (9, 0)).state == TargetState.REJECTED
    assert book.submit(goal(max_latency_ms=7.0), KNOWN, 0.3, (0, 0)).changed, "unstamped: no order"
    other = book.submit(goal(app="other", model="ofa"), KNOWN, 0.3, (1, 0))
    assert other.state == TargetState.PARKED, "stamps are ordered per app"


def test_targets_for_a_refused_model_keep_a_bounded_memory():
    """A repeating publisher of a target for a refused model (a new stamp each time) must not
    grow what the book remembers of it past its bound on recent targets."""
    from dyndnn_ros.target_book import RECENT_TARGETS

    book = TargetBook()
    refused = {"cpu_model": "not managed"}
    for second in range(3 * RECENT_TARGETS):
        verdict = book.submit(PerformanceGoal("cam", "cpu_model", max_latency_ms=50.0), [], 0.0,
                              (second, 0), refused)
        assert verdict.state == TargetState.REJECTED and verdict.reason == "not managed"
    assert len(book._refused_keys["cpu_model"]) <= RECENT_TARGETS + 1
