"""The peer for bench/serve.py: the same ONNX model behind KServe's Python model server.

Runs in its own virtualenv (bench/.venv-kserve, see bench/requirements-kserve.txt)
because kserve's pins are not ours:

    BENCH_MODEL_PATH=model.onnx BENCH_MODEL_NAME=digits \
        bench/.venv-kserve/bin/python bench/kserve_model.py --http_port 8090 --enable_grpc false

kserve.ModelServer reads its own flags (--http_port, --workers, ...) from argv,
so this script takes its settings from the environment.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import onnxruntime as ort
from kserve import (  # type: ignore[import-not-found,unused-ignore]
    InferOutput,
    InferRequest,
    InferResponse,
    Model,
    ModelServer,
)


class OnnxDigits(Model):  # type: ignore[misc]
    def __init__(self, name: str, path: str) -> None:
        super().__init__(name)
        self.path = path
        self.session: ort.InferenceSession | None = None
        self.load()

    def load(self) -> bool:
        # The same session options as mlapp.serve, so the comparison is the server.
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(self.path, options, providers=["CPUExecutionProvider"])
        self.ready = True
        return True

    async def predict(
        self,
        payload: InferRequest,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> InferResponse:
        assert self.session is not None
        x = payload.inputs[0].as_numpy().astype(np.float32, copy=False)
        probs = self.session.run(None, {"input": x})[0]
        output = InferOutput(name="probabilities", shape=list(probs.shape), datatype="FP32")
        # Raw bytes when the request asks (binary_data_output, or an output's binary_data), as KServe's own
        # get_predict_response does (kserve/utils/utils.py); JSON otherwise.
        binary = payload.use_binary_outputs
        output.set_data_from_numpy(probs, binary_data=binary)
        return InferResponse(
            response_id=payload.id or "",
            model_name=self.name,
            infer_outputs=[output],
            use_binary_outputs=binary,
            requested_outputs=payload.request_outputs,
        )


def main() -> None:
    model = OnnxDigits(os.environ["BENCH_MODEL_NAME"], os.environ["BENCH_MODEL_PATH"])
    server: Any = ModelServer()
    server.start([model])


if __name__ == "__main__":
    main()
