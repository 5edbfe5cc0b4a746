# SPDX-License-Identifier: Apache-2.0
"""Runs a `DynamicModel` (either family, shared or resident mode) with PyTorch."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dyndnn_ros.backends.base import InferenceBackend
from dyndnn_ros.models.dynamic import DynamicModel, Mode, build_dynamic_model


@dataclass
class TorchBackend(InferenceBackend):
    """The back end owns its `dynamic_model`: switch through `request_switch` only, so that each
    frame's `subnet_id` names the sub-network that computed it."""

    model: str | Path | dict[str, Any] = "groupconv_digits"
    """Model config name (config/models/<name>.yaml), YAML path, or config dict."""
    checkpoint: str | Path | None = None
    mode: Mode = "resident"
    device: str = "cpu"
    threads: int | None = None
    """torch intra-op threads; None leaves torch's default."""
    initial_subnet: str | None = None
    dynamic_model: DynamicModel = field(init=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.threads is not None:
            torch.set_num_threads(int(self.threads))
        self.dynamic_model = build_dynamic_model(
            self.model, self.checkpoint, self.mode, self.device, self.initial_subnet
        )
        self.name = "torch"
        self.model_id = self.dynamic_model.name
        self.metadata = {
            **self.dynamic_model.family.metadata,
            "mode": self.mode,
            "device": self.device,
        }

    def available_subnets(self) -> list[str]:
        return self.dynamic_model.available_subnets()

    @property
    def active_subnet(self) -> str:
        return self.dynamic_model.active_subnet

    def input_shape_of(self, subnet_id: str) -> tuple[int, int, int]:
        return self.dynamic_model.input_shape(subnet_id)

    def _activate(self, subnet_id: str) -> None:
        self.dynamic_model.switch(subnet_id)  # no frame runs now, so it applies immediately

    @property
    def cpu_threads(self) -> int:
        """torch's intra-op threads where the model runs on the CPU (0 on a GPU)."""
        return torch.get_num_threads() if self.dynamic_model.device.type == "cpu" else 0

    def _set_threads(self, threads: int) -> None:
        torch.set_num_threads(threads)  # process-wide: one model per inference node

    def _run(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(batch).to(self.dynamic_model.device)
        return self.dynamic_model.forward(x).float().cpu().numpy()
