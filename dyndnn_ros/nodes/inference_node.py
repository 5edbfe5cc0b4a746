# SPDX-License-Identifier: Apache-2.0
"""Inference node: runs the active sub-network of a dynamic DNN on camera frames.

Frames arrive on `image_raw`; only the newest waiting frame is kept, so latency stays bounded when
inference is slower than the camera. A worker thread runs the back end (torch, TensorRT or the
simulated board) and publishes the top-k result and InferenceStats per frame. SubnetSwitch commands
(the sub-network, and a CPU model's thread count) are validated and applied between frames. The
sub-networks and their profiles are announced on a latched topic for the resource manager.

Each frame's cycle on the worker is its inference plus the node's own work (converting the image,
publishing the results); the stats report that host overhead, measured and smoothed, because it
sets how many frames the model runs and so the load the manager must predict.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Optional

import numpy as np
from sensor_msgs.msg import Image

from dyndnn_ros.backends import BackendError, FrameResult, create_backend
from dyndnn_ros.imaging import (
    DEFAULT_MAX_IMAGE_BYTES,
    ImageFormatError,
    check_image_header,
    image_to_array,
    to_model_input,
)
from dyndnn_ros.msg import (ClassScore, HardwareStatus, InferenceResult, InferenceStats,
                             ModelProfile, SubnetSwitch)
from dyndnn_ros.nodes import common
from dyndnn_ros.nodes.profile_messages import profile_message
from dyndnn_ros.profiles import ModelProfile as CoreProfile
from dyndnn_ros.paths import config_path
from dyndnn_ros.hardware.detect import AUTO, resolve_platform
from dyndnn_ros.profiles import load_profile, smallest_subnet
from dyndnn_ros.profiling.profile import profile_model


HOST_OVERHEAD_SMOOTHING = 0.1
"""weight of the newest frame in the smoothed host overhead (about the last 10 frames)"""


def softmax_top_k(scores: np.ndarray, k: int) -> tuple[list[int], list[float]]:
    logits = np.asarray(scores, dtype=np.float64).reshape(-1)
    probabilities = np.exp(logits - logits.max())
    probabilities /= probabilities.sum()
    order = np.argsort(-probabilities)[:k]
    return [int(i) for i in order], [float(probabilities[i]) for i in order]


class InferenceNode(common.DyndnnNode):
    def __init__(self) -> None:
        super().__init__("inference_node")
        self.model_id = common.declare(
            self,
            "model_id",
            "classifier",
            "Name of this model instance; targets and switch commands address it",
        )
        backend_name = common.declare(
            self, "backend", "torch", "Inference back end: torch, tensorrt or simulation"
        )
        model_config = common.declare(
            self,
            "model_config",
            "groupconv_digits",
            "Model config: config/models/<name>.yaml or a path",
        )
        checkpoint = common.declare(
            self,
            "checkpoint",
            "",
            "Checkpoint to load; empty = untrained random weights (logged as such)",
        )
        profile_path = common.declare(
            self, "profile", "", "Sub-network profile file (written by the profiler); empty = "
            "config/profiles/<model_config>.yaml if there is one, else measured at start (torch)")
        device = common.declare(self, "device", "", "torch device, e.g. cpu or cuda:0; empty = "
                                "the back end's default "
                                "(torch: cpu, tensorrt: cuda:0)")
        engine_dir = common.declare(
            self, "engine_dir", "", "tensorrt only: folder of manifest.yaml and the engines, "
            "absolute or relative to the package share folder; empty = engines/<model_config>")
        threads = int(common.declare(self, "threads", 0, "CPU threads for inference; 0 = the "
                                     "library default", limits=(0, 1024)))
        switch_mode = common.declare(
            self,
            "switch_mode",
            "resident",
            "resident: every sub-network materialised once, a switch swaps a pointer; shared: "
            "one weight copy sliced per frame",
        )
        initial = common.declare(
            self, "initial_subnet", "",
            "Sub-network to start with; empty = the smallest (fewest MACs, else parameters, "
            "else latency)")
        self.top_k = int(common.declare(self, "top_k", 3, "Classes reported per frame",
                                        read_only=False, limits=(1, 1000)))
        self.cpu_cluster = common.declare(
            self,
            "cpu_cluster",
            "",
            "CPU cluster (platform name) the inference thread runs on, told to the manager; pin "
            "it with taskset or the launch file",
        )
        sysfs_root = common.declare(
            self,
            "sysfs_root",
            "",
            "simulation back end only: root of the simulated board's sysfs tree (empty: "
            "reference clocks)",
        )
        platform = common.declare(self, "platform", "auto", "simulation back end only: "
                                  "board description "
                                  "(auto: detected from sysfs_root)")
        reliability = common.declare(
            self,
            "image_reliability",
            "best_effort",
            "QoS reliability of the image subscription: best_effort (sensor data) or reliable; "
            "depth is 1 either way",
        )

        self.max_image_bytes = int(common.declare(
            self, "max_image_bytes", DEFAULT_MAX_IMAGE_BYTES,
            "Frames with a larger buffer are rejected (logged, throttled)",
            limits=(1, 2**40)))
        self.profile_frames = int(common.declare(
            self, "profile_frames", 20, "Frames per sub-network when the node measures its own "
            "profile at start-up", limits=(1, 100000)))

        options = dict(model=model_config, checkpoint=checkpoint or None, threads=threads or None,
                       mode=switch_mode)
        options.update({"device": device} if device else {})
        if backend_name == "simulation":
            if platform == AUTO:
                platform = resolve_platform(platform, sysfs_root or "/").name
            options.update(
                sysfs_root=sysfs_root or None,
                platform=platform,
                cluster=self.cpu_cluster,
                instance=self.model_id,
            )
        if backend_name == "tensorrt":
            options.update(engine_dir=engine_dir)
        self.backend_name = backend_name
        profile_file = self.profile_file(profile_path, model_config)
        loaded = load_profile(profile_file) if profile_file else None
        if loaded is None and backend_name == "tensorrt":  # no accuracy can be measured here
            raise ValueError(f"the tensorrt back end needs a profile: set 'profile', or write "
                             f"{config_path('profiles', Path(model_config).stem)} "
                             "(python -m dyndnn_ros.profiling.profile on the robot)")
        self.backend = create_backend(backend_name, **options)
        self.profile = loaded or self.startup_profile()
        missing = set(self.backend.available_subnets()) - set(self.profile.ids)
        if missing:
            raise ValueError(f"profile of {self.profile.model!r} lacks the back end's "
                             f"sub-networks {sorted(missing)}")
        self.subnets = list(self.backend.available_subnets())
        # Whatever the back end starts on (torch: the largest, TensorRT: the last engine,
        # simulation: the fastest), the node starts where its parameter says.
        start = initial or smallest_subnet(self.profile)
        if start not in self.subnets:
            raise ValueError(f"initial_subnet {start!r} is not a sub-network of this model: "
                             f"{self.subnets}")
        self.backend.request_switch(start)

        self.latest_frame: Image | None = None
        self.latest_arrival = 0.0
        """monotonic time the waiting frame arrived"""
        self.frame_lock = threading.Lock()
        self.frame_ready = threading.Event()
        self.stopping = threading.Event()
        self.frames_dropped = 0
        self.frames_rejected = 0
        self.input_fps = 0.0
        self.last_frame_time: float | None = None
        self.board_power_w = 0.0
        self.host_overhead_ms: float | None = None

        self.result_pub = self.create_publisher(InferenceResult, common.RESULT_TOPIC,
                                                common.STATS_QOS)
        self.stats_pub = self.create_publisher(
            InferenceStats, common.INFERENCE_STATS_TOPIC, common.STATS_QOS
        )
        self.profile_pub = self.create_publisher(
            ModelProfile, common.MODEL_PROFILES_TOPIC, common.MODEL_PROFILES_QOS
        )
        self.create_subscription(
            Image, common.IMAGE_TOPIC, self.on_image, common.image_qos(reliability)
        )
        self.create_subscription(
            SubnetSwitch, common.SUBNET_SWITCH_TOPIC, self.on_switch, common.COMMAND_QOS
        )
        self.create_subscription(
            HardwareStatus, common.HARDWARE_STATUS_TOPIC, self.on_hardware, common.STATUS_QOS
        )
        self.announce()
        common.on_parameter_change(self, {"top_k": lambda k: lambda: setattr(self, "top_k", k)})
        self.worker = threading.Thread(
            target=self.run_inference, name=f"{self.model_id}-inference", daemon=True
        )
        self.worker.start()
        self.get_logger().info(
            f"model {self.model_id!r} ({model_config}, {backend_name}, {switch_mode}) ready; "
            f"sub-networks {self.subnets}, active {self.backend.active_subnet!r}"
        )

    def profile_file(self, path: str, model_config: str) -> Optional[Path]:
        """The profile to load: the parameter's, else config/profiles/<model_config>.yaml."""
        if path:
            return Path(path)
        fallback = config_path("profiles", Path(model_config).stem)
        if fallback.is_file():
            self.get_logger().info(f"profile: {fallback}")
            return fallback
        return None

    def startup_profile(self) -> CoreProfile:
        """With no profile file: the back end's own (simulation) or one measured now."""
        own = getattr(self.backend, "profile", None)
        if own is not None:
            return own
        model = getattr(self.backend, "dynamic_model", None)
        if model is None:
            raise ValueError(
                f"the {self.backend_name} back end needs a profile file (parameter 'profile')"
            )
        self.get_logger().info(
            f"no profile file given: measuring each sub-network on {self.profile_frames} frames"
        )
        profile = profile_model(model, iterations=self.profile_frames, warmup=3)
        for s in profile.subnets:
            self.get_logger().info(
                f"  {s.id}: p50 {s.latency_p50_ms:.2f} ms, p95 {s.latency_p95_ms:.2f} ms, "
                f"accuracy {s.accuracy:.1%}"
            )
        return profile

    def announce(self) -> None:
        msg = profile_message(
            self.profile, self.model_id, self.backend_name, self.backend.active_subnet
        )
        msg.cpu_cluster = self.cpu_cluster
        msg.header.stamp = self.get_clock().now().to_msg()
        self.profile_pub.publish(msg)

    def _request_switch(self, subnet_id: str, reason: str) -> bool:
        if subnet_id not in self.subnets:
            self.get_logger().warning(
                f"rejected switch of {self.model_id!r} to unknown sub-network {subnet_id!r} "
                f"({reason}); known: {self.subnets}"
            )
            return False
        self.backend.request_switch(subnet_id)
        return True

    def on_switch(self, msg: SubnetSwitch) -> None:
        if msg.model_id != self.model_id:
            return
        # the manager repeats a command until the stats show it: a pending one is not news
        if msg.threads and msg.threads not in (self.backend.cpu_threads,
                                               self.backend.pending_threads):
            try:
                self.backend.request_threads(int(msg.threads))
            except (BackendError, ValueError) as exc:
                self.get_logger().warning(f"rejected {msg.threads} threads for "
                                          f"{self.model_id!r}: {exc}", throttle_duration_sec=5.0)
            else:
                self.get_logger().info(f"{self.model_id}: {msg.threads} CPU threads from the "
                                       f"next frame: {msg.reason}")
        if msg.subnet_id == self.backend.pending_subnet:
            return  # a repeat of the command waiting for the next frame (a CPU frame takes ~1 s)
        if (
            self._request_switch(msg.subnet_id, msg.reason)
            and msg.subnet_id != self.backend.active_subnet
        ):
            self.get_logger().info(
                f"switch {self.backend.active_subnet} -> {msg.subnet_id} on the next frame: "
                f"{msg.reason}"
            )

    def on_hardware(self, msg: HardwareStatus) -> None:
        self.board_power_w = float(msg.total_power_w)

    def on_image(self, msg: Image) -> None:
        try:  # before it can displace a good waiting frame
            check_image_header(msg.height, msg.width, msg.encoding, msg.step, len(msg.data),
                               self.max_image_bytes)
        except ImageFormatError as exc:
            self.reject_frame(exc)
            return
        now = time.monotonic()
        if self.last_frame_time is not None and now > self.last_frame_time:
            rate = 1.0 / (now - self.last_frame_time)
            self.input_fps = rate if self.input_fps == 0 else 0.9 * self.input_fps + 0.1 * rate
        self.last_frame_time = now
        with self.frame_lock:
            if self.latest_frame is not None:
                self.frames_dropped += 1
            self.latest_frame, self.latest_arrival = msg, now
        self.frame_ready.set()

    def reject_frame(self, why: ImageFormatError) -> None:
        self.frames_rejected += 1
        self.get_logger().warning(f"rejected frame ({self.frames_rejected} so far): {why}",
                                  throttle_duration_sec=5.0)

    def run_inference(self) -> None:
        announced = self.backend.active_subnet
        cycle_end = 0.0
        while not self.stopping.is_set():
            if not self.frame_ready.wait(timeout=0.2):
                continue
            with self.frame_lock:
                msg, self.latest_frame = self.latest_frame, None
                arrival = self.latest_arrival
                self.frame_ready.clear()
            if msg is None:
                continue
            # the frame's cycle starts when the worker could take it: when it arrived, or when
            # the previous cycle ended if it was waiting (the loop and the wake-up are the node's)
            started = max(arrival, cycle_end)
            try:
                frame = image_to_array(msg.data, msg.height, msg.width, msg.encoding, msg.step)
            except ImageFormatError as exc:
                self.reject_frame(exc)
                continue
            try:
                result = self.backend.infer(to_model_input(frame, self.backend.input_shape))
            # one bad frame must not stop the node; the next may well work
            except Exception as exc:
                self.get_logger().error(
                    f"inference failed on a frame: {type(exc).__name__}: {exc}",
                    throttle_duration_sec=5.0,
                )
                continue
            self.publish(msg, result)
            if self.backend.active_subnet != announced:
                announced = self.backend.active_subnet
                self.announce()
            cycle_end = time.monotonic()
            self.note_host_overhead((cycle_end - started) * 1e3 - result.latency_ms)

    def note_host_overhead(self, overhead_ms: float) -> None:
        """The worker's time on this frame beyond the latency the back end reports."""
        overhead_ms = max(0.0, overhead_ms)
        smoothed = self.host_overhead_ms
        self.host_overhead_ms = overhead_ms if smoothed is None else (
            (1 - HOST_OVERHEAD_SMOOTHING) * smoothed + HOST_OVERHEAD_SMOOTHING * overhead_ms)
        self.backend.report_host_overhead(self.host_overhead_ms)
        self.backend.report_input_fps(self.input_fps)

    def publish(self, frame: Image, result: FrameResult) -> None:
        subnet = result.subnet_id
        classes, probabilities = softmax_top_k(result.scores[0], self.top_k)
        scores = [ClassScore(class_id=c, score=p) for c, p in zip(classes, probabilities)]
        top_k = InferenceResult(model_id=self.model_id, subnet_id=subnet, top_k=scores)
        top_k.header = frame.header
        self.result_pub.publish(top_k)
        stats = InferenceStats(
            model_id=self.model_id, active_subnet=subnet, backend=self.backend_name
        )
        stats.header.stamp = self.get_clock().now().to_msg()
        stats.frame_stamp = frame.header.stamp
        stats.latency_ms = float(result.latency_ms)
        energy = getattr(self.backend, "last_energy_mj", None)
        # W x ms = mJ: with no modelled energy, estimate it from the board's measured power.
        stats.energy_mj = float(
            energy if energy is not None else self.board_power_w * stats.latency_ms
        )
        stats.accuracy = float(self.profile.subnet(subnet).accuracy)
        stats.frames_dropped = self.frames_dropped
        stats.input_fps = float(self.input_fps)
        stats.host_overhead_ms = float(self.host_overhead_ms or 0.0)
        stats.threads = int(self.backend.cpu_threads)
        self.stats_pub.publish(stats)

    def on_shutdown(self) -> None:
        self.stopping.set()
        self.worker.join(timeout=5.0)

    def left_running(self) -> list[str]:
        return ["the inference worker"] if self.worker.is_alive() else []


def main() -> None:
    common.main_entry(InferenceNode)
