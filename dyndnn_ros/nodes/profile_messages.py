# SPDX-License-Identifier: Apache-2.0
"""ModelProfile messages to and from the core's profile tables (dyndnn_ros.profiles)."""
from __future__ import annotations

from dyndnn_ros.msg import ModelProfile, SubnetProfile
from dyndnn_ros.profiles import ModelProfile as CoreProfile
from dyndnn_ros.profiles import SubnetProfile as CoreSubnet


def profile_message(
    profile: CoreProfile, model_id: str, backend: str, active: str
) -> ModelProfile:
    msg = ModelProfile(
        model_id=model_id, device=profile.device, backend=backend, active_subnet=active,
        threads=int(profile.threads),
    )
    msg.subnets = [
        SubnetProfile(
            id=s.id,
            accuracy=float(s.accuracy),
            latency_mean_ms=float(s.latency_mean_ms),
            latency_p50_ms=float(s.latency_p50_ms),
            latency_p95_ms=float(s.latency_p95_ms),
            latency_p99_ms=float(s.latency_p99_ms),
            energy_mj=float(s.energy_mj or 0.0),
            macs=int(s.macs),
            params=int(s.params),
        )
        for s in profile.subnets
    ]
    return msg


def profile_from_message(msg: ModelProfile) -> CoreProfile:
    return CoreProfile(
        model=msg.model_id,
        device=msg.device,
        subnets=tuple(
            CoreSubnet(
                id=s.id,
                accuracy=float(s.accuracy),
                latency_p50_ms=float(s.latency_p50_ms),
                latency_p95_ms=float(s.latency_p95_ms),
                latency_p99_ms=float(s.latency_p99_ms),
                latency_mean_ms=float(s.latency_mean_ms),
                params=int(s.params),
                macs=int(s.macs),
                energy_mj=float(s.energy_mj) or None,
            )
            for s in msg.subnets
        ),
        metadata={"backend": msg.backend},
        threads=int(msg.threads),
    )
