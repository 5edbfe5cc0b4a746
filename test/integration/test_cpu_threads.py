# SPDX-License-Identifier: Apache-2.0
"""A model on the CPU over DDS: the manager sees it on the CPU (its profile's device) and the
threads it runs (InferenceStats.threads), chooses a thread count with the sub-network, and the
inference node runs it from the next frame (the simulation back end models the frame on that many
threads, as torch.set_num_threads would run it)."""
from __future__ import annotations

import pytest

from dyndnn_ros.bringup import NodeProcess

MODEL = "ofa_cpu"
TIMEOUT_S = 40.0


@pytest.mark.timeout(120)
def test_the_manager_gives_a_cpu_model_the_threads_its_target_needs(start_nodes, client):
    """On 1 thread the fastest sub-network takes about 1.5 s; a 1 s target needs 2 or more."""
    start_nodes(
        NodeProcess("camera_node", "camera_node",
                    {"rate_hz": 2.0, "width": 32, "height": 32, "dataset": "digits"}),
        NodeProcess("inference_node", "inference_node", {
            "backend": "simulation", "model_id": MODEL,
            "model_config": "dynamic_ofa_xavier_nx_cpu", "platform": "xavier_nx",
            "cpu_cluster": "cluster1", "threads": 1,
        }),
        NodeProcess("resource_manager_node", "resource_manager_node",
                    {"policy": "hierarchical", "platform": "xavier_nx",
                     "control_period_s": 0.25}),
    )
    one_thread = client.wait_for_stats(MODEL, lambda s: s.threads == 1, TIMEOUT_S)
    assert one_thread is not None, "the node never reported running on 1 thread"
    assert one_thread.latency_ms > 1000.0
    verdict = client.set_target("cpu_app", MODEL, max_latency_ms=1000.0, min_accuracy=0.72,
                                wait_for_manager_s=10.0)
    assert verdict is not None and verdict.reason, "the manager did not answer the target"
    assert client.wait_until(
        lambda: any(m.model_id == MODEL and m.threads >= 2 for m in client.switches), TIMEOUT_S
    ), f"no switch with threads >= 2: {client.switches}"
    with client.lock:
        commanded = [m.threads for m in client.switches if m.model_id == MODEL and m.threads][-1]
    running = client.wait_for_stats(MODEL, lambda s: s.threads == commanded, TIMEOUT_S)
    assert running is not None, f"the node never ran the {commanded} threads it was told"
    after = client.wait_for_stats(
        MODEL, lambda s: s.threads == commanded and s.frame_stamp != running.frame_stamp,
        TIMEOUT_S)
    assert after is not None and after.latency_ms < 1000.0, after
    assert after.host_overhead_ms > 0.0
