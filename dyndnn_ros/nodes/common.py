# SPDX-License-Identifier: Apache-2.0
"""What every dyndnn node shares: topic names, QoS profiles, parameter declaration, and a clean
main()."""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
import sys
import threading
import traceback
from typing import Any, Callable

import rclpy
from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
from rclpy.exceptions import ParameterException
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.signals import SignalHandlerOptions
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)

# Relative names, so a namespace or a remapping in a launch file moves them all.
TARGETS_TOPIC = "dyndnn/targets"
SUBNET_SWITCH_TOPIC = "dyndnn/subnet_switch"
DVFS_COMMAND_TOPIC = "dyndnn/dvfs/command"
DVFS_APPLIED_TOPIC = "dyndnn/dvfs/applied"
HARDWARE_STATUS_TOPIC = "dyndnn/hardware_status"
INFERENCE_STATS_TOPIC = "dyndnn/inference_stats"
MODEL_PROFILES_TOPIC = "dyndnn/model_profiles"
MANAGER_STATUS_TOPIC = "dyndnn/manager_status"
TARGET_STATUS_TOPIC = "dyndnn/target_status"
DIAGNOSTICS_TOPIC = "/diagnostics"
IMAGE_TOPIC = "image_raw"
RESULT_TOPIC = "~/result"  # private: one per inference node, e.g. /inference_node/result

# Targets and model announcements are state, not events: a node that starts later must still get
# the latest one from each publisher, so they are reliable and transient-local.
LATCHED_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)
# Readers of latched topics hear several publishers (one per application or model) whose samples
# can arrive together; a depth-1 reader queue would keep only the last of them.
LATCHED_READER_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=100,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)
TARGETS_QOS = LATCHED_QOS
MODEL_PROFILES_QOS = LATCHED_QOS
DVFS_APPLIED_QOS = LATCHED_QOS
MANAGER_STATUS_QOS = LATCHED_QOS
# One verdict per target, for every app: deep, so a sender finds its own answer among others'.
TARGET_STATUS_QOS = LATCHED_READER_QOS
# Commands must not be lost, and a short queue is enough: each one supersedes the one before.
COMMAND_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE
)
# Per-frame and periodic reports: reliable so tools and the manager see every one that fits the
# queue.
STATS_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=50, reliability=ReliabilityPolicy.RELIABLE
)
STATUS_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=5, reliability=ReliabilityPolicy.RELIABLE
)
# Camera frames: best effort and newest only, as camera drivers publish them (sensor-data QoS).
IMAGE_QOS = qos_profile_sensor_data


def image_qos(reliability: str) -> QoSProfile:
    """Subscriber QoS for camera frames: keep only the newest; reliable for drivers that require
    it."""
    choices = {
        "best_effort": ReliabilityPolicy.BEST_EFFORT,
        "reliable": ReliabilityPolicy.RELIABLE,
    }
    if reliability not in choices:
        raise ValueError(
            f"image_reliability must be one of {sorted(choices)}, got {reliability!r}"
        )
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=choices[reliability])


def declare(node: Node, name: str, default: Any, description: str, read_only: bool = True,
            limits: tuple | None = None) -> Any:
    """Declare a parameter with a description (`ros2 param describe` shows it); return its value.

    `limits`: (lowest, highest) allowed, both included, for a number: shown by `ros2 param
    describe`, enforced at start and by `ros2 param set`. `read_only=False`: the node applies a
    change (see `on_parameter_change`)."""
    descriptor = ParameterDescriptor(description=description, read_only=read_only)
    if limits is not None:
        low, high = limits
        if isinstance(default, int):
            descriptor.integer_range = [IntegerRange(from_value=low, to_value=high, step=0)]
        else:
            descriptor.floating_point_range = [
                FloatingPointRange(from_value=float(low), to_value=float(high), step=0.0)]
    try:
        node.declare_parameter(name, default, descriptor)
    except ParameterException as exc:  # out of range or of the wrong type: a configuration error
        raise ValueError(f"parameter {name}: {exc}") from exc
    return node.get_parameter(name).value


ParameterApplier = Callable[[Any], Callable[[], None]]
"""checks a new value (raises ValueError with the reason) and returns what applies it"""


def on_parameter_change(node: Node, appliers: dict[str, ParameterApplier]) -> None:
    """Apply `ros2 param set` to the parameters named in `appliers`: every value of the request is
    checked first, and a refused one changes nothing, its reason going back to the caller. Ranges
    and read-only parameters are enforced by rclpy before this runs."""

    def apply(parameters: list[Parameter]) -> SetParametersResult:
        pending = []
        for parameter in parameters:
            if parameter.name in appliers:
                try:
                    pending.append(appliers[parameter.name](parameter.value))
                except ValueError as exc:
                    return SetParametersResult(successful=False, reason=str(exc))
        for change in pending:
            change()
        for parameter in parameters:
            if parameter.name in appliers:
                node.get_logger().info(f"parameter {parameter.name} set to {parameter.value!r}")
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(apply)


class DyndnnNode(Node):
    """Base for the package's nodes: `on_shutdown` runs once on Ctrl-C, SIGTERM or normal exit."""

    def on_shutdown(self) -> None:
        """Put things back (clocks, files) before the process ends; logging and publishing still
        work."""

    def left_running(self) -> list[str]:
        """The node's own threads still running after on_shutdown. The node is then not
        destroyed (destroying a publisher another thread is using can hang the DDS layer, as in
        ros2/rclpy#456) and the process exits around them."""
        return []


def run_node(factory: Callable[[], DyndnnNode], args: list[str] | None = None) -> int:
    """init, construct, spin, clean up, shut down; Ctrl-C and SIGTERM are normal exits.

    rclpy's own signal handlers would shut the context down before `on_shutdown` runs, so a node
    could no longer log or publish while it restores clocks; here a signal only ends the spin loop.
    """
    faulthandler.register(
        signal.SIGUSR1, all_threads=True
    )  # `kill -USR1 <pid>` shows where a node is stuck
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    node: DyndnnNode | None = None
    code = 0
    stuck: list[str] = []
    try:
        try:
            node = factory()
        except (ValueError, RuntimeError, OSError, KeyError) as exc:
            # Bad parameters, files or devices: one clear line is what the user needs. Only
            # construction is read this way; a bug in a callback keeps its traceback below.
            rclpy.logging.get_logger("dyndnn").fatal(f"{type(exc).__name__}: {exc}")
            return 1
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        while not stop.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=0.1)  # bounded, so a signal is seen within 0.1 s
    except Exception:  # a bug: keep the traceback
        traceback.print_exc()
        code = 1
    finally:
        if node is not None:
            node.on_shutdown()
            stuck = node.left_running()
            if stuck:
                node.get_logger().error(
                    f"{', '.join(stuck)} did not stop: leaving without destroying the node;"
                    " every thread's stack follows on stderr"
                )
                faulthandler.dump_traceback(all_threads=True)
                code = 1
            else:
                node.destroy_node()
        if not stuck:
            rclpy.try_shutdown()
    return code


def main_entry(factory: Callable[[], DyndnnNode]) -> None:
    code = run_node(factory, sys.argv)
    # The node has shut down (clocks restored, context closed): leave now. Python's finalization
    # would then tear torch down for about 1 s here, seconds on a loaded board, with the signal
    # handlers back at their defaults: a launcher's SIGTERM escalation in that window killed
    # nodes that had stopped cleanly (ros2 launch escalates after 5 s).
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
