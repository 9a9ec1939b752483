"""Loading a published model version into an ONNX Runtime session, and running batches through it.

Nothing here knows what the model is: its inputs and outputs come from the model itself
(``mlapp.signature``), how to serve it (batchable, a plug-in, labels) from the metadata its
publisher wrote (``mlapp.publish``), both checked again here before the model is served.
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from mlapp import contract, plugins, store
from mlapp.publish import ContractError, check_batchable
from mlapp.serve.errors import BadRequest
from mlapp.serve.metrics import BATCH, INFERENCE
from mlapp.serve.tensors import Flat
from mlapp.settings import Settings
from mlapp.signature import Signature, SignatureError, TensorSpec, example_shape, signature_of, zeros

log = logging.getLogger("mlapp.serve")
# What ONNX Runtime said, as much of it as a caller is shown.
MAX_ERROR_CHARS = 500


class ModelNotThere(Exception):
    """The version directory is not (yet) complete: keep waiting quietly."""


class ModelDamaged(Exception):
    """metadata.json names a model file that is not the one in the store: refuse it, and say so."""


class ProviderUnavailable(Exception):
    """The execution provider MLAPP_EXECUTION_PROVIDER asks for cannot run here: the server stays up and never
    ready, saying why. Neither a retry nor a restart brings a GPU, a driver or the CUDA libraries."""


class ModelFailed(BadRequest):
    """ONNX Runtime could not run the model on a request's input, which passed every check of the signature
    (an index past an embedding's end, say): the caller's input, refused with what ONNX Runtime said."""


class Ask(NamedTuple):
    """One output a request asks for, in the request's order: its name, where it is among the outputs the
    job computes, and whether it is answered raw (the binary tensor data extension) or in JSON."""

    name: str
    position: int
    binary: bool
    datatype: str  # the output's


@dataclass(frozen=True, slots=True)
class InputSlot:
    """What parsing needs of one input, worked out once."""

    spec: TensorSpec
    index: int  # its place in the signature: feeds are in this order
    # dims[1:] when every one is fixed, as a list a request's shape[1:] is compared with at once; else None.
    tail: list[int] | None
    first: int | None  # the first dimension when it is fixed


@dataclass(frozen=True)
class Model:
    name: str
    version: str
    session: ort.InferenceSession
    signature: Signature
    metadata: dict[str, Any]
    batchable: bool
    plugin: plugins.Plugin | None
    labels: list[str] | None
    inputs: Mapping[str, InputSlot] = field(init=False)
    outputs: Mapping[str, TensorSpec] = field(init=False)
    # Every output, in the signature's order: what a request that names none is answered with, in JSON
    # (every_output[False]) or raw (every_output[True]).
    all_outputs: tuple[str, ...] = field(init=False)
    every_output: Mapping[bool, tuple[Ask, ...]] = field(init=False)
    # Every input's dimensions after the first are fixed: jobs of one shape always fit together.
    fixed_tails: bool = field(init=False)
    input_names: tuple[str, ...] = field(init=False)  # in the signature's order, as feeds come
    # A dynamic dimension's name appears more than once among the inputs' dimensions (a sequence length
    # two inputs share, or a square input's [n, n]): a request's sizes there must agree.
    shared_dims: bool = field(init=False)

    def __post_init__(self) -> None:
        slots = {}
        for index, spec in enumerate(self.signature.inputs):
            tail = list(spec.dims[1:])
            fixed = all(isinstance(d, int) for d in tail)
            first = spec.dims[0] if spec.dims and isinstance(spec.dims[0], int) else None
            fixed_tail = [int(d) for d in tail if isinstance(d, int)] if fixed else None
            slots[spec.name] = InputSlot(spec, index, fixed_tail, first)
        object.__setattr__(self, "inputs", slots)
        object.__setattr__(self, "outputs", {o.name: o for o in self.signature.outputs})
        names = tuple(o.name for o in self.signature.outputs)
        object.__setattr__(self, "all_outputs", names)
        every = {
            binary: tuple(Ask(o.name, i, binary, o.datatype) for i, o in enumerate(self.signature.outputs))
            for binary in (False, True)
        }
        object.__setattr__(self, "every_output", every)
        object.__setattr__(self, "fixed_tails", all(slot.tail is not None for slot in slots.values()))
        object.__setattr__(self, "input_names", tuple(spec.name for spec in self.signature.inputs))
        named = [d for spec in self.signature.inputs for d in spec.dims if isinstance(d, str)]
        object.__setattr__(self, "shared_dims", len(named) != len(set(named)))

    def run(
        self, feeds: Sequence[Flat], shapes: Sequence[tuple[int, ...]], outputs: Sequence[str]
    ) -> list[npt.NDArray[Any]]:
        """The ``outputs`` for one run: ``feeds[i]`` holds input i's values, flat, shaped ``shapes[i]``."""
        arrays = {}
        for name, values, shape in zip(self.input_names, feeds, shapes, strict=True):
            # FP32 values come as an array('f') (tensors.py), every other datatype as numpy.
            flat = values if type(values) is np.ndarray else np.frombuffer(values, dtype=np.float32)
            arrays[name] = flat.reshape(shape)
        start = time.perf_counter()
        try:
            # ONNX Runtime gives numpy arrays (strings as object arrays) for tensor outputs.
            results: list[npt.NDArray[Any]] = self.session.run(outputs, arrays)
        except Exception as e:  # ONNX Runtime's own types (InvalidArgument, Fail, RuntimeException...)
            text = " ".join(str(e).split())[:MAX_ERROR_CHARS]
            raise ModelFailed(f"the model could not run on this input: {text}") from e
        INFERENCE.observe(time.perf_counter() - start)
        BATCH.observe(shapes[0][0] if shapes and shapes[0] else 1)
        return results


# ONNX Runtime's names of the execution providers MLAPP_EXECUTION_PROVIDER chooses from, in order of precedence.
# The CPU stays behind CUDA: ONNX Runtime partitions a model across the providers it is given, and a node CUDA
# has no kernel for runs on the next ("The list of providers is ordered by precedence ... execute a node using
# CUDAExecutionProvider if capable, otherwise execute using CPUExecutionProvider": InferenceSession's docstring,
# onnxruntime/capi/onnxruntime_inference_collection.py, 1.31.1).
CUDA_PROVIDER: Final = "CUDAExecutionProvider"
CPU_PROVIDER: Final = "CPUExecutionProvider"
SESSION_PROVIDERS: Final[Mapping[str, tuple[str, ...]]] = {
    "cpu": (CPU_PROVIDER,),
    "cuda": (CUDA_PROVIDER, CPU_PROVIDER),
}
_ASKED: Final = f"{contract.ENV_EXECUTION_PROVIDER}=cuda"


def check_offered(execution_provider: str, available: Sequence[str]) -> None:
    """ProviderUnavailable unless this onnxruntime offers the provider asked for (``available``:
    ``onnxruntime.get_available_providers()``).

    The CPU-only onnxruntime offers no CUDA at all. onnxruntime-gpu offers it whether or not a GPU is there
    (on a machine without one, 1.31.1 lists TensorrtExecutionProvider, CUDAExecutionProvider and
    CPUExecutionProvider), so passing here proves only the package: ``check_session`` judges the rest.
    """
    if execution_provider == "cuda" and CUDA_PROVIDER not in available:
        raise ProviderUnavailable(
            f"{_ASKED}, but onnxruntime {ort.__version__} offers only {list(available)}: this is the CPU-only "
            "onnxruntime package; the server's GPU image installs onnxruntime-gpu (app/requirements-server-gpu.txt)"
        )


def check_session(execution_provider: str, session_providers: Sequence[str]) -> None:
    """ProviderUnavailable unless the session runs on the provider asked for, first (``session_providers``:
    its ``get_providers()``).

    When onnxruntime-gpu cannot load its CUDA provider (no NVIDIA driver, libcuda.so.1, in the container; a
    CUDA or cuDNN library missing) it logs "Failed to create CUDAExecutionProvider" and builds the session on
    the CPU alone, without raising (onnxruntime_pybind_state.cc, CreateExecutionProviderFactoryInstance; seen
    with 1.31.1 on a machine without a GPU: get_providers() was ['CPUExecutionProvider']).
    """
    if execution_provider == "cuda" and (not session_providers or session_providers[0] != CUDA_PROVIDER):
        raise ProviderUnavailable(
            f"{_ASKED}, but ONNX Runtime could not start its CUDA provider and the model's session would run on "
            f"{list(session_providers)}: no NVIDIA driver or GPU in the container (libcuda.so.1), a driver too old "
            "for CUDA 13, or a CUDA or cuDNN library missing; ONNX Runtime's own error is logged just before this"
        )


def prepare_execution_provider(execution_provider: str) -> None:
    """Before any session: for cuda, check the package offers CUDA, then load its CUDA and cuDNN libraries.

    onnxruntime-gpu does not find the NVIDIA wheels it depends on by itself: its
    capi/libonnxruntime_providers_cuda.so needs libcublasLt.so.13, libcublas.so.13, libcurand.so.10 and
    libcudart.so.13 and has no RPATH or RUNPATH (``readelf -d``, 1.31.1 wheel), while pip puts them in
    site-packages/nvidia/cu13/lib and nvidia/cudnn/lib, which no loader path names; without this, 1.31.1
    fails with "libcublasLt.so.13: cannot open shared object file" and falls back to the CPU.
    ``onnxruntime.preload_dlls()`` loads them from those directories ("the onnxruntime-gpu Python package
    offers API to load CUDA and cuDNN dynamic link libraries": onnxruntime.ai/docs/execution-providers/
    CUDA-ExecutionProvider.html, "Preload DLLs"; onnxruntime/__init__.py, _get_nvidia_dll_paths, whose CUDA 13
    layout is nvidia/cu13/lib). It reports a library it cannot load with print(): caught here and logged, so
    stdout keeps one JSON object a line. Run before the server's stdout has other writers (App.startup).
    """
    if execution_provider != "cuda":
        return
    check_offered(execution_provider, ort.get_available_providers())
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        ort.preload_dlls()
    if printed.getvalue().strip():
        log.warning("onnxruntime.preload_dlls: %s", " ".join(printed.getvalue().split()))


def create_session(source: str | bytes, settings: Settings) -> ort.InferenceSession:
    """A session of the model in ``source`` on the execution provider the settings ask for, or ProviderUnavailable."""
    provider = settings.execution_provider
    check_offered(provider, ort.get_available_providers())
    session = ort.InferenceSession(
        source, session_options(settings.intra_op_threads), providers=list(SESSION_PROVIDERS[provider])
    )
    check_session(provider, session.get_providers())
    if provider == "cuda":
        # A run that fails inside the CUDA provider would otherwise switch the session to the CPU for good and
        # run again there, with a print() ("session.run() fallback mechanism", InferenceSession.disable_fallback,
        # onnxruntime_inference_collection.py): the run fails instead.
        session.disable_fallback()
    return session


def session_options(threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    # One thread by default: the pod's CPU limit is what it has, and a request of a small model is
    # microseconds of arithmetic that batching gives width to; a large model is given more threads
    # with MLAPP_INTRA_OP_THREADS (settings.py).
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return options


def _published_labels(meta: Mapping[str, Any]) -> list[str] | None:
    labels = meta.get("labels")
    if labels is None:
        return None
    if not isinstance(labels, list) or not all(isinstance(label, str) and label for label in labels):
        raise ValueError("metadata.json's labels are not a list of names")
    return labels


def load_model(settings: Settings, labels: list[str] | None) -> Model:
    """The published version ``settings`` names, ready to serve; ``labels`` (the stack's) replace the model's."""
    directory = store.version_dir(settings.model_dir, settings.model_name, settings.model_version)
    try:
        meta, model_bytes = store.load(directory)
    except store.Damaged as e:
        raise ModelDamaged(str(e)) from e
    except store.NotPublished as e:
        raise ModelNotThere(str(e)) from e
    with model_bytes:
        # The very bytes whose checksum was verified, not a second read of the file.
        session = create_session(model_bytes.source, settings)
    try:
        signature = signature_of(session)
    except SignatureError as e:
        raise ValueError(f"the model cannot be served: {e}") from e
    batchable = meta.get("batchable") is True
    if batchable:
        # The publisher's own check (the graph, then a run of two rows together and each alone): a
        # detector's data-dependent output passes the graph's, and a shared run would split it wrongly.
        try:
            check_batchable(session, signature)
        except ContractError as e:
            raise ValueError(f"metadata.json: {e}") from e
    labels = labels if labels is not None else _published_labels(meta)
    try:
        plugin = plugins.configure(meta.get("plugin"), signature, labels)
    except plugins.PluginError as e:
        raise ValueError(f"the model's plug-in does not fit: {e}") from e
    model = Model(settings.model_name, settings.model_version, session, signature, meta, batchable, plugin, labels)
    if not batchable:  # a batchable model's check has just run it three times: it is warm
        warm_up(model)
    return model


def warm_up(model: Model) -> None:
    """Run the model once on zeros, so the first caller does not pay ONNX Runtime's first-run costs.

    A model that cannot run on zeros (a graph that divides by an input, say) is still served: the
    warm-up is an optimisation, and its failure is logged, not fatal.
    """
    feeds = {spec.name: zeros(spec, example_shape(spec)) for spec in model.signature.inputs}
    try:
        model.session.run(None, feeds)
    except Exception as e:  # the model's own failure on zeros
        log.warning("the warm-up run on zeros failed (the model is served anyway): %s", " ".join(str(e).split()))
