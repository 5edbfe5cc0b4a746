# SPDX-License-Identifier: Apache-2.0
"""Runtime-management policies: the manager's decision core (no ROS here)."""
from dyndnn_ros.policies.base import (
    ClockSetting,
    Decision,
    GoalError,
    Observation,
    PerformanceGoal,
    Policy,
    PolicyError,
    create_policy,
    policy_names,
    validate_goal,
    validate_goals,
)

# the built-in policies register themselves when imported (one-way: base.py imports none of them)
from dyndnn_ros.policies import app_level, oracle, system_level  # noqa: E402,F401

__all__ = [
    "ClockSetting",
    "Decision",
    "GoalError",
    "Observation",
    "PerformanceGoal",
    "Policy",
    "PolicyError",
    "create_policy",
    "policy_names",
    "validate_goal",
    "validate_goals",
]
