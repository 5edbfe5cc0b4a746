"""Resource manager: turns performance targets and live measurements into sub-network and DVFS commands.

It keeps the latest PerformanceTarget of each application (transient-local, so targets published
before it started still arrive), the sub-network profiles the inference nodes announce, their
measured latency, and the board's status. Every control period it asks the selected policy
(dyndnn_ros.policies) for a decision and publishes SubnetSwitch commands where a model must change
and a DvfsCommand (repeated each period: the DVFS node's watchdog restores the clocks if the
manager goes silent).
"""
from __future__ import annotations

from collections import defaultdict

from dyndnn_ros.msg import (
    DvfsCommand,
    HardwareStatus,
    InferenceStats,
    ManagerStatus,
    ModelProfile,
    PerformanceTarget,
    SubnetSwitch,
)
from dyndnn_ros.nodes import common
from dyndnn_ros.nodes.profile_messages import profile_from_message
from dyndnn_ros.policies import ClockSetting, Decision, GoalError, Observation, PerformanceGoal, create_policy, validate_goals
from dyndnn_ros.profiles import ModelProfile as CoreProfile
from dyndnn_ros.profiles import ProfileError


def goal_from_message(msg: PerformanceTarget) -> PerformanceGoal:
    return PerformanceGoal(
        app=msg.app_id,
        model=msg.model_id,
        max_latency_ms=float(msg.max_latency_ms),
        min_accuracy=float(msg.min_accuracy),
        max_power_w=float(msg.max_power_w),
        max_energy_mj=float(msg.max_energy_mj),
        priority=int(msg.priority),
    ).validate()


def clocks_from_status(msg: HardwareStatus) -> ClockSetting:
    return ClockSetting(
        cpu_khz={c.name: int(c.frequency_khz) for c in msg.cpu_clusters},
        gpu_hz=int(msg.gpu_frequency_hz),
        emc_hz=int(msg.emc_frequency_hz),
    )


def dvfs_message(clocks: ClockSetting, reason: str) -> DvfsCommand:
    msg = DvfsCommand(reason=reason)
    if clocks.use_default_governors:
        msg.mode = DvfsCommand.MODE_RESTORE
        return msg
    msg.mode = DvfsCommand.MODE_SET
    pinned = {name: int(khz) for name, khz in clocks.cpu_khz.items() if khz}
    msg.cpu_cluster_names = list(pinned)
    msg.cpu_frequencies_khz = list(pinned.values())
    msg.gpu_frequency_hz = int(clocks.gpu_hz)
    msg.emc_frequency_hz = int(clocks.emc_hz)
    return msg


class ResourceManagerNode(common.DyndnnNode):
    def __init__(self) -> None:
        super().__init__("resource_manager_node")
        policy_name = common.declare(self, "policy", "hierarchical", "Decision policy: hierarchical (sub-network + DVFS), subnet_only, dvfs_only or static")
        platform = common.declare(self, "platform", "xavier_nx", "Board description the policy predicts clocks and power with")
        period = float(common.declare(self, "control_period_s", 0.5, "Control period [s]"))
        if not period > 0:
            raise ValueError(f"control_period_s must be > 0, got {period}")
        self.policy_name = policy_name
        self.policy = create_policy(policy_name, platform=platform)
        self.target_messages: dict[str, PerformanceTarget] = {}
        self.goals: dict[str, PerformanceGoal] = {}
        self.parked: dict[str, PerformanceGoal] = {}  # targets naming a model not announced (yet)
        self.profiles: dict[str, CoreProfile] = {}
        self.latency_sums: dict[str, list[float]] = defaultdict(list)
        self.active: dict[str, str] = {}
        self.input_fps: dict[str, float] = {}
        self.clusters: dict[str, str] = {}
        self.hardware: HardwareStatus | None = None
        self.commanded: dict[str, str] = {}
        self.last_clocks: ClockSetting | None = None
        self.last_given_up: dict[str, str] = {}
        self.started = self.get_clock().now()

        self.switch_pub = self.create_publisher(SubnetSwitch, common.SUBNET_SWITCH_TOPIC, common.COMMAND_QOS)
        self.dvfs_pub = self.create_publisher(DvfsCommand, common.DVFS_COMMAND_TOPIC, common.COMMAND_QOS)
        self.status_pub = self.create_publisher(ManagerStatus, common.MANAGER_STATUS_TOPIC, common.MANAGER_STATUS_QOS)
        # Latched targets from applications that started first need a transient-local reader; a
        # volatile reader as well accepts plain `ros2 topic pub` (volatile by default), which the
        # transient-local one would refuse as incompatible QoS. A target seen twice is applied once.
        self.create_subscription(PerformanceTarget, common.TARGETS_TOPIC, self.on_target, common.LATCHED_READER_QOS)
        self.create_subscription(PerformanceTarget, common.TARGETS_TOPIC, self.on_target, common.COMMAND_QOS)
        self.create_subscription(ModelProfile, common.MODEL_PROFILES_TOPIC, self.on_profile, common.LATCHED_READER_QOS)
        self.create_subscription(InferenceStats, common.INFERENCE_STATS_TOPIC, self.on_stats, common.STATS_QOS)
        self.create_subscription(HardwareStatus, common.HARDWARE_STATUS_TOPIC, self.on_hardware, common.STATUS_QOS)
        self.create_timer(period, self.control_step)
        self.get_logger().info(f"policy {policy_name!r} on {platform}, control period {period:g} s")

    # -- inputs ----------------------------------------------------------------------------------
    def on_target(self, msg: PerformanceTarget) -> None:
        try:
            goal = goal_from_message(msg)
            validate_goals({**{k: g for k, g in self.goals.items() if k != goal.app}, goal.app: goal})
        except GoalError as exc:
            self.get_logger().warning(f"rejected target: {exc}")
            return
        if self.goals.get(goal.app) == goal or self.parked.get(goal.app) == goal:
            return
        if goal.model not in self.profiles:
            self.parked[goal.app] = goal
            self.target_messages[goal.app] = msg
            self.get_logger().warning(
                f"rejected target of app {goal.app!r} for now: unknown model {goal.model!r}; "
                f"known models: {sorted(self.profiles)}; it applies if that model is announced"
            )
            return
        self.goals[goal.app] = goal
        self.target_messages[goal.app] = msg
        self.parked.pop(goal.app, None)
        self.get_logger().info(f"target of app {goal.app!r}: {self._describe_goal(goal)}")
        self.control_step()  # act on a new target now, not at the next tick

    @staticmethod
    def _describe_goal(goal: PerformanceGoal) -> str:
        limits = [
            f"latency <= {goal.max_latency_ms:g} ms" if goal.max_latency_ms else "",
            f"accuracy >= {goal.min_accuracy:.1%}" if goal.min_accuracy else "",
            f"power <= {goal.max_power_w:g} W" if goal.max_power_w else "",
            f"energy <= {goal.max_energy_mj:g} mJ/frame" if goal.max_energy_mj else "",
        ]
        return f"model {goal.model!r}, " + (", ".join(l for l in limits if l) or "no limits") + f", priority {goal.priority}"

    def on_profile(self, msg: ModelProfile) -> None:
        try:
            profile = profile_from_message(msg)
        except ProfileError as exc:
            self.get_logger().warning(f"ignored profile of model {msg.model_id!r}: {exc}")
            return
        known = msg.model_id in self.profiles
        self.profiles[msg.model_id] = profile
        self.active[msg.model_id] = msg.active_subnet
        if msg.cpu_cluster:
            self.clusters[msg.model_id] = msg.cpu_cluster
        if not known:
            self.get_logger().info(f"model {msg.model_id!r} announced with sub-networks {profile.ids}")
        for app, goal in list(self.parked.items()):
            if goal.model == msg.model_id:
                del self.parked[app]
                self.goals[app] = goal
                self.get_logger().info(f"target of app {app!r} now applies: {self._describe_goal(goal)}")

    def on_stats(self, msg: InferenceStats) -> None:
        self.latency_sums[msg.model_id].append(float(msg.latency_ms))
        self.active[msg.model_id] = msg.active_subnet
        self.input_fps[msg.model_id] = float(msg.input_fps)

    def on_hardware(self, msg: HardwareStatus) -> None:
        self.hardware = msg

    # -- decisions -------------------------------------------------------------------------------
    def observe(self) -> Observation:
        latency, frames = {}, {}
        for app, goal in self.goals.items():
            samples = self.latency_sums.pop(goal.model, [])
            if samples:
                latency[app] = sum(samples) / len(samples)
                frames[app] = len(samples)
        self.latency_sums.clear()
        hw = self.hardware
        return Observation(
            time_s=(self.get_clock().now() - self.started).nanoseconds / 1e9,
            latency_ms=latency,
            frames=frames,
            active_subnets=dict(self.active),
            clocks=clocks_from_status(hw) if hw else ClockSetting(),
            cpu_util={c.name: float(c.utilization) for c in hw.cpu_clusters} if hw else {},
            gpu_util=float(hw.gpu_utilization) if hw else 0.0,
            emc_util=float(hw.emc_utilization) if hw else 0.0,
            power_w=float(hw.total_power_w) if hw else 0.0,
            input_fps={app: self.input_fps[g.model] for app, g in self.goals.items() if g.model in self.input_fps},
            app_cluster={app: self.clusters[g.model] for app, g in self.goals.items() if g.model in self.clusters},
        )

    def control_step(self) -> None:
        if not self.goals:
            return
        decision = self.policy.decide(dict(self.goals), dict(self.profiles), self.observe())
        self.command_subnets(decision)
        self.command_clocks(decision)
        self.publish_status(decision)
        if dict(decision.given_up) != self.last_given_up:
            for app, why in decision.given_up.items():
                self.get_logger().warning(f"gave up the target of app {app!r}: {why}")
            self.last_given_up = dict(decision.given_up)

    def publish_status(self, decision: Decision) -> None:
        msg = ManagerStatus(policy=self.policy_name, predicted_power_w=float(decision.predicted_power_w))
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.targets = [self.target_messages[app] for app in sorted(self.goals)]
        msg.models = list(decision.subnets)
        msg.subnets = [decision.subnets[m] for m in msg.models]
        msg.reasons = [decision.reasons.get(m, "") for m in msg.models]
        msg.given_up_apps = list(decision.given_up)
        msg.given_up_reasons = [decision.given_up[a] for a in msg.given_up_apps]
        self.status_pub.publish(msg)

    def command_subnets(self, decision: Decision) -> None:
        for model, subnet in decision.subnets.items():
            if self.commanded.get(model) == subnet and self.active.get(model) == subnet:
                continue
            reason = decision.reasons.get(model, "")
            msg = SubnetSwitch(model_id=model, subnet_id=subnet, reason=reason)
            msg.header.stamp = self.get_clock().now().to_msg()
            self.switch_pub.publish(msg)
            if self.commanded.get(model) != subnet:
                self.get_logger().info(f"{model}: switch to {subnet!r} ({reason})")
            self.commanded[model] = subnet

    def command_clocks(self, decision: Decision) -> None:
        clocks = decision.clocks
        if clocks is None or clocks.pins_nothing:
            return
        if clocks.use_default_governors and self.last_clocks is not None and self.last_clocks.use_default_governors:
            return  # governors already in charge; nothing to repeat
        msg = dvfs_message(clocks, "; ".join(f"{m}: {r}" for m, r in decision.reasons.items()))
        msg.header.stamp = self.get_clock().now().to_msg()
        self.dvfs_pub.publish(msg)
        if clocks != self.last_clocks:
            self.get_logger().info(f"clocks -> {clocks}")
        self.last_clocks = clocks


def main() -> None:
    common.main_entry(ResourceManagerNode)
