# SPDX-License-Identifier: Apache-2.0
"""Per-sub-network ONNX export (checked with onnxruntime) and TensorRT engine building."""
