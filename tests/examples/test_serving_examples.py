"""Models nobody on this project wrote, trained small here, published, served and called for real.

Four models, each as a team would bring it: the iris-forest and tabular-text examples, run as their
training Job runs them (the trainer contract's environment, their stack-config.yaml's parameters), and
two scikit-learn models fitted here and converted with skl2onnx, their run directory written by hand
as a trainer would: a float64 Ridge regression (FP64 in and out, gated on ``rmse<=``, a minimize gate)
and a StandardScaler + LogisticRegression pipeline (converted with zipmap off). Each run is published
with ``publish_run`` under its gate (the examples' the one their stack-config.yaml ships, so the
publisher itself holds the shipped gate achievable), then served by ``python -m mlapp.serve``, one
server per model, and called with NVIDIA's tritonclient. Every answer is compared with ONNX Runtime
running the published model.onnx directly on the same rows.

The digits example is left out: tests/app trains, publishes and serves it (tests/app/test_tritonclient.py
calls it with tritonclient). That each example's gate holds for the metrics its trainer writes is also
asserted on the trainer's own outputs by tests/examples/test_iris_forest.py and test_tabular_text.py;
here it is the publisher that judges it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import pytest
import tritonclient.http as triton
from prometheus_client.parser import text_string_to_metric_families
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from tritonclient.http.auth import BasicAuth
from tritonclient.utils import InferenceServerException

from mlapp import contract
from mlapp.gate import Gate
from mlapp.publish import publish_run
from tests.app.helpers import PASSWORD, USER, Server

from .trainers import Run, contract_env, load_trainer, run_trainer, stack_config

VERSION = "v1"
# The split and the fit of the models built here; the examples take their stack config's seed.
SEED = 42
# The opset the examples export (examples/*/train.py, ONNX_OPSET).
ONNX_OPSET = 17
# Concurrent callers, each with its own client and rows, and bursts of them: enough that runs are shared.
CALLERS = 16
ROUNDS = 3
MAX_CALLER_ROWS = 5
# ONNX types as ONNX Runtime spells them -> the Open Inference Protocol's datatypes, for the types these
# models use (https://github.com/kserve/open-inference-protocol, "Tensor Data Types"); written out here,
# not taken from mlapp.signature, so the server's mapping is checked against an independent one.
DATATYPES = {"tensor(float)": "FP32", "tensor(double)": "FP64", "tensor(int64)": "INT64"}
# A datatype the server must refuse for each of those, and its numpy type.
WRONG_DATATYPES = {"FP32": ("FP64", np.float64), "FP64": ("FP32", np.float32), "INT64": ("INT32", np.int32)}

Array = npt.NDArray[Any]
Outputs = Mapping[str, Array]


@dataclass(frozen=True)
class Trained:
    """A training run's outputs as the trainer left them, and the held-out rows its metrics were measured on."""

    name: str
    run: Run
    gate: Gate
    held_out: dict[str, Array]  # every input's held-out rows, by input name
    score: Callable[[Outputs], float]  # the gate's metric of the model's outputs for ``held_out``


@dataclass(frozen=True)
class Served:
    """A published version, its server, and the published model.onnx run by ONNX Runtime directly."""

    name: str
    server: Server
    session: ort.InferenceSession
    held_out: dict[str, Array]
    score: Callable[[Outputs], float]
    gate: Gate
    metrics: dict[str, float]  # the run's metrics.json
    labels: list[str] | None  # the run's labels.txt

    def direct(self, inputs: Mapping[str, Array]) -> dict[str, Array]:
        names = [o.name for o in self.session.get_outputs()]
        return dict(zip(names, self.session.run(names, dict(inputs)), strict=True))

    def rows(self, index: Sequence[int] | slice) -> dict[str, Array]:
        return {name: np.ascontiguousarray(values[index]) for name, values in self.held_out.items()}


def accuracy(predicted: Array, truth: Array) -> float:
    return float(np.mean(predicted == truth))


def gate_of(config: Mapping[str, Any]) -> Gate:
    """The gate a stack with this config holds the run to (mlstack:gateMetric, gateDirection, gateThreshold)."""
    return Gate(config["mlstack:gateMetric"], config["mlstack:gateDirection"], float(config["mlstack:gateThreshold"]))


# ---------------------------------------------------------------- the runs


def iris_forest(root: Path) -> Trained:
    """examples/iris-forest with its stack config's seed and trainerCommand's flags."""
    config = stack_config("iris-forest")
    seed = int(config["mlstack:trainSeed"])
    run = Run.under(root, config["mlstack:modelName"], VERSION)
    flags = [str(arg) for arg in config["mlstack:trainerCommand"][2:]]  # after ["python", "/app/train.py"]
    result = run_trainer("iris-forest", contract_env(run, seed=seed), *flags, cwd=root)
    assert result.returncode == contract.EXIT_OK, result.stderr
    data = load_trainer("iris-forest").split(seed)  # the trainer's own held-out flowers for the seed
    return Trained(
        run.model, run, gate_of(config), {"float_input": data.x_test}, lambda out: accuracy(out["label"], data.y_test)
    )


def tabular_text(root: Path) -> Trained:
    """examples/tabular-text with its stack config's training parameters."""
    config = stack_config("tabular-text")
    params = {
        "epochs": config["mlstack:trainEpochs"],
        "batch_size": config["mlstack:trainBatchSize"],
        "learning_rate": config["mlstack:trainLearningRate"],
        "seed": config["mlstack:trainSeed"],
    }
    run = Run.under(root, config["mlstack:modelName"], VERSION)
    result = run_trainer("tabular-text", contract_env(run, **params), cwd=root)
    assert result.returncode == contract.EXIT_OK, result.stderr
    data = load_trainer("tabular-text").make_data(int(params["seed"]))  # the trainer's own rows for the seed
    held_out = {"features": data.features_test, "token_ids": data.tokens_test}
    return Trained(
        run.model,
        run,
        gate_of(config),
        held_out,
        lambda out: accuracy(out["probabilities"].argmax(axis=1), data.y_test),
    )


def write_run(run: Run, model: Any, metrics: Mapping[str, float], labels: Sequence[str] | None) -> None:
    """What a trainer writes into MLAPP_OUTPUT_DIR (docs/trainer-contract.md, "Outputs"), declared batchable:
    these models answer each row on its own."""
    run.output_dir.mkdir(parents=True)
    (run.output_dir / contract.TRAINER_MODEL_FILE).write_bytes(model.SerializeToString())
    (run.output_dir / contract.TRAINER_METRICS_FILE).write_text(json.dumps(dict(metrics)))
    (run.output_dir / contract.TRAINER_SERVING_FILE).write_text(json.dumps({"batchable": True}))
    if labels is not None:
        (run.output_dir / contract.TRAINER_LABELS_FILE).write_text("".join(f"{label}\n" for label in labels))


def rmse(predicted: Array, truth: Array) -> float:
    return float(np.sqrt(np.mean((np.asarray(predicted, dtype=np.float64).reshape(-1) - truth) ** 2)))


def ridge(root: Path) -> Trained:
    """A float64 Ridge regression of the diabetes data (bundled with scikit-learn), FP64 in and out. Its gate:
    an rmse no worse than always answering the training mean, the baseline any regression must beat."""
    data = load_diabetes()
    x = np.asarray(data.data, dtype=np.float64)
    y = np.asarray(data.target, dtype=np.float64)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=SEED)
    fitted = Ridge(alpha=0.1).fit(x_train, y_train)
    metrics = {
        "rmse": rmse(fitted.predict(x_test), y_test),
        "baseline_rmse": rmse(np.full_like(y_test, y_train.mean()), y_test),
    }
    model = convert_sklearn(
        fitted, initial_types=[("x", DoubleTensorType([None, x.shape[1]]))], target_opset=ONNX_OPSET
    )
    run = Run.under(root, "diabetes-ridge", VERSION)
    write_run(run, model, metrics, labels=None)
    gate = Gate.parse(f"rmse<={metrics['baseline_rmse']:.2f}")
    return Trained(run.model, run, gate, {"x": x_test}, lambda out: rmse(out["variable"], y_test))


def scaled_logistic(root: Path) -> Trained:
    """Pipeline(StandardScaler, LogisticRegression) on the breast cancer data (bundled with scikit-learn),
    converted with zipmap off: ``label`` INT64 and ``probabilities`` FP32, tensors both."""
    data = load_breast_cancer()
    x = np.asarray(data.data, dtype=np.float32)
    y = np.asarray(data.target, dtype=np.int64)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.3, random_state=SEED, stratify=y)
    pipeline = Pipeline([("scale", StandardScaler()), ("logistic", LogisticRegression(max_iter=1000))])
    pipeline.fit(x_train, y_train)
    metrics = {"accuracy": accuracy(pipeline.predict(x_test), y_test)}
    model = convert_sklearn(
        pipeline,
        initial_types=[("x", FloatTensorType([None, x.shape[1]]))],
        options={id(pipeline): {"zipmap": False}},
        target_opset=ONNX_OPSET,
    )
    run = Run.under(root, "breast-cancer", VERSION)
    write_run(run, model, metrics, labels=[str(name) for name in data.target_names])
    return Trained(
        run.model, run, Gate.parse("accuracy>=0.95"), {"x": x_test}, lambda out: accuracy(out["label"], y_test)
    )


TRAINERS: dict[str, Callable[[Path], Trained]] = {
    "iris-forest": iris_forest,
    "tabular-text": tabular_text,
    "ridge": ridge,
    "scaled-logistic": scaled_logistic,
}


@pytest.fixture(scope="module", params=list(TRAINERS))
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One model trained, published from its run directory under its gate, and served, for the module."""
    root = tmp_path_factory.mktemp(request.param)
    trained = TRAINERS[request.param](root)
    metrics = trained.run.metrics()
    labels_file = trained.run.output_dir / contract.TRAINER_LABELS_FILE
    labels = trained.run.labels() if labels_file.exists() else None
    store = trained.run.output_dir.parents[2]  # <store>/<model>/.runs/<version>
    published = publish_run(trained.run.output_dir, store, trained.name, VERSION, gate=trained.gate)
    assert published.created
    # One intra-op thread, as the server runs it (MLAPP_INTRA_OP_THREADS): a tree ensemble split over more
    # threads adds its trees' votes in another order, and answers up to 2.7e-7 apart (measured on iris).
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(published.directory / "model.onnx"), options, providers=["CPUExecutionProvider"])
    server = Server(root, store, MLAPP_MODEL_NAME=trained.name, MLAPP_MODEL_VERSION=VERSION)
    try:
        server.wait_for("/v2/health/ready")
        yield Served(trained.name, server, session, trained.held_out, trained.score, trained.gate, metrics, labels)
    finally:
        server.stop()


def client(served: Served) -> Any:
    c = triton.InferenceServerClient(f"127.0.0.1:{served.server.port}")
    c.register_plugin(BasicAuth(USER, PASSWORD))
    return c


def signature(session: ort.InferenceSession) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The inputs and outputs as ONNX Runtime reads them from the file, in the protocol's terms (-1: dynamic)."""

    def spec(arg: Any) -> dict[str, Any]:
        shape = [d if isinstance(d, int) else -1 for d in arg.shape]
        return {"name": arg.name, "datatype": DATATYPES[arg.type], "shape": shape}

    return [spec(a) for a in session.get_inputs()], [spec(a) for a in session.get_outputs()]


def infer_inputs(served: Served, rows: Mapping[str, Array], *, binary: bool) -> list[Any]:
    """tritonclient's inputs for ``rows``, each with the datatype the model takes."""
    datatypes = {spec["name"]: spec["datatype"] for spec in signature(served.session)[0]}
    tensors = []
    for name, values in rows.items():
        tensor = triton.InferInput(name, list(values.shape), datatypes[name])
        tensors.append(tensor.set_data_from_numpy(values, binary_data=binary))
    return tensors


def check_answer(served: Served, result: Any, rows: Mapping[str, Array], who: str, *, binary: bool) -> dict[str, Array]:
    """Every output of ``result`` is ONNX Runtime's for ``rows``, of the model's datatype and shape; the
    outputs as tritonclient reads them."""
    expected = served.direct(rows)
    specs = {spec["name"]: spec for spec in signature(served.session)[1]}
    got: dict[str, Array] = {}
    for name, want in expected.items():
        output = result.get_output(name)
        assert output is not None, f"{who}: no output {name!r} in {result.get_response()}"
        assert output["datatype"] == specs[name]["datatype"], f"{who}: {name}"
        assert output["shape"] == list(want.shape), f"{who}: {name}"
        assert all(s in (-1, d) for s, d in zip(specs[name]["shape"], want.shape, strict=True)), f"{who}: {name}"
        assert ("data" in output) is not binary, f"{who}: {name} came back {'JSON' if binary else 'raw'}"
        values = result.as_numpy(name)
        assert values.dtype == want.dtype, f"{who}: {name}"
        if want.dtype.kind == "f":
            # Rows run among other callers' may take another kernel path: equal up to the type's rounding.
            tolerance = 1e-6 if want.dtype == np.float32 else 1e-12
            np.testing.assert_allclose(values, want, rtol=tolerance, atol=tolerance, err_msg=f"{who}: {name}")
        else:
            np.testing.assert_array_equal(values, want, err_msg=f"{who}: {name}")
        got[name] = values
    return got


def batch_runs(served: Served) -> tuple[float, float]:
    """The server's ``mlapp_inference_batch_size`` histogram: the runs it observed, and their rows in all."""
    text = httpx.get(served.server.metrics_url + "/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        if family.name == "mlapp_inference_batch_size":
            samples = {s.name: s.value for s in family.samples}
            return samples.get(f"{family.name}_count", 0.0), samples.get(f"{family.name}_sum", 0.0)
    raise AssertionError(f"no mlapp_inference_batch_size in {served.server.metrics_url}/metrics")


# ---------------------------------------------------------------- metadata


def test_metadata_states_the_published_files_signature_metrics_and_gate(served: Served) -> None:
    inputs, outputs = signature(served.session)
    assert all(spec["shape"][0] == -1 for spec in inputs + outputs), "a batchable model's first dimension is dynamic"
    answer = httpx.get(f"{served.server.url}/v2/models/{served.name}", auth=(USER, PASSWORD), timeout=10)
    assert answer.status_code == 200, answer.text
    meta = answer.json()
    assert (meta["name"], meta["versions"], meta["platform"]) == (served.name, [VERSION], "onnxruntime_onnx")
    assert (meta["inputs"], meta["outputs"]) == (inputs, outputs)
    parameters = meta["parameters"]
    assert parameters["metrics"] == served.metrics
    value = served.metrics[served.gate.metric]
    assert parameters["gate"] == {
        "metric": served.gate.metric,
        "direction": served.gate.direction,
        "threshold": served.gate.threshold,
        "value": value,
    }
    assert served.gate.passes(served.metrics), "the publisher published a run under its gate"
    assert (parameters["labels"], parameters["batchable"], parameters["plugin"]) == (served.labels, True, None)
    with client(served) as c:
        assert c.get_model_metadata(served.name) == meta
        assert c.get_model_metadata(served.name, VERSION) == meta
        assert c.is_model_ready(served.name, VERSION) is True


# ---------------------------------------------------------------- inference


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_the_held_out_rows_are_answered_as_onnx_runtime_answers_and_score_as_published(
    served: Served, *, binary: bool
) -> None:
    """Every held-out row in one request: JSON both ways (binary_data=False on inputs and outputs), or the
    client's defaults (raw inputs, every output raw, none named). The answers score the gate's metric as
    the trainer measured it."""
    rows = served.rows(slice(None))
    outputs = [triton.InferRequestedOutput(o.name, binary_data=False) for o in served.session.get_outputs()]
    with client(served) as c:
        result = c.infer(served.name, infer_inputs(served, rows, binary=binary), outputs=None if binary else outputs)
    answer = result.get_response()
    assert (answer["model_name"], answer["model_version"]) == (served.name, VERSION)
    got = check_answer(served, result, rows, served.name, binary=binary)
    assert served.score(got) == pytest.approx(served.metrics[served.gate.metric], rel=1e-9)


# ---------------------------------------------------------------- refusals


def bad_requests(served: Served) -> list[tuple[str, list[Any], list[str]]]:
    """(what is wrong, the inputs sent, what the message must say: the input at fault first): each input sent as
    another datatype, each input one column too wide, and each input left out of a model that takes several."""
    rows = served.rows(slice(0, 2))
    specs = {spec["name"]: spec for spec in signature(served.session)[0]}
    cases = []
    for name, values in rows.items():
        datatype = specs[name]["datatype"]
        other, dtype = WRONG_DATATYPES[datatype]
        wrong = dict(rows)
        wrong[name] = values.astype(dtype)
        sent = infer_inputs(served, {k: v for k, v in wrong.items() if k != name}, binary=True)
        sent.append(triton.InferInput(name, list(values.shape), other).set_data_from_numpy(wrong[name]))
        cases.append((f"{name} as {other}", sent, [repr(name), other, datatype]))

        wide = dict(rows)
        wide[name] = np.concatenate([values, values[:, :1]], axis=1)
        shape = list(wide[name].shape)
        cases.append((f"{name} {shape}", infer_inputs(served, wide, binary=True), [repr(name), str(shape)]))
        if len(rows) > 1:
            without = {k: v for k, v in rows.items() if k != name}
            cases.append((f"no {name}", infer_inputs(served, without, binary=True), [repr(name), "missing"]))
    return cases


def test_a_bad_input_is_400_naming_it_and_runs_nothing(served: Served) -> None:
    cases = bad_requests(served)
    before = batch_runs(served)
    with client(served) as c:
        for what, inputs, says in cases:
            with pytest.raises(InferenceServerException) as caught:
                c.infer(served.name, inputs)
            assert caught.value.status() == "400", f"{what}: {caught.value}"
            message = caught.value.message()
            assert all(text in message for text in says), f"{what}: {message!r} does not say {says}"
    assert batch_runs(served) == before, "a refused request reached ONNX Runtime"


# ---------------------------------------------------------------- concurrent callers


def caller_rows(served: Served) -> list[list[list[int]]]:
    """For each round, each caller's held-out row indices: 1 to MAX_CALLER_ROWS rows, no row shared with
    another caller of the round, and no two callers' rows alike (held-out sets may repeat a row: iris does)."""
    n = len(next(iter(served.held_out.values())))
    seen: set[bytes] = set()
    distinct = []
    for i in range(n):
        key = b"".join(values[i].tobytes() for values in served.held_out.values())
        if key not in seen:
            seen.add(key)
            distinct.append(i)
    plan = []
    for r in range(ROUNDS):
        sizes = [1 + (i + r) % MAX_CALLER_ROWS for i in range(CALLERS)]
        assert sum(sizes) <= len(distinct), f"{served.name}: too few distinct held-out rows for {CALLERS} callers"
        start = r * 7 % len(distinct)  # each round its own rows, where the held-out set allows
        order = distinct[start:] + distinct[:start]
        ends = np.cumsum(sizes)
        plan.append([order[end - size : end] for size, end in zip(sizes, ends, strict=True)])
    return plan


def test_concurrent_callers_share_runs_and_each_gets_exactly_its_own_rows(served: Served) -> None:
    """CALLERS threads, each with its own tritonclient client and its own rows, call at once, ROUNDS times;
    every other caller JSON both ways, the rest raw. Each answer is ONNX Runtime's for that caller's rows
    alone, every row ran once, and fewer runs than requests: callers' rows shared a run."""
    plan = caller_rows(served)
    results: list[list[Any]] = [[None] * CALLERS for _ in range(ROUNDS)]
    start = threading.Barrier(CALLERS, timeout=60)
    outputs = [triton.InferRequestedOutput(o.name, binary_data=False) for o in served.session.get_outputs()]

    def call(i: int) -> None:
        binary = i % 2 == 1
        with client(served) as c:
            for r, round_ in enumerate(plan):
                inputs = infer_inputs(served, served.rows(round_[i]), binary=binary)
                start.wait()
                results[r][i] = c.infer(served.name, inputs, outputs=None if binary else outputs, request_id=f"{r}-{i}")

    count, total = batch_runs(served)
    with ThreadPoolExecutor(CALLERS) as pool:
        list(pool.map(call, range(CALLERS)))  # re-raises a caller's failure
    runs, rows = batch_runs(served)

    for r, round_ in enumerate(plan):
        for i, index in enumerate(round_):
            who = f"{served.name} round {r} caller {i} (rows {index})"
            assert results[r][i].get_response()["id"] == f"{r}-{i}", who
            check_answer(served, results[r][i], served.rows(index), who, binary=i % 2 == 1)
    requests = CALLERS * ROUNDS
    assert rows - total == sum(len(index) for round_ in plan for index in round_), "every row ran once"
    assert runs - count < requests, f"{requests} concurrent requests took {runs - count} runs: none was shared"
