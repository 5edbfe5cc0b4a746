# SPDX-License-Identifier: Apache-2.0
"""A small Python API over the dyndnn topics, for scripts, tests and the `dyndnn` command.

    with DyndnnClient() as client:
        client.set_target("tracker", "classifier", max_latency_ms=5.0, min_accuracy=0.9)
        stats = client.wait_for_stats("classifier", lambda s: s.active_subnet == "g4", timeout=10)
"""
from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from typing import Callable

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.publisher import Publisher

from dyndnn_ros.log_limits import shorten
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
from dyndnn_ros.target_book import MAX_NAME_CHARS


class BackgroundSpinner:
    """Spins a node in a daemon thread, so its callbacks run while a script waits or sleeps."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(node)
        self._stop = threading.Event()
        self._closed = False
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _spin(self) -> None:
        # spin_once with a bound, not spin(): a stop is seen within 0.1 s, and the spinning
        # thread ends by itself rather than through Executor.shutdown from another thread
        while not self._stop.is_set():
            try:
                self.executor.spin_once(timeout_sec=0.1)
            except Exception:  # noqa: BLE001  (the context shut down under us: stop spinning)
                return

    def close(self, timeout_s: float = 10.0) -> bool:
        """Stop spinning, then destroy the node; False (node left alone) when the spinning
        thread did not end within `timeout_s`, or when called from a callback on it. Destroying
        a node another thread still spins segfaults in rclpy (ros2/rclpy#663), the likely end of
        a `dyndnn target --keep-alive` that died of SIGSEGV on SIGTERM in CI: the 2 s join it
        had then can run out on a loaded machine."""
        if self._closed:
            return True
        self._stop.set()
        if threading.current_thread() is not self.thread:
            self.thread.join(timeout_s)
        if self.thread.is_alive():
            return False
        self.executor.shutdown()
        self.node.destroy_node()
        self._closed = True
        return True


class DyndnnClient:
    """Publishes targets and keeps the latest of everything the system reports, spinning in a
    thread."""

    def __init__(self, node_name: str = "dyndnn_client", history: int = 500):
        self._owns_context = not rclpy.ok()
        if self._owns_context:
            rclpy.init()
        self.node = Node(node_name)
        self.lock = threading.Lock()
        self.targets: dict[str, PerformanceTarget] = {}
        self.profiles: dict[str, ModelProfile] = {}
        self.stats: dict[str, deque[InferenceStats]] = defaultdict(lambda: deque(maxlen=history))
        self.switches: list[SubnetSwitch] = []
        self.dvfs_commands: list[DvfsCommand] = []
        self.dvfs_applied: list[DvfsCommand] = []
        self.hardware: HardwareStatus | None = None
        self.manager: ManagerStatus | None = None
        self.verdicts: deque[TargetStatus] = deque(maxlen=history)
        self.target_pubs: dict[str, Publisher] = {}
        """app -> its latched target publisher: one per app, as each app publishes its own (a
        latched writer keeps one sample, so one writer for several apps would hand a manager
        that joins later only the last app's target, and could drop one written before the last
        was delivered)"""
        subscriptions = [
            (
                PerformanceTarget,
                common.TARGETS_TOPIC,
                common.LATCHED_READER_QOS,
                lambda m: self._keep(self.targets, m.app_id, m),
            ),
            (
                ModelProfile,
                common.MODEL_PROFILES_TOPIC,
                common.LATCHED_READER_QOS,
                lambda m: self._keep(self.profiles, m.model_id, m),
            ),
            (InferenceStats, common.INFERENCE_STATS_TOPIC, common.STATS_QOS, self._on_stats),
            (
                SubnetSwitch,
                common.SUBNET_SWITCH_TOPIC,
                common.COMMAND_QOS,
                lambda m: self._append(self.switches, m),
            ),
            (
                DvfsCommand,
                common.DVFS_COMMAND_TOPIC,
                common.COMMAND_QOS,
                lambda m: self._append(self.dvfs_commands, m),
            ),
            (
                DvfsCommand,
                common.DVFS_APPLIED_TOPIC,
                common.LATCHED_READER_QOS,
                lambda m: self._append(self.dvfs_applied, m),
            ),
            (HardwareStatus, common.HARDWARE_STATUS_TOPIC, common.STATUS_QOS, self._on_hardware),
            (
                ManagerStatus,
                common.MANAGER_STATUS_TOPIC,
                common.LATCHED_READER_QOS,
                self._on_manager,
            ),
            (
                TargetStatus,
                common.TARGET_STATUS_TOPIC,
                common.TARGET_STATUS_QOS,
                lambda m: self._append(self.verdicts, m),
            ),
        ]
        for msg_type, topic, qos, callback in subscriptions:
            self.node.create_subscription(msg_type, topic, callback, qos)
        self.spinner = BackgroundSpinner(self.node)

    def _keep(self, table: dict, key: str, msg: object) -> None:
        with self.lock:
            table[key] = msg

    def _append(self, items: list, msg: object) -> None:
        with self.lock:
            items.append(msg)

    def _on_stats(self, msg: InferenceStats) -> None:
        with self.lock:
            self.stats[msg.model_id].append(msg)

    def _on_hardware(self, msg: HardwareStatus) -> None:
        with self.lock:
            self.hardware = msg

    def _on_manager(self, msg: ManagerStatus) -> None:
        with self.lock:
            self.manager = msg
            for target in msg.targets:
                self.targets[target.app_id] = target

    # -- actions ---------------------------------------------------------------------------------
    def set_target(
        self,
        app: str,
        model: str,
        max_latency_ms: float = 0.0,
        min_accuracy: float = 0.0,
        max_power_w: float = 0.0,
        max_energy_mj: float = 0.0,
        priority: int = 0,
        wait_for_manager_s: float = 5.0,
        manager_node: str = "resource_manager_node",
        clear: bool = False,
    ) -> TargetStatus | None:
        """Publish a target (latched while this client lives) and wait for the manager's verdict
        on it (TargetStatus: accepted, parked, rejected with its reason, withdrawn); None if no
        manager answered within `wait_for_manager_s`."""
        deadline = time.monotonic() + wait_for_manager_s
        stamp = self.publish_target(app, model, max_latency_ms, min_accuracy, max_power_w,
                                    max_energy_mj, priority, wait_for_manager_s, manager_node,
                                    clear)
        return self.wait_for_verdict(app, stamp, max(0.0, deadline - time.monotonic()))

    def publish_target(
        self,
        app: str,
        model: str,
        max_latency_ms: float = 0.0,
        min_accuracy: float = 0.0,
        max_power_w: float = 0.0,
        max_energy_mj: float = 0.0,
        priority: int = 0,
        wait_for_manager_s: float = 5.0,
        manager_node: str = "resource_manager_node",
        clear: bool = False,
    ):
        """Publish a target without waiting for the verdict (several apps' targets go out
        together); returns its header stamp, for wait_for_verdict."""
        msg = PerformanceTarget(
            app_id=app,
            model_id=model,
            max_latency_ms=float(max_latency_ms),
            min_accuracy=float(min_accuracy),
            max_power_w=float(max_power_w),
            max_energy_mj=float(max_energy_mj),
            priority=int(priority),
            clear=clear,
        )
        publisher = self.target_publisher(app, wait_for_manager_s, manager_node)
        msg.header.stamp = self.node.get_clock().now().to_msg()
        publisher.publish(msg)
        return msg.header.stamp

    def target_publisher(self, app: str, wait_for_manager_s: float = 5.0,
                         manager_node: str = "resource_manager_node") -> Publisher:
        """The app's target publisher, once the manager's readers and its verdict topic are
        matched (or `wait_for_manager_s` passed): a new writer is matched a while after it is
        created (seconds on a loaded machine), and its target would wait that long, and the
        verdict could pass unheard. Call it ahead to have targets go out at once."""
        publisher = self.target_pubs.get(app)
        if publisher is None:
            publisher = self.target_pubs[app] = self.node.create_publisher(
                PerformanceTarget, common.TARGETS_TOPIC, common.TARGETS_QOS)
        topic = publisher.topic_name
        self.wait_until(lambda: manager_node in self.other_readers(topic)
                        and publisher.get_subscription_count()
                        >= len(self.node.get_subscriptions_info_by_topic(topic))
                        and self.node.count_publishers(common.TARGET_STATUS_TOPIC) > 0,
                        wait_for_manager_s)
        return publisher

    def clear_target(self, app: str, wait_for_manager_s: float = 5.0) -> TargetStatus | None:
        """Withdraw the app's target; the manager's verdict, or None if none came in time."""
        return self.set_target(app, "", wait_for_manager_s=wait_for_manager_s, clear=True)

    def wait_for_verdict(self, app: str, stamp, timeout: float) -> TargetStatus | None:
        """The manager's answer to the target of `app` sent with header stamp `stamp`."""
        name = shorten(app, MAX_NAME_CHARS)

        def find() -> TargetStatus | None:
            with self.lock:
                return next((v for v in reversed(self.verdicts) if v.app_id == name
                             and (v.target_stamp.sec, v.target_stamp.nanosec)
                             == (stamp.sec, stamp.nanosec)), None)

        self.wait_until(lambda: find() is not None, timeout)
        return find()

    def other_readers(self, topic: str) -> list[str]:
        """Nodes other than this client subscribed to `topic` (this client reads every topic too).
        """
        return [
            i.node_name
            for i in self.node.get_subscriptions_info_by_topic(topic)
            if i.node_name != self.node.get_name()
        ]

    # -- queries ---------------------------------------------------------------------------------
    @staticmethod
    def wait_until(condition: Callable[[], bool], timeout: float, poll: float = 0.05) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return True
            time.sleep(poll)
        return condition()

    def verdicts_seen(self) -> list[TargetStatus]:
        """The manager's verdicts received so far, oldest first: a copy, as the spin thread
        appends to them while a caller iterates."""
        with self.lock:
            return list(self.verdicts)

    def latest_stats(self, model: str) -> InferenceStats | None:
        with self.lock:
            return self.stats[model][-1] if self.stats[model] else None

    def wait_for_stats(
        self, model: str, predicate: Callable[[InferenceStats], bool], timeout: float
    ) -> InferenceStats | None:
        found: list[InferenceStats] = []

        def check() -> bool:
            latest = self.latest_stats(model)
            if latest is not None and predicate(latest):
                found.append(latest)
                return True
            return False

        return found[0] if self.wait_until(check, timeout) else None

    def close(self) -> None:
        if not self.spinner.close():
            self.node.get_logger().warning(
                "the client's spinning thread did not stop: leaving its node undestroyed")
        elif self._owns_context:
            rclpy.try_shutdown()

    def __enter__(self) -> "DyndnnClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
