"""Loading a published model version into an ONNX Runtime session, and running one batch through it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from mlapp import contract, preprocess, store
from mlapp.serve.metrics import BATCH, INFERENCE
from mlapp.settings import Settings


@dataclass(frozen=True)
class Model:
    name: str
    version: str
    session: ort.InferenceSession
    input_name: str
    output_name: str
    height: int
    width: int
    num_classes: int
    labels: list[str]
    metadata: dict[str, Any]
    preprocessing: preprocess.Preprocessing

    def run(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        start = time.perf_counter()
        out = self.session.run([self.output_name], {self.input_name: batch})[0]
        INFERENCE.observe(time.perf_counter() - start)
        BATCH.observe(len(batch))
        return np.asarray(out, dtype=np.float32)


class ModelNotThere(Exception):
    """The version directory is not (yet) complete: keep waiting quietly."""


class ModelDamaged(Exception):
    """metadata.json names a model file that is not the one in the store: refuse it, and say so."""


def load_model(settings: Settings, labels: list[str] | None) -> Model:
    directory = store.version_dir(settings.model_dir, settings.model_name, settings.model_version)
    try:
        meta, model_bytes = store.read_published(directory)
    except store.Damaged as e:
        raise ModelDamaged(str(e)) from e
    except store.NotPublished as e:
        raise ModelNotThere(str(e)) from e
    options = ort.SessionOptions()
    # One request of this model is microseconds of arithmetic: thread hand-offs
    # inside ORT would cost more than they save, and batching gives the width.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    # The very bytes whose checksum was verified, not a second read of the file.
    session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    pre = preprocess.Preprocessing.from_metadata(meta)
    num_classes = int(meta["num_classes"])
    (inp,) = session.get_inputs()
    (out,) = session.get_outputs()
    if list(inp.shape[1:]) != [1, pre.height, pre.width]:
        raise ValueError(f"model input shape {inp.shape} disagrees with metadata.json")
    if labels is None:
        labels = [str(i) for i in range(num_classes)]
    elif len(labels) != num_classes:
        raise ValueError(f"{contract.ENV_LABELS_FILE} has {len(labels)} labels but the model has {num_classes} classes")
    model = Model(
        name=settings.model_name,
        version=settings.model_version,
        session=session,
        input_name=inp.name,
        output_name=out.name,
        height=pre.height,
        width=pre.width,
        num_classes=num_classes,
        labels=labels,
        metadata=meta,
        preprocessing=pre,
    )
    model.run(np.zeros((1, 1, pre.height, pre.width), dtype=np.float32))  # warm-up
    return model
