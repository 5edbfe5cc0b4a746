# SPDX-License-Identifier: Apache-2.0
"""A stand-in for NVIDIA's `tensorrt` Python bindings (the TensorRT 10 named-tensor API subset the
back end uses), for machines without a GPU. Only the bindings are replaced: everything above them
(the back end, the inference node) is the real code.

An "engine" file is JSON: {"inputs": {name: shape}, "outputs": {name: shape},
"device_memory_size": n},
with -1 for the batch dimension; anything else does not deserialise (None, as TensorRT returns).
Every call is appended as a JSON line to $FAKE_TENSORRT_LOG when that is set, for the tests.
Optional keys make a call fail the way TensorRT reports it: "fail": ["set_input_shape", ...].
"""

import json
import os

__version__ = "10.3.0-fake"


def _record(call, **details):
    path = os.environ.get("FAKE_TENSORRT_LOG")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"call": call, **details}) + "\n")


class Logger:
    ERROR, WARNING, INFO, VERBOSE = 1, 2, 3, 4

    def __init__(self, min_severity=WARNING):
        self.min_severity = min_severity


class TensorIOMode:
    NONE, INPUT, OUTPUT = "NONE", "INPUT", "OUTPUT"


class ExecutionContextAllocationStrategy:
    STATIC, ON_PROFILE_CHANGE, USER_MANAGED = "STATIC", "ON_PROFILE_CHANGE", "USER_MANAGED"


class Runtime:
    def __init__(self, logger):
        self.logger = logger

    def deserialize_cuda_engine(self, data):
        try:
            doc = json.loads(bytes(data).decode())
        except (UnicodeDecodeError, ValueError):
            _record("deserialize_cuda_engine", ok=False, size=len(data))
            return None
        _record("deserialize_cuda_engine", ok=True, size=len(data))
        return ICudaEngine(doc)


class ICudaEngine:
    def __init__(self, doc):
        self.doc = doc
        self.inputs, self.outputs = dict(doc["inputs"]), dict(doc["outputs"])
        self.names = list(self.inputs) + list(self.outputs)
        self.device_memory_size = int(doc.get("device_memory_size", 0))

    @property
    def num_io_tensors(self):
        return len(self.names)

    def get_tensor_name(self, index):
        return self.names[index]

    def get_tensor_mode(self, name):
        return TensorIOMode.INPUT if name in self.inputs else TensorIOMode.OUTPUT

    def create_execution_context(self, strategy=ExecutionContextAllocationStrategy.STATIC):
        _record("create_execution_context", strategy=strategy)
        return (
            None
            if "create_execution_context" in self.doc.get("fail", [])
            else IExecutionContext(self)
        )


class IExecutionContext:
    def __init__(self, engine):
        self.engine = engine
        self.batch = None
        self.device_memory = 0

    def _fails(self, call):
        return call in self.engine.doc.get("fail", [])

    def set_input_shape(self, name, shape):
        _record("set_input_shape", name=name, shape=list(shape))
        expected = self.engine.inputs.get(name)
        fits = (
            expected is not None
            and len(expected) == len(shape)
            and all(e in (-1, s) for e, s in zip(expected, shape))
        )
        if fits and not self._fails("set_input_shape"):
            self.batch = shape[0]
            return True
        return False

    def get_tensor_shape(self, name):
        shape = self.engine.inputs.get(name) or self.engine.outputs[name]
        return tuple(self.batch if d == -1 and self.batch is not None else d for d in shape)

    def set_tensor_address(self, name, address):
        _record("set_tensor_address", name=name)
        return not self._fails("set_tensor_address")

    def set_device_memory(self, address, size):
        _record("set_device_memory", size=size)
        self.device_memory = address

    def execute_async_v3(self, stream_handle):
        _record("execute_async_v3")
        return not self._fails("execute_async_v3")
