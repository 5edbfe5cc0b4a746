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
