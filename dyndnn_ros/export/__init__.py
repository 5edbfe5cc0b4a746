"""Per-sub-network ONNX export (checked with onnxruntime) and TensorRT engine building."""
