"""Resource manager: turns performance targets and live measurements into sub-network and DVFS commands.

It keeps the latest PerformanceTarget of each application (transient-local, so targets published
before it started still arrive), the sub-network profiles the inference nodes announce, their
measured latency, and the board's status. Every control period it asks the selected policy
(dyndnn_ros.policies) for a decision and publishes SubnetSwitch commands where a model must change
and a DvfsCommand (repeated each period: the DVFS node's watchdog restores the clocks if the
manager goes silent).
"""
from __future__ import annotations

import dataclasses
import time
from collections import defaultdict

try:
    from rclpy.event_handler import QoSRequestedIncompatibleQoSInfo, SubscriptionEventCallbacks
except ImportError:  # Humble (JetPack 6) names the module qos_event
    from rclpy.qos_event import QoSRequestedIncompatibleQoSInfo, SubscriptionEventCallbacks

from dyndnn_ros.log_limits import RateLimiter, shorten
from dyndnn_ros.msg import (
    DvfsCommand,
    HardwareStatus,
    InferenceStats,
    ManagerStatus,
    ModelProfile,
    PerformanceTarget,
    SubnetSwitch,
    TargetStatus,
)
from dyndnn_ros.nodes import common
from dyndnn_ros.nodes.profile_messages import profile_from_message
from dyndnn_ros.platforms.detect import resolve_platform
from dyndnn_ros.policies import (
    ClockSetting,
    Decision,
    Observation,
    PerformanceGoal,
    create_policy,
)
from dyndnn_ros.profiles import ModelProfile as CoreProfile
from dyndnn_ros.profiles import ProfileError
from dyndnn_ros.target_book import (
    MAX_NAME_CHARS,
    TargetBook,
    TargetState,
    Verdict,
    unmet_goals,
)


def goal_from_message(msg: PerformanceTarget) -> PerformanceGoal:
    """The goal as sent; TargetBook checks it."""
    return PerformanceGoal(
        app=msg.app_id,
        model=msg.model_id,
        max_latency_ms=float(msg.max_latency_ms),
        min_accuracy=float(msg.min_accuracy),
        max_power_w=float(msg.max_power_w),
        max_energy_mj=float(msg.max_energy_mj),
        priority=int(msg.priority),
    )


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
        platform = common.declare(self, "platform", "auto", "Board description the policy "
                                  "predicts clocks and power with "
                                  "(auto: detected from the board under sysfs_root)")
        sysfs_root = common.declare(self, "sysfs_root", "/",
                                    "Where the board's /proc and /etc live, for platform auto")
        platform = resolve_platform(platform, sysfs_root).name
        period = float(common.declare(self, "control_period_s", 0.5, "Control period [s]"))
        parked_timeout = float(common.declare(
            self, "parked_target_timeout_s", 300.0,
            "A target for a model no inference node has announced is dropped after this long [s]; "
            "0 = never"))
        if not period > 0:
            raise ValueError(f"control_period_s must be > 0, got {period}")
        self.policy_name = policy_name
        self.policy = create_policy(policy_name, platform=platform, runtime_only=True)
        self.book = TargetBook(parked_timeout)
        self.target_messages: dict[str, PerformanceTarget] = {}
        self.rejection_log = RateLimiter(burst=5, interval_s=5.0)
        self.change_log = RateLimiter(burst=10, interval_s=5.0)
        self.unmet_log = RateLimiter(burst=5, interval_s=10.0)
        self.profiles: dict[str, CoreProfile] = {}
        self.latency_sums: dict[str, list[float]] = defaultdict(list)
        self.energy_sums: dict[str, list[float]] = defaultdict(list)
        self.last_unmet: dict[str, str] = {}
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
        self.verdict_pub = self.create_publisher(TargetStatus, common.TARGET_STATUS_TOPIC,
                                                 common.TARGET_STATUS_QOS)
        # Latched targets from applications that started first need a transient-local reader; a
        # volatile reader as well accepts plain `ros2 topic pub` (volatile by default), which the
        # transient-local one would refuse as incompatible QoS. A target seen twice is answered
        # once.
        self.create_subscription(PerformanceTarget, common.TARGETS_TOPIC, self.on_target,
                                 common.LATCHED_READER_QOS,
                                 event_callbacks=SubscriptionEventCallbacks(
                                     incompatible_qos=self.on_volatile_target_publisher))
        self.create_subscription(PerformanceTarget, common.TARGETS_TOPIC, self.on_target, common.COMMAND_QOS)
        self.create_subscription(ModelProfile, common.MODEL_PROFILES_TOPIC, self.on_profile, common.LATCHED_READER_QOS)
        self.create_subscription(InferenceStats, common.INFERENCE_STATS_TOPIC, self.on_stats, common.STATS_QOS)
        self.create_subscription(HardwareStatus, common.HARDWARE_STATUS_TOPIC, self.on_hardware, common.STATUS_QOS)
        self.period = period
        self.control_due = time.monotonic() + period
        self.control_lateness_s = 0.0
        self.create_timer(period, self.on_control_timer)
        self.get_logger().info(f"policy {policy_name!r} on {platform}, control period {period:g} s")

    # -- inputs ----------------------------------------------------------------------------------
    def on_volatile_target_publisher(self, event: QoSRequestedIncompatibleQoSInfo) -> None:
        # Expected, not a fault: a volatile publisher (plain `ros2 topic pub`) cannot serve the
        # transient-local reader, and the volatile reader beside it receives its targets. Handling
        # the event replaces rclpy's default "No messages will be received" warning.
        self.get_logger().debug(
            f"a volatile publisher of {common.TARGETS_TOPIC} is read by the volatile subscription "
            f"({event.total_count} so far)")

    @property
    def goals(self) -> dict[str, PerformanceGoal]:
        return self.book.goals

    def on_target(self, msg: PerformanceTarget) -> None:
        now = time.monotonic()
        stamp = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        if msg.clear:
            verdict = self.book.withdraw(msg.app_id, now, stamp)
        else:
            verdict = self.book.submit(goal_from_message(msg), self.profiles.keys(), now, stamp)
        if verdict is None:  # the same target through the other subscription
            return
        if verdict.state in (TargetState.ACCEPTED, TargetState.PARKED):
            self.target_messages[msg.app_id] = msg
        self.answer(verdict, msg.header.stamp)
        if verdict.changed and verdict.state in (TargetState.ACCEPTED, TargetState.WITHDRAWN):
            self.control_step()  # act on a changed target now, not at the next tick

    def answer(self, verdict: Verdict, target_stamp=None) -> None:
        """Publish the verdict for its sender and log it: one line per rejection (rate-limited),
        INFO only where the targets changed."""
        if verdict.state in (TargetState.WITHDRAWN, TargetState.EXPIRED):
            self.target_messages.pop(verdict.app, None)
        status = TargetStatus(app_id=shorten(verdict.app, MAX_NAME_CHARS),
                              model_id=shorten(verdict.model, MAX_NAME_CHARS),
                              state=int(verdict.state), reason=verdict.reason)
        status.header.stamp = self.get_clock().now().to_msg()
        if target_stamp is not None:
            status.target_stamp = target_stamp
        self.verdict_pub.publish(status)
        state = verdict.state.name.lower()
        text = f"target of app {shorten(verdict.app)!r} {state}: {verdict.reason}"
        now = time.monotonic()
        if verdict.state == TargetState.REJECTED:
            line = self.rejection_log.line(text, now)
            if line:
                self.get_logger().warning(line)
        elif verdict.changed:
            line = self.change_log.line(text, now)
            if line:
                # one call site per severity: rclpy refuses a call site that changes severity
                if verdict.state in (TargetState.ACCEPTED, TargetState.WITHDRAWN):
                    self.get_logger().info(line)
                else:
                    self.get_logger().warning(line)
        else:
            self.get_logger().debug(text)

    def on_profile(self, msg: ModelProfile) -> None:
        try:
            profile = profile_from_message(msg)
        except ProfileError as exc:
            self.get_logger().warning(f"ignored profile of model {shorten(msg.model_id)!r}: {exc}",
                                      throttle_duration_sec=5.0)
            return
        known = msg.model_id in self.profiles
        self.profiles[msg.model_id] = profile
        self.active[msg.model_id] = msg.active_subnet
        if msg.cpu_cluster:
            self.clusters[msg.model_id] = msg.cpu_cluster
        if not known:
            self.get_logger().info(f"model {msg.model_id!r} announced with sub-networks {profile.ids}")
        for verdict in self.book.model_announced(msg.model_id):
            self.answer(verdict)

    def on_stats(self, msg: InferenceStats) -> None:
        self.latency_sums[msg.model_id].append(float(msg.latency_ms))
        self.energy_sums[msg.model_id].append(float(msg.energy_mj))
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

    def measure_lateness(self) -> None:
        """How late this step runs after its due time; a step later than a whole period means
        ticks were skipped (as rcl timers do), and the next due time moves past now."""
        now = time.monotonic()
        self.control_lateness_s = max(0.0, now - self.control_due)
        self.control_due += self.period * (1 + int(self.control_lateness_s // self.period))

    def on_control_timer(self) -> None:
        self.measure_lateness()
        self.control_step()

    def control_step(self) -> None:
        for verdict in self.book.expire(time.monotonic()):
            self.answer(verdict)
        if not self.goals:
            self.release_clocks()
            self.publish_status(Decision({}, None), {})
            return
        observation = self.observe()
        decision = self.policy.decide(dict(self.goals), dict(self.profiles), observation)
        decision = self.leave_idle_clusters(decision, observation)
        self.command_subnets(decision)
        self.command_clocks(decision)
        unmet = unmet_goals(self.goals, decision.subnets, self.profiles, observation.latency_ms,
                            observation.power_w, self.energy_per_frame())
        self.publish_status(decision, unmet)
        if dict(decision.given_up) != self.last_given_up:
            for app, why in decision.given_up.items():
                self.get_logger().warning(f"gave up the target of app {app!r}: {why}")
            self.last_given_up = dict(decision.given_up)
        for app, why in unmet.items():
            line = None if app in self.last_unmet else self.unmet_log.line(
                f"target of app {app!r} not met: {why}", time.monotonic())
            if line:
                self.get_logger().warning(line)
        self.last_unmet = unmet

    def energy_per_frame(self) -> dict[str, float]:
        """model -> mean energy per frame since the last period (the inference nodes' reports)"""
        means = {model: sum(v) / len(v) for model, v in self.energy_sums.items() if v}
        self.energy_sums.clear()
        return means

    def leave_idle_clusters(self, decision: Decision, observation: Observation) -> Decision:
        """Pin only the CPU clusters that run a model; the rest stay with their governor."""
        in_use = getattr(self.policy, "clusters_in_use", None)
        clocks = decision.clocks
        if in_use is None or clocks is None or clocks.use_default_governors:
            return decision
        # the apps decide() maps to clusters: those whose model is announced
        served = {app: g for app, g in self.goals.items() if g.model in self.profiles}
        used = in_use(served, observation)
        pinned = {n: f for n, f in clocks.cpu_khz.items() if n in used}
        kept = dataclasses.replace(clocks, cpu_khz=pinned)
        return dataclasses.replace(decision, clocks=kept)

    def release_clocks(self) -> None:
        """With no target left, hand the clocks back to the governors once, rather than leaving
        them pinned until the DVFS node's watchdog notices the silence."""
        if self.last_clocks is None or self.last_clocks.use_default_governors:
            return
        msg = dvfs_message(ClockSetting.default_governors(), "no targets in force")
        msg.header.stamp = self.get_clock().now().to_msg()
        self.dvfs_pub.publish(msg)
        self.last_clocks = ClockSetting.default_governors()
        self.commanded.clear()
        self.get_logger().info("no targets in force: clocks back to the board's governors")

    def publish_status(self, decision: Decision, unmet: dict[str, str]) -> None:
        msg = ManagerStatus(policy=self.policy_name,
                            predicted_power_w=float(decision.predicted_power_w),
                            control_lateness_ms=1e3 * self.control_lateness_s)
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.targets = [self.target_messages[app] for app in sorted(self.goals)
                       if app in self.target_messages]
        msg.parked_targets = [self.target_messages[app] for app in sorted(self.book.parked)
                              if app in self.target_messages]
        msg.models = list(decision.subnets)
        msg.subnets = [decision.subnets[m] for m in msg.models]
        msg.reasons = [decision.reasons.get(m, "") for m in msg.models]
        msg.given_up_apps = list(decision.given_up)
        msg.given_up_reasons = [decision.given_up[a] for a in msg.given_up_apps]
        msg.unmet_apps = list(unmet)
        msg.unmet_reasons = [unmet[a] for a in msg.unmet_apps]
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
