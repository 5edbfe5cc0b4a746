# SPDX-License-Identifier: Apache-2.0
"""Resource manager node: turns performance targets and live measurements into sub-network and
DVFS commands.

The state and every decision live in dyndnn_ros.manager_state (no ROS there); this node converts
messages to and from it, runs the control timer and publishes: verdicts on targets
(TargetStatus), SubnetSwitch commands where a model must change, a DvfsCommand each period (the
DVFS node's watchdog restores the clocks if the manager goes silent), ManagerStatus and
/diagnostics. Targets are read transient-local, so targets published before it started still
arrive. The control period, the parked-target timeout and the policy's knobs change with
`ros2 param set`.
"""
from __future__ import annotations

import functools
import time

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.time import Time

try:
    from rclpy.event_handler import QoSRequestedIncompatibleQoSInfo, SubscriptionEventCallbacks
except ImportError:  # Humble (JetPack 6) names the module qos_event
    from rclpy.qos_event import QoSRequestedIncompatibleQoSInfo, SubscriptionEventCallbacks

from dyndnn_ros.log_limits import RateLimiter, shorten
from dyndnn_ros.manager_state import (
    POLICY_KNOBS,
    BoardReading,
    ControlClock,
    EarlyStepGate,
    ManagerState,
    Step,
    TargetEntry,
    check_period,
    policy_knobs,
)
from dyndnn_ros.msg import (
    AppReason,
    CpuClock,
    DvfsCommand,
    HardwareStatus,
    InferenceStats,
    ManagerStatus,
    ModelProfile,
    PerformanceTarget,
    SubnetChoice,
    SubnetSwitch,
    TargetStatus,
)
from dyndnn_ros.nodes import common
from dyndnn_ros.nodes.diagnostic_messages import diagnostic_array
from dyndnn_ros.nodes.profile_messages import profile_from_message
from dyndnn_ros.hardware.detect import resolve_platform
from dyndnn_ros.policies import ClockSetting, PerformanceGoal, create_policy
from dyndnn_ros.profiles import ProfileError
from dyndnn_ros.target_book import MAX_NAME_CHARS, TargetState, Verdict

EARLY_STEP_GAP = 0.2
"""steps for changed targets come at most every 0.2 control periods (100 ms at 0.5 s)"""


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


def target_message(entry: TargetEntry) -> PerformanceTarget:
    """The target as its application sent it (fields and header stamp)."""
    goal = entry.goal
    msg = PerformanceTarget(app_id=goal.app, model_id=goal.model,
                            max_latency_ms=goal.max_latency_ms, min_accuracy=goal.min_accuracy,
                            max_power_w=goal.max_power_w, max_energy_mj=goal.max_energy_mj,
                            priority=goal.priority)
    msg.header.stamp.sec, msg.header.stamp.nanosec = entry.stamp
    return msg


def board_from_status(msg: HardwareStatus) -> BoardReading:
    return BoardReading(
        clocks=ClockSetting(
            cpu_khz={c.name: int(c.frequency_khz) for c in msg.cpu_clusters},
            gpu_hz=int(msg.gpu_frequency_hz),
            emc_hz=int(msg.emc_frequency_hz),
        ),
        cpu_util={c.name: float(c.utilization) for c in msg.cpu_clusters},
        gpu_util=float(msg.gpu_utilization),
        emc_util=float(msg.emc_utilization),
        power_w=float(msg.total_power_w),
    )


def dvfs_message(clocks: ClockSetting, reason: str) -> DvfsCommand:
    msg = DvfsCommand(reason=reason)
    if clocks.use_default_governors:
        msg.mode = DvfsCommand.MODE_RESTORE
        return msg
    msg.mode = DvfsCommand.MODE_SET
    msg.cpu_clocks = [CpuClock(cluster=name, frequency_khz=int(khz))
                      for name, khz in clocks.cpu_khz.items() if khz]
    msg.gpu_frequency_hz = int(clocks.gpu_hz)
    msg.emc_frequency_hz = int(clocks.emc_hz)
    return msg


class ResourceManagerNode(common.DyndnnNode):
    def __init__(self) -> None:
        super().__init__("resource_manager_node")
        policy_name = common.declare(
            self,
            "policy",
            "hierarchical",
            "Decision policy: hierarchical (sub-network + DVFS), subnet_only, dvfs_only or static",
        )
        platform = common.declare(self, "platform", "auto", "Board description the policy "
                                  "predicts clocks and power with "
                                  "(auto: detected from the board under sysfs_root)")
        sysfs_root = common.declare(self, "sysfs_root", "/",
                                    "Where the board's /proc and /etc live, for platform auto")
        self.platform = resolve_platform(platform, sysfs_root).name
        period = float(common.declare(self, "control_period_s", 0.5, "Control period [s]",
                                      read_only=False, limits=(0.01, 60.0)))
        parked_timeout = float(common.declare(
            self, "parked_target_timeout_s", 300.0,
            "A target for a model no inference node has announced is dropped after this long [s]; "
            "0 = never", read_only=False, limits=(0.0, 86400.0)))
        board_stale = float(common.declare(
            self, "board_status_stale_s", 2.0, "Diagnostics warn when no HardwareStatus arrived "
            "for this long [s]", read_only=False, limits=(0.1, 3600.0)))
        self.policy_name = policy_name
        policy = create_policy(policy_name, platform=self.platform, runtime_only=True)
        self.knobs = {
            name: common.declare(self, name, default, POLICY_KNOBS[name][1], read_only=False,
                                 limits=POLICY_KNOBS[name][0])
            for name, default in policy_knobs(policy).items()}
        if self.knobs != policy_knobs(policy):
            policy = self.build_policy(self.knobs)
        self.state = ManagerState(policy, parked_timeout, board_stale)
        self.announced_cluster: dict = {}
        """model -> the cpu_cluster it last announced (an unknown one is logged when it changes)"""
        self.clock = ControlClock(period, time.monotonic())
        self.rejection_log = RateLimiter(burst=5, interval_s=5.0)
        self.change_log = RateLimiter(burst=10, interval_s=5.0)
        self.unmet_log = RateLimiter(burst=5, interval_s=10.0)
        self.given_up_log: dict[str, RateLimiter] = {}
        self.started = self.get_clock().now()

        self.switch_pub = self.create_publisher(
            SubnetSwitch, common.SUBNET_SWITCH_TOPIC, common.COMMAND_QOS
        )
        self.dvfs_pub = self.create_publisher(
            DvfsCommand, common.DVFS_COMMAND_TOPIC, common.COMMAND_QOS
        )
        self.status_pub = self.create_publisher(
            ManagerStatus, common.MANAGER_STATUS_TOPIC, common.MANAGER_STATUS_QOS
        )
        self.verdict_pub = self.create_publisher(TargetStatus, common.TARGET_STATUS_TOPIC,
                                                 common.TARGET_STATUS_QOS)
        self.diag_pub = self.create_publisher(DiagnosticArray, common.DIAGNOSTICS_TOPIC,
                                              common.STATUS_QOS)
        # Latched targets from applications that started first need a transient-local reader; a
        # volatile reader as well accepts plain `ros2 topic pub` (volatile by default), which the
        # transient-local one would refuse as incompatible QoS. A target seen twice is answered
        # once.
        self.create_subscription(PerformanceTarget, common.TARGETS_TOPIC, self.on_target,
                                 common.LATCHED_READER_QOS,
                                 event_callbacks=SubscriptionEventCallbacks(
                                     incompatible_qos=self.on_volatile_target_publisher))
        self.create_subscription(
            PerformanceTarget, common.TARGETS_TOPIC, self.on_target, common.COMMAND_QOS
        )
        self.create_subscription(
            ModelProfile, common.MODEL_PROFILES_TOPIC, self.on_profile, common.LATCHED_READER_QOS
        )
        self.create_subscription(
            InferenceStats, common.INFERENCE_STATS_TOPIC, self.on_stats, common.STATS_QOS
        )
        self.create_subscription(
            HardwareStatus, common.HARDWARE_STATUS_TOPIC, self.on_hardware, common.STATUS_QOS
        )
        self.timer = self.create_timer(period, self.on_control_timer)
        self.early_steps = EarlyStepGate(period * EARLY_STEP_GAP)
        self.early_timer = None
        """the one-shot timer of an early step that waits out the gap, while one waits"""
        common.on_parameter_change(self, {
            "control_period_s": self.change_period,
            "parked_target_timeout_s": self.change_parked_timeout,
            "board_status_stale_s": self.change_board_stale,
            **{name: functools.partial(self.change_knob, name) for name in self.knobs},
        })
        self.get_logger().info(
            f"policy {policy_name!r} on {self.platform}, control period {period:g} s")

    # -- parameters ------------------------------------------------------------------------------
    def build_policy(self, knobs: dict):
        """Raises PolicyError (a ValueError) with the reason for a knob the policy refuses."""
        return create_policy(self.policy_name, platform=self.platform, runtime_only=True, **knobs)

    def change_period(self, period: float):
        check_period(period)

        def apply() -> None:
            self.destroy_timer(self.timer)
            self.timer = self.create_timer(period, self.on_control_timer)
            self.clock.restart(period, time.monotonic())
            self.early_steps.min_gap_s = period * EARLY_STEP_GAP
        return apply

    def change_parked_timeout(self, seconds: float):
        return lambda: self.state.set_parked_timeout(seconds)  # the range keeps it valid

    def change_board_stale(self, seconds: float):
        return lambda: setattr(self.state, "board_stale_s", seconds)

    def change_knob(self, name: str, value):
        """A new policy built with the knob (it checks the value); its filters start afresh."""
        knobs = {**self.knobs, name: value}
        policy = self.build_policy(knobs)

        def apply() -> None:
            self.knobs = knobs
            self.state.policy = policy
        return apply

    # -- inputs ----------------------------------------------------------------------------------
    def on_volatile_target_publisher(self, event: QoSRequestedIncompatibleQoSInfo) -> None:
        # Expected, not a fault: a volatile publisher (plain `ros2 topic pub`) cannot serve the
        # transient-local reader, and the volatile reader beside it receives its targets. Handling
        # the event replaces rclpy's default "No messages will be received" warning.
        self.get_logger().debug(
            f"a volatile publisher of {common.TARGETS_TOPIC} is read by the volatile subscription "
            f"({event.total_count} so far)")

    def on_target(self, msg: PerformanceTarget) -> None:
        now = time.monotonic()
        stamp = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        if msg.clear:
            verdict = self.state.withdraw(msg.app_id, now, stamp)
        else:
            verdict = self.state.submit(goal_from_message(msg), now, stamp)
        if verdict is None:  # the same target through the other subscription
            return
        self.answer(verdict, msg.header.stamp)
        if self.state.acts_now(verdict):
            self.step_early(now)

    def step_early(self, now: float) -> None:
        """Decide now (or once the gap since the last step allows): the targets in force
        changed."""
        delay = self.early_steps.request(now)
        if delay == 0.0:
            self.control_step()
        elif delay is not None:
            # rclpy's timers repeat: one left behind (a tick stepped before it fired) would
            # step every `delay` seconds for good
            self.cancel_early_step()
            self.early_timer = self.create_timer(delay, self.on_early_step)

    def cancel_early_step(self) -> None:
        if self.early_timer is not None:
            self.destroy_timer(self.early_timer)
            self.early_timer = None

    def on_early_step(self) -> None:
        self.cancel_early_step()  # one-shot
        if self.early_steps.pending:
            self.control_step()

    def answer(self, verdict: Verdict, target_stamp=None) -> None:
        """Publish the verdict for its sender and log it: one line per rejection (rate-limited),
        INFO only where the targets changed."""
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
        new, verdicts = self.state.model_announced(msg.model_id, profile, msg.active_subnet,
                                                   msg.cpu_cluster)
        refused = self.state.refused.get(msg.model_id)
        if new and refused:
            self.get_logger().warning(refused)
        elif new:
            self.get_logger().info(
                f"model {msg.model_id!r} announced with sub-networks {profile.ids}"
            )
        if not refused and self.announced_cluster.get(msg.model_id) != msg.cpu_cluster:
            unknown = self.state.unknown_cluster(msg.cpu_cluster)
            if unknown:
                self.get_logger().warning(f"model {msg.model_id!r}: {unknown}")
        self.announced_cluster[msg.model_id] = msg.cpu_cluster
        for verdict in verdicts:
            self.answer(verdict)
        if any(self.state.acts_now(v) for v in verdicts):  # parked targets apply, or dropped
            self.step_early(time.monotonic())

    def since_start(self, stamp) -> float:
        """A message's stamp (its sender's time; now where unstamped) on the control steps'
        clock."""
        when = Time.from_msg(stamp) if stamp.sec or stamp.nanosec else self.get_clock().now()
        return (when - self.started).nanoseconds / 1e9

    def on_stats(self, msg: InferenceStats) -> None:
        # stamped when the frame finished: frame rates and which clocks it ran at come from it
        self.state.record_stats(msg.model_id, float(msg.latency_ms), float(msg.energy_mj),
                                msg.active_subnet, float(msg.input_fps),
                                float(msg.host_overhead_ms), int(msg.threads),
                                finished_s=self.since_start(msg.header.stamp))

    def on_hardware(self, msg: HardwareStatus) -> None:
        self.state.record_board(board_from_status(msg), time.monotonic(),
                                read_s=self.since_start(msg.header.stamp))

    # -- decisions -------------------------------------------------------------------------------
    def on_control_timer(self) -> None:
        self.clock.tick(time.monotonic())
        self.control_step()
        self.publish_diagnostics()  # once a period, not on every target change as well

    def control_step(self) -> None:
        self.early_steps.stepped(time.monotonic())
        time_s = (self.get_clock().now() - self.started).nanoseconds / 1e9
        step = self.state.control_step(time.monotonic(), time_s)
        for verdict in step.expired:
            self.answer(verdict)
        for switch in step.switches:
            msg = SubnetSwitch(model_id=switch.model, subnet_id=switch.subnet,
                               reason=switch.reason, threads=switch.threads)
            msg.header.stamp = self.get_clock().now().to_msg()
            self.switch_pub.publish(msg)
            if switch.log:
                self.get_logger().info(switch.log)
        if step.clocks is not None:
            msg = dvfs_message(step.clocks.clocks, step.clocks.reason)
            msg.header.stamp = self.get_clock().now().to_msg()
            self.dvfs_pub.publish(msg)
            if step.clocks.log:
                self.get_logger().info(step.clocks.log)
        self.publish_status(step)
        given_up = [(app, f"gave up the target of app {app!r}: {why}")
                    for app, why in step.newly_given_up.items()]
        given_up += [(app, f"target of app {app!r} still given up: {why}")
                     for app, why in step.given_up_revised.items()]
        in_force = {entry.goal.app for entry in step.targets}
        self.given_up_log = {a: v for a, v in self.given_up_log.items() if a in in_force}
        for app, text in given_up:  # per app, so one app's flapping hides no other's
            limiter = self.given_up_log.setdefault(app, RateLimiter(burst=3, interval_s=10.0))
            line = limiter.line(text, time.monotonic())
            if line:
                self.get_logger().warning(line)
        for app, why in step.newly_unmet.items():
            line = self.unmet_log.line(f"target of app {app!r} not met: {why}", time.monotonic())
            if line:
                self.get_logger().warning(line)

    def publish_status(self, step: Step) -> None:
        decision = step.decision
        msg = ManagerStatus(policy=self.policy_name,
                            predicted_power_w=float(decision.predicted_power_w),
                            control_lateness_ms=1e3 * self.clock.lateness_s)
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.targets = [target_message(entry) for entry in step.targets]
        msg.parked_targets = [target_message(entry) for entry in step.parked]
        msg.choices = [SubnetChoice(model_id=model, subnet_id=subnet,
                                    reason=decision.reasons.get(model, ""))
                       for model, subnet in decision.subnets.items()]
        msg.given_up = [AppReason(app_id=app, reason=why)
                        for app, why in decision.given_up.items()]
        msg.unmet = [AppReason(app_id=app, reason=why) for app, why in step.unmet.items()]
        self.status_pub.publish(msg)

    def publish_diagnostics(self) -> None:
        reports = self.state.diagnostics(time.monotonic(), self.clock.period_s,
                                         self.clock.lateness_s)
        self.diag_pub.publish(diagnostic_array(reports, self.get_name(),
                                               self.get_clock().now().to_msg()))


def main() -> None:
    common.main_entry(ResourceManagerNode)
