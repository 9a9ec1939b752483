"""The publisher (``python -m mlapp.publish`` and its Python API) on models nobody here trained.

What it promises (docs/trainer-contract.md): a model under its gate is never published (exit 2); a
model or outputs that break the contract are refused with a message naming the file, metric or
tensor (exit 4); anything else is exit 1, usage errors included, since argparse's 2 would read as
the gate. A version is published whole or not at all, whatever kills the publisher, on stores that
cannot rename directories too, and a damaged version is published again by the Job's retry. The
model file is read once, into a sealed memory file, and that copy is what is checked and written.
"""

from __future__ import annotations

import builtins
import collections
import contextlib
import dataclasses
import datetime as dt
import errno
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from onnx import TensorProto, helper

from mlapp import contract, store
from mlapp import publish as publisher
from mlapp.gate import MAX_METRICS_BYTES, Gate
from mlapp.publish import ContractError, GateMissed, PublishError, publish, publish_run

from . import gcsfuse_sim, models
from .helpers import GCSFUSE_SIM, PASSWORD, USER, Server, app_env

NAME = "m"
VERSION = "v1"
IMAGE = "registry.example/team/trainer@sha256:0123abcd"
PLUGIN = {"name": "image-classifier", "input": "input", "output": "probabilities", "height": 8, "width": 8,
          "foreground": "light"}  # fmt: skip
# What the plug-in records of itself once checked: PLUGIN with its defaults filled in.
PLUGIN_RECORD = {**PLUGIN, "mean": 0.0, "std": 1.0, "scores": "probabilities"}
# two_inputs' signature, exactly as ONNX Runtime reports it, dynamic dimensions as -1.
TWO_INPUTS_SIGNATURE = {
    "inputs": [
        {"name": "features", "datatype": "FP32", "shape": [-1, 4]},
        {"name": "token_ids", "datatype": "INT64", "shape": [-1, -1]},
    ],
    "outputs": [
        {"name": "scores", "datatype": "FP32", "shape": [-1, 3]},
        {"name": "best", "datatype": "INT64", "shape": [-1]},
    ],
}
KILL_TRIES = 30


def cli(*args: str | Path, wrapper: list[str] | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m mlapp.publish ARGS`` as the publish Job runs it; its log is on stderr."""
    return subprocess.run(
        [sys.executable, *(wrapper or []), "-m", "mlapp.publish", *map(str, args)],
        env=app_env(**env), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def into(store_dir: Path, version: str = VERSION) -> list[str]:
    return ["--model-dir", str(store_dir), "--model-name", NAME, "--version", version]


def metadata(directory: Path) -> dict[str, Any]:
    meta: dict[str, Any] = json.loads((directory / store.METADATA_FILE).read_text(encoding="utf-8"))
    return meta


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def staging_files(directory: Path) -> list[str]:
    return [n for n in names(directory) if store.staging_target(n)] if directory.is_dir() else []


def digest(data: bytes) -> store.ModelFile:
    return store.ModelFile(hashlib.sha256(data).hexdigest(), len(data))


def write_text(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def image_classifier(classes: int = 3) -> bytes:
    """FP32 ``input`` [N, 1, 8, 8] -> ``probabilities`` [N, classes]: a model the image-classifier plug-in fits."""
    weights = np.random.default_rng(5).standard_normal((64, classes)).astype(np.float32)
    nodes = [
        helper.make_node("Flatten", ["input"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "W"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    return models.model_bytes(
        nodes,
        [models.tensor("input", "FP32", ["N", 1, 8, 8])],
        [models.tensor("probabilities", "FP32", ["N", classes])],
        {"W": weights},
    )


def zipmap_classifier() -> bytes:
    """The output skl2onnx gives a classifier unless told ``zipmap: False``: a list of {class: probability}."""
    dictionaries = helper.make_sequence_type_proto(
        helper.make_map_type_proto(TensorProto.INT64, helper.make_tensor_type_proto(TensorProto.FLOAT, []))
    )
    graph = helper.make_graph(
        [helper.make_node("ZipMap", ["scores"], ["probabilities"], domain="ai.onnx.ml", classlabels_int64s=[0, 1])],
        "g",
        [models.tensor("scores", "FP32", ["N", 2])],
        [helper.make_value_info("probabilities", dictionaries)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)])
    model.ir_version = 9
    return bytes(model.SerializeToString())


def large_model() -> bytes:
    """A model of 4 MiB (its weights), so that writing it into the store takes long enough to be interrupted."""
    weights = np.random.default_rng(11).standard_normal((1024, 1024)).astype(np.float32)
    return models.model_bytes(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        [models.tensor("x", "FP32", ["N", 1024])],
        [models.tensor("y", "FP32", ["N", 1024])],
        {"W": weights},
    )


def write_run(
    store_dir: Path,
    model: bytes,
    version: str = VERSION,
    *,
    metrics: str | None = '{"accuracy": 0.95, "loss": 0.12}',
    labels: str | None = None,
    serving: Mapping[str, Any] | None = None,
) -> Path:
    """A training run's outputs where the training Job leaves them, and a checkpoint of it."""
    run = store.run_dir(store_dir, NAME, version)
    run.mkdir(parents=True)
    (run / contract.TRAINER_MODEL_FILE).write_bytes(model)
    if metrics is not None:
        write_text(run / contract.TRAINER_METRICS_FILE, metrics)
    if labels is not None:
        write_text(run / contract.TRAINER_LABELS_FILE, labels)
    if serving is not None:
        write_text(run / contract.TRAINER_SERVING_FILE, json.dumps(serving))
    checkpoints = store.checkpoint_dir(store_dir, NAME, version)
    checkpoints.mkdir(parents=True)
    (checkpoints / "last.pt").write_bytes(b"resumable state")
    return run


def memory_files() -> int:
    """How many of ModelBytes' memory files this process holds open (none where there is no procfs)."""
    count = 0
    if not Path("/proc/self/fd").is_dir():
        return count
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own descriptor, closed by now
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("/memfd:mlapp-model")
    return count


# ---------------------------------------------------------------- the command line


def test_cli_publishes_a_model_with_its_format_3_metadata(tmp_path: Path) -> None:
    data = models.two_inputs()
    source = models.write(tmp_path / "scorer.onnx", data)
    metrics = write_text(tmp_path / "metrics.json", '{"accuracy": 0.93, "loss": 0.2}')
    labels = write_text(tmp_path / "labels.txt", "low\nmid\nhigh\n\n")
    store_dir = tmp_path / "store"
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    result = cli(source, *into(store_dir), "--metrics", metrics, "--gate", "accuracy>=0.9", "--labels", labels,
                 "--batchable", MLAPP_TRAINER_IMAGE=IMAGE)  # fmt: skip
    assert result.returncode == contract.EXIT_OK, result.stderr
    directory = store_dir / NAME / VERSION
    record = digest(data)
    assert f"published {directory} ({record.size} bytes, sha256 {record.sha256})" in result.stderr

    meta = metadata(directory)
    created = dt.datetime.fromisoformat(meta.pop("created_at"))
    assert before <= created <= dt.datetime.now(dt.UTC)
    assert meta == {
        "format_version": store.FORMAT_VERSION,
        "name": NAME,
        "version": VERSION,
        "model": {"file": "model.onnx", "sha256": record.sha256, "bytes": record.size},
        "signature": TWO_INPUTS_SIGNATURE,
        "metrics": {"accuracy": 0.93, "loss": 0.2},
        "gate": {"metric": "accuracy", "direction": "maximize", "threshold": 0.9, "value": 0.93},
        "labels": ["low", "mid", "high"],
        "batchable": True,
        "plugin": None,
        "producer": {"trainer_image": IMAGE},
    }
    # The signature is ONNX Runtime's own report of the file, a dynamic dimension as -1.
    session = models.session(data)
    for role, args in (("inputs", session.get_inputs()), ("outputs", session.get_outputs())):
        reported = [(a.name, [d if isinstance(d, int) else -1 for d in a.shape]) for a in args]
        assert [(t["name"], t["shape"]) for t in meta["signature"][role]] == reported, role
    # The version holds the model and its record, nothing else; the server may run as another user.
    assert names(directory) == ["metadata.json", "model.onnx"]
    assert (directory / "model.onnx").read_bytes() == data
    for file in names(directory):
        assert (directory / file).stat().st_mode & 0o044 == 0o044, file
    assert names(store_dir / NAME) == [VERSION]


def test_cli_publishes_a_plug_in_that_fits_with_its_labels(tmp_path: Path) -> None:
    source = models.write(tmp_path / "classifier.onnx", image_classifier(3))
    serving = write_text(tmp_path / "serving.json", json.dumps({"batchable": True, "plugin": PLUGIN}))
    labels = write_text(tmp_path / "labels.txt", "cat\ndog\nbird\n")
    result = cli(source, *into(tmp_path / "store"), "--serving", serving, "--labels", labels)
    assert result.returncode == contract.EXIT_OK, result.stderr
    meta = metadata(tmp_path / "store" / NAME / VERSION)
    assert meta["plugin"] == PLUGIN_RECORD
    assert meta["labels"] == ["cat", "dog", "bird"]
    assert meta["batchable"] is True  # serving.json's, with no --batchable
    # Without metrics, a gate or a trainer image, the record says so rather than guessing.
    assert (meta["metrics"], meta["gate"], meta["producer"]) == (None, None, {})


@pytest.mark.parametrize(
    ("gate", "metrics", "code"),
    [
        ("accuracy>=0.9", {"accuracy": 0.89}, contract.EXIT_GATE),
        ("rmse<=0.3", {"rmse": 0.31}, contract.EXIT_GATE),
        ("accuracy>=0.9", {"accuracy": 0.9}, contract.EXIT_OK),  # the threshold itself passes
        ("rmse<=0.3", {"rmse": 0.3}, contract.EXIT_OK),
    ],
    ids=["maximize-under", "minimize-over", "maximize-at-threshold", "minimize-at-threshold"],
)
def test_cli_judges_the_gate_before_anything_is_written(
    tmp_path: Path, gate: str, metrics: dict[str, float], code: int
) -> None:
    source = models.write(tmp_path / "model.onnx", models.identity("FP32"))
    metrics_file = write_text(tmp_path / "metrics.json", json.dumps(metrics))
    store_dir = tmp_path / "store"
    result = cli(source, *into(store_dir), "--metrics", metrics_file, "--gate", gate)
    assert result.returncode == code, result.stderr
    ((metric, value),) = metrics.items()
    parsed = Gate.parse(gate)
    if code == contract.EXIT_GATE:
        assert f"{metric} is {value:g}, on the wrong side of the gate {gate}: not publishing" in result.stderr
        assert not store_dir.exists()
    else:
        assert metadata(store_dir / NAME / VERSION)["gate"] == {**parsed.as_dict(), "value": value}


@dataclasses.dataclass(frozen=True)
class Breach:
    """A model or declaration the contract refuses: the files it is made of, the arguments, what the refusal says.

    ``{tmp}`` in ``args`` and ``says`` stands for the test's directory, where ``model`` (None: no model file)
    is model.onnx and each of ``files`` is written."""

    model: Callable[[], bytes] | None
    args: tuple[str, ...] = ()
    files: Mapping[str, str] = dataclasses.field(default_factory=dict)
    says: tuple[str, ...] = ()


SERVING_TWO_INPUTS = json.dumps({"plugin": {**PLUGIN, "input": "features", "output": "scores"}})
BREACHES = {
    "missing model": Breach(None, says=("{tmp}/model.onnx does not exist",)),
    "not ONNX": Breach(lambda: b"PK\x03\x04 a zip file, say", says=("ONNX Runtime cannot load the model",)),
    "an output that is no tensor": Breach(
        zipmap_classifier,
        says=("output 'probabilities' is seq(map(int64,tensor(float)))", "{'zipmap': False}"),
    ),
    "metrics a list": Breach(
        models.two_inputs, ("--metrics", "{tmp}/metrics.json"), {"metrics.json": "[0.97]"},
        ("{tmp}/metrics.json must hold a JSON object of metric names and numbers, not list",),
    ),
    "metric NaN": Breach(
        models.two_inputs, ("--metrics", "{tmp}/metrics.json"), {"metrics.json": '{"accuracy": NaN}'},
        ("{tmp}/metrics.json: metric 'accuracy' must be a finite number, got nan",),
    ),
    "metric a string": Breach(
        models.two_inputs, ("--metrics", "{tmp}/metrics.json"), {"metrics.json": '{"accuracy": "0.97"}'},
        ("metric 'accuracy' must be a finite number, got '0.97'",),
    ),
    "metric a boolean": Breach(
        models.two_inputs, ("--metrics", "{tmp}/metrics.json"), {"metrics.json": '{"accuracy": true}'},
        ("metric 'accuracy' must be a finite number, got True",),
    ),
    "metrics not JSON": Breach(
        models.two_inputs, ("--metrics", "{tmp}/metrics.json"), {"metrics.json": "accuracy: 0.97"},
        ("{tmp}/metrics.json is not JSON text",),
    ),
    "gate's metric missing": Breach(
        models.two_inputs, ("--metrics", "{tmp}/metrics.json", "--gate", "accuracy>=0.9"),
        {"metrics.json": '{"loss": 0.1, "f1": 0.8}'},
        ("the gate's metric 'accuracy' is not among the run's metrics (it reported: f1, loss)",),
    ),
    "batchable, mixes rows": Breach(
        models.mixes_rows, ("--batchable",),
        says=("its output 'y' for a row changes when another row is run with it", "not batchable"),
    ),
    "batchable, data-dependent length": Breach(
        models.detector, ("--batchable",), says=("its output 'found' has", "its rows are not the callers' rows")
    ),
    "batchable, fixed first dimension": Breach(
        lambda: models.identity("FP32", (2, 3)), ("--batchable",),
        says=("input 'x' (FP32 [2, 3]) has a fixed first dimension (2)",),
    ),
    "batchable in serving.json, mixes rows": Breach(
        models.mixes_rows, ("--serving", "{tmp}/serving.json"), {"serving.json": '{"batchable": true}'},
        ("its output 'y' for a row changes",),
    ),
    "plug-in on two inputs": Breach(
        models.two_inputs, ("--serving", "{tmp}/serving.json"), {"serving.json": SERVING_TWO_INPUTS},
        ("image-classifier: a picture is all a caller sends, but the model takes 2 inputs",),
    ),
    "labels not one per class": Breach(
        image_classifier, ("--serving", "{tmp}/serving.json", "--labels", "{tmp}/labels.txt"),
        {"serving.json": json.dumps({"plugin": PLUGIN}), "labels.txt": "cat\ndog\n"},
        ("image-classifier: 2 labels for an output of 3 classes",),
    ),
    "serving.json unknown key": Breach(
        models.two_inputs, ("--serving", "{tmp}/serving.json"), {"serving.json": '{"batchable": false, "batch": 8}'},
        ("{tmp}/serving.json: unknown key(s) batch; known: batchable, plugin",),
    ),
    "labels file empty": Breach(
        models.two_inputs, ("--labels", "{tmp}/labels.txt"), {"labels.txt": "\n\n"},
        ("{tmp}/labels.txt holds no labels",),
    ),
}  # fmt: skip


@pytest.mark.parametrize("breach", BREACHES.values(), ids=BREACHES.keys())
def test_cli_refuses_what_breaks_the_contract_with_exit_4(tmp_path: Path, breach: Breach) -> None:
    if breach.model is not None:
        (tmp_path / "model.onnx").write_bytes(breach.model())
    for name, text in breach.files.items():
        write_text(tmp_path / name, text)
    store_dir = tmp_path / "store"
    result = cli(tmp_path / "model.onnx", *into(store_dir), *(a.replace("{tmp}", str(tmp_path)) for a in breach.args))
    assert result.returncode == contract.EXIT_CONTRACT, result.stderr
    assert "ERROR mlapp.publish not published: " in result.stderr
    for text in breach.says:
        assert text.replace("{tmp}", str(tmp_path)) in result.stderr
    assert not store_dir.exists()  # nothing written, not even a directory


def test_a_scikit_learn_classifier_converted_with_its_zipmap_is_refused_with_the_hint(tmp_path: Path) -> None:
    skl2onnx = pytest.importorskip("skl2onnx")
    from sklearn.linear_model import LogisticRegression

    x = np.random.default_rng(0).standard_normal((40, 4)).astype(np.float32)
    classifier = LogisticRegression().fit(x, (x[:, 0] > 0).astype(np.int64))
    converted = skl2onnx.to_onnx(classifier, x[:1], target_opset={"": 17, "ai.onnx.ml": 3})  # zipmap not turned off
    source = models.write(tmp_path / "model.onnx", converted.SerializeToString())
    result = cli(source, *into(tmp_path / "store"))
    assert result.returncode == contract.EXIT_CONTRACT, result.stderr
    assert "output 'output_probability' is seq(map(int64,tensor(float)))" in result.stderr
    assert "converted with options={id(model): {'zipmap': False}}" in result.stderr
    assert not (tmp_path / "store").exists()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["{model}", "--model-dir", "{store}", "--model-name", NAME],
         "the following arguments are required: --version"),
        (["{model}", *into(Path("{store}")), "--bogus"], "unrecognized arguments: --bogus"),
        (["{model}", *into(Path("{store}")), "--gate", "accuracy>0.9"], "must read METRIC>=THRESHOLD"),
        (["{model}", *into(Path("{store}")), "--gate", "accuracy>=inf"], "'inf' must be a finite number"),
        (["{model}", "--model-dir", "/", "--model-name", NAME, "--version", VERSION],
         "--model-dir must be a directory path that is not empty, not the filesystem root"),
        (["{model}", *into(Path("{store}"), "../v1")], "--version must be 1-128 characters"),
        (["{model}", "--model-dir", "{store}", "--model-name", ".runs", "--version", VERSION],
         "--model-name must be 1-128 characters"),
        (into(Path("{store}")), "name the ONNX file to publish, or --run DIR"),
        (["{model}", *into(Path("{store}")), "--gate", "accuracy>=0.9"], "needs the run's metrics (--metrics)"),
    ],
    ids=["no-version", "unknown-option", "bad-gate", "infinite-threshold", "store-at-root", "version-escapes",
         "name-hides", "no-model", "gate-without-metrics"],
)  # fmt: skip
def test_cli_usage_errors_exit_1_never_2(tmp_path: Path, args: list[str], says: str) -> None:
    """argparse's own exit code, 2, would tell the Job the model is under its gate."""
    model = models.write(tmp_path / "model.onnx", models.identity("FP32"))
    store_dir = tmp_path / "store"
    result = cli(*(a.format(model=model, store=store_dir) for a in args))
    assert result.returncode == contract.EXIT_ERROR, result.stderr
    assert says in result.stderr
    assert not store_dir.exists()


def test_a_published_version_never_changes(tmp_path: Path) -> None:
    data = models.identity("FP32")
    source = models.write(tmp_path / "model.onnx", data)
    store_dir = tmp_path / "store"
    assert publish(source, store_dir, NAME, VERSION).created
    directory = store_dir / NAME / VERSION
    files = {name: (directory / name).stat() for name in names(directory)}

    same = cli(source, *into(store_dir), "--batchable")
    assert same.returncode == contract.EXIT_OK, same.stderr
    record = digest(data)
    assert f"already published: {directory} ({record.size} bytes, sha256 {record.sha256})" in same.stderr

    other = models.identity("INT64")
    other_source = models.write(tmp_path / "other.onnx", other)
    refused = cli(other_source, *into(store_dir))
    assert refused.returncode == contract.EXIT_ERROR, refused.stderr
    assert (
        f"{directory} already holds another model ({record.size} bytes, sha256 {record.sha256[:12]}…; this one is "
        f"{len(other)} bytes, sha256 {digest(other).sha256[:12]}…)"
    ) in refused.stderr

    # Neither run wrote anything: the same files, untouched, and no staging file beside them.
    assert names(directory) == ["metadata.json", "model.onnx"]
    for name, stat in files.items():
        now = (directory / name).stat()
        assert (now.st_ino, now.st_mtime_ns, now.st_size) == (stat.st_ino, stat.st_mtime_ns, stat.st_size), name
    assert metadata(directory)["batchable"] is False
    assert (directory / "model.onnx").read_bytes() == data


# ---------------------------------------------------------------- --run, the publish Job's form


def test_run_publishes_the_runs_outputs_then_removes_them_and_its_checkpoints(tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    data = image_classifier(3)
    run = write_run(store_dir, data, labels="cat\ndog\nbird\n", serving={"batchable": True, "plugin": PLUGIN})
    other_run = write_run(store_dir, models.identity("FP32"), "v2")  # another version's run, still training
    result = cli("--run", run, *into(store_dir), "--gate", "accuracy>=0.9", MLAPP_TRAINER_IMAGE=IMAGE)
    assert result.returncode == contract.EXIT_OK, result.stderr

    directory = store_dir / NAME / VERSION
    meta = store.verify(directory)
    assert meta["model"] == digest(data).as_dict()
    assert meta["metrics"] == {"accuracy": 0.95, "loss": 0.12}
    assert meta["gate"] == {"metric": "accuracy", "direction": "maximize", "threshold": 0.9, "value": 0.95}
    assert meta["labels"] == ["cat", "dog", "bird"]
    assert (meta["batchable"], meta["plugin"]) == (True, PLUGIN_RECORD)
    assert meta["producer"] == {"trainer_image": IMAGE}
    # This version's outputs and checkpoints are gone; the other version's are not touched.
    assert not run.exists()
    assert not store.checkpoint_dir(store_dir, NAME, VERSION).exists()
    assert names(other_run) == ["metrics.json", "model.onnx"]
    assert names(store.checkpoint_dir(store_dir, NAME, "v2")) == ["last.pt"]
    assert names(store_dir / NAME) == [".checkpoints", ".runs", VERSION]


def test_run_of_a_published_version_exits_0_without_its_outputs_and_removes_leftovers(tmp_path: Path) -> None:
    """The publish Job's retry after a success whose pod died before it could say so."""
    store_dir = tmp_path / "store"
    run = write_run(store_dir, models.identity("FP32"))
    first = publish_run(run, store_dir, NAME, VERSION, clean=False)
    assert first.created
    directory = store_dir / NAME / VERSION
    record = (directory / "metadata.json").stat()

    # The outputs are gone already; a checkpoint directory is left over (a trainer pod that wrote late).
    for path in sorted(run.iterdir()):
        path.unlink()
    run.rmdir()
    retry = cli("--run", run, *into(store_dir), "--gate", "accuracy>=0.9")
    assert retry.returncode == contract.EXIT_OK, retry.stderr
    assert f"already published: {directory}" in retry.stderr
    assert not store.checkpoint_dir(store_dir, NAME, VERSION).exists()
    assert (directory / "metadata.json").stat().st_mtime_ns == record.st_mtime_ns
    assert names(store_dir / NAME) == [".checkpoints", ".runs", VERSION]

    # Outputs of another attempt of the same version: the version stays as it is, the outputs go.
    run_again = write_run(store_dir, models.identity("INT64"))
    again = cli("--run", run_again, *into(store_dir))
    assert again.returncode == contract.EXIT_OK, again.stderr
    assert not run_again.exists()
    assert store.verify(directory)["model"] == first.record.as_dict()


@pytest.mark.parametrize("missing", ["metrics.json", "model.onnx", "the whole run"])
def test_run_without_a_required_output_exits_4_naming_it(tmp_path: Path, missing: str) -> None:
    store_dir = tmp_path / "store"
    run = write_run(store_dir, models.identity("FP32"))
    if missing == "the whole run":
        for path in sorted(run.iterdir()):
            path.unlink()
        run.rmdir()
        missing = "metrics.json"  # the first the publisher looks for
    else:
        (run / missing).unlink()
    result = cli("--run", run, *into(store_dir))
    assert result.returncode == contract.EXIT_CONTRACT, result.stderr
    assert f"{run / missing} does not exist" in result.stderr
    assert not (store_dir / NAME / VERSION).exists()
    # Nothing is removed when nothing was published: the outputs and checkpoints are there to look at.
    assert names(store.checkpoint_dir(store_dir, NAME, VERSION)) == ["last.pt"]


# The small files a run hands over, each one byte past its bound: JSON whitespace, so that only the size
# is wrong (a labels file of blank lines would otherwise be refused as empty, not as too large).
OVERSIZED = {
    contract.TRAINER_METRICS_FILE: (MAX_METRICS_BYTES, "a metrics file holds a few numbers"),
    contract.TRAINER_SERVING_FILE: (publisher.MAX_SERVING_BYTES, "too large for a serving.json"),
    contract.TRAINER_LABELS_FILE: (publisher.MAX_LABEL_BYTES, "too large for a labels file"),
}


@pytest.mark.parametrize("file", OVERSIZED)
def test_a_run_file_over_its_bound_exits_4_without_being_read_whole(tmp_path: Path, file: str) -> None:
    store_dir = tmp_path / "store"
    run = write_run(store_dir, models.identity("FP32"))
    limit, says = OVERSIZED[file]
    body = '{"accuracy": 0.95}' if file != contract.TRAINER_LABELS_FILE else "a\nb\nc"
    (run / file).write_bytes(body.encode() + b" " * (limit + 1 - len(body)))
    result = cli("--run", run, *into(store_dir))
    assert result.returncode == contract.EXIT_CONTRACT, result.stderr
    assert f"{run / file} is over {limit} bytes" in result.stderr
    assert says in result.stderr
    assert not (store_dir / NAME / VERSION).exists()


def test_a_metadata_file_over_its_bound_is_no_commit_record(tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    model = tmp_path / "model.onnx"
    model.write_bytes(models.identity("FP32"))
    published = publish(model, store_dir, NAME, VERSION)
    record = published.directory / store.METADATA_FILE
    record.write_bytes(record.read_bytes() + b" " * (store.MAX_METADATA_BYTES + 1))
    with pytest.raises(store.NotPublished, match=f"is over {store.MAX_METADATA_BYTES} bytes"):
        store.verify(published.directory)


@pytest.mark.parametrize("extra", [["{run}/model.onnx"], ["--metrics", "{run}/metrics.json"], ["--batchable"]])
def test_run_with_a_model_or_declarations_of_its_own_exits_1(tmp_path: Path, extra: list[str]) -> None:
    store_dir = tmp_path / "store"
    run = write_run(store_dir, models.identity("FP32"))
    result = cli("--run", run, *into(store_dir), *(a.format(run=run) for a in extra))
    assert result.returncode == contract.EXIT_ERROR, result.stderr
    assert (
        "--run reads the model, metrics and serving.json from the run's directory: give none of them" in result.stderr
    )
    assert names(run) == ["metrics.json", "model.onnx"]
    assert not (store_dir / NAME / VERSION).exists()


# ---------------------------------------------------------------- crash safety


class Publisher:
    """``python -m mlapp.publish MODEL`` into ``store_dir`` as a process, to be killed."""

    def __init__(self, source: Path, store_dir: Path, version: str) -> None:
        self.directory = store_dir / NAME / version
        cmd = [sys.executable, "-m", "mlapp.publish", str(source), *into(store_dir, version)]
        self.proc = subprocess.Popen(cmd, env=app_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def wait_for(self, path: Path) -> None:
        """Until ``path`` exists or the publisher has exited."""
        deadline = time.monotonic() + 60
        while not path.exists() and self.proc.poll() is None:
            assert time.monotonic() < deadline, f"the publisher neither wrote {path} nor exited"
            time.sleep(0.0005)

    def kill(self) -> bool:
        """SIGKILL; whether it was still running."""
        self.proc.kill()
        return self.proc.wait(timeout=60) == -9


def state_after_kill(directory: Path, expected: store.ModelFile) -> str:
    """What a killed publisher left, checked: whole (the server loads the model its record names) or not published."""
    if store.is_complete(directory):
        meta, model = store.load(directory)
        with model:
            assert (model.record, meta["model"]) == (expected, expected.as_dict()), directory
        return "complete"
    with pytest.raises(store.NotPublished):
        store.load(directory)
    # The record is written last: a torn version never has one.
    assert not (directory / "metadata.json").exists(), names(directory)
    if staging_files(directory):
        return "staging file left"
    return "model without its record" if (directory / "model.onnx").exists() else "nothing written"


def test_kill_9_at_any_moment_leaves_a_version_whole_or_not_published(tmp_path: Path) -> None:
    """The guarantee the trainer's publishing had: whatever instant SIGKILL lands, the server either loads the
    whole model its record names or finds no version, and the next publisher completes it and removes what the
    killed one left."""
    data = large_model()
    expected = digest(data)
    source = models.write(tmp_path / "model.onnx", data)
    store_dir = tmp_path / "store"

    # One whole run measures how long the publisher takes, and how long its writes into the store.
    started = time.monotonic()
    whole = Publisher(source, store_dir, "whole")
    whole.wait_for(whole.directory)
    writing = time.monotonic()
    whole.wait_for(whole.directory / "metadata.json")
    commit = time.monotonic() - writing
    assert whole.proc.wait(timeout=60) == contract.EXIT_OK
    run_time = time.monotonic() - started

    rng = np.random.default_rng(20)
    outcomes: collections.Counter[str] = collections.Counter()
    for attempt in range(KILL_TRIES):
        publisher = Publisher(source, store_dir, f"k{attempt}")
        if attempt % 3 == 0:  # anywhere in the run
            time.sleep(rng.uniform(0, run_time * 1.1))
        else:  # while it writes into the store, where a kill can tear something
            publisher.wait_for(publisher.directory)
            time.sleep(rng.uniform(0, commit * 1.5))
        killed = publisher.kill()
        state = state_after_kill(publisher.directory, expected)
        outcomes[state if killed else "finished before the kill"] += 1
    print(f"kill -9 of {run_time:.3f}s runs writing for {commit * 1000:.1f}ms: {dict(outcomes)}")
    assert outcomes["finished before the kill"] < KILL_TRIES, "no kill interrupted a publisher"

    # The next publisher of each version (the Job's retry) publishes it whole and leaves no staging file.
    for attempt in range(KILL_TRIES):
        directory = store_dir / NAME / f"k{attempt}"
        was_complete = store.is_complete(directory)
        published = publish(source, store_dir, NAME, f"k{attempt}")
        assert published.created is not was_complete, directory
        assert store.verify(directory)["model"] == expected.as_dict()
        assert names(directory) == ["metadata.json", "model.onnx"]
        assert (directory / "model.onnx").read_bytes() == data


@pytest.fixture
def refused_directory_renames(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process's os refuses directory renames and hard links as gcsfuse does, until the test ends."""
    for name in ("rename", "replace", "link"):
        monkeypatch.setattr(os, name, getattr(os, name))  # restored after the test
    monkeypatch.setenv(gcsfuse_sim.MARKER, "0")
    gcsfuse_sim.refuse_directory_renames()


@pytest.mark.usefixtures("refused_directory_renames")
def test_publishing_renames_no_directory(tmp_path: Path) -> None:
    """Bug (the trainer's publishing, before): a staging directory renamed into place, which gcsfuse refuses on
    a flat bucket, so the publish Job failed on every retry."""
    full = tmp_path / "a-directory"
    full.mkdir()
    (full / "model.onnx").write_bytes(b"x")
    with pytest.raises(OSError, match="too many objects to be renamed") as refused:
        os.replace(full, tmp_path / "elsewhere")  # the simulation does refuse
    assert refused.value.errno == errno.EMFILE

    store_dir = tmp_path / "bucket"
    data = models.two_inputs()
    directory = store_dir / NAME / VERSION
    directory.mkdir(parents=True)
    (directory / "model.onnx").write_bytes(data[:100])  # a torn earlier attempt, replaced file by file
    published = publish_run(write_run(store_dir, data), store_dir, NAME, VERSION)
    assert published.created
    assert store.verify(directory)["model"] == digest(data).as_dict()


def test_cli_publishes_under_the_gcsfuse_simulation(tmp_path: Path) -> None:
    store_dir = tmp_path / "bucket"
    data = models.two_inputs()
    run = write_run(store_dir, data, serving={"batchable": True})
    result = cli("--run", run, *into(store_dir), "--gate", "accuracy>=0.9", wrapper=GCSFUSE_SIM)
    assert result.returncode == contract.EXIT_OK, result.stderr
    meta = store.verify(store_dir / NAME / VERSION)
    assert (meta["model"], meta["batchable"]) == (digest(data).as_dict(), True)
    assert not run.exists()


DAMAGES = ["truncated model", "one byte flipped", "metadata not UTF-8", "metadata of format 2", "zero-byte metadata"]


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_version_is_published_again_by_the_jobs_retry(tmp_path: Path, damage: str) -> None:
    store_dir = tmp_path / "store"
    data = models.two_inputs()
    directory = store_dir / NAME / VERSION
    publish(models.write(tmp_path / "model.onnx", data), store_dir, NAME, VERSION)
    model_file, record_file = directory / "model.onnx", directory / "metadata.json"
    if damage == "truncated model":
        model_file.write_bytes(data[: len(data) // 2])
    elif damage == "one byte flipped":
        middle = len(data) // 2
        model_file.write_bytes(data[:middle] + bytes([data[middle] ^ 0x01]) + data[middle + 1 :])
    elif damage == "metadata not UTF-8":
        record_file.write_bytes(b"\xff\xfe{\x00}\x00")
    elif damage == "metadata of format 2":  # what the digits trainer published before any model could be
        old = {k: v for k, v in metadata(directory).items() if k != "model"}
        write_text(record_file, json.dumps({**old, "format_version": 2, "accuracy": 0.97}))
        model_file.write_bytes(models.identity("FP32"))
    else:
        record_file.write_bytes(b"")
    assert not store.is_complete(directory)
    with pytest.raises(store.NotPublished) as refused:
        store.load(directory)
    # Only a model that contradicts a valid record is damaged; the rest has no record yet.
    assert isinstance(refused.value, store.Damaged) == (damage in ("truncated model", "one byte flipped"))

    run = write_run(store_dir, data)
    result = cli("--run", run, *into(store_dir), "--gate", "accuracy>=0.9")
    assert result.returncode == contract.EXIT_OK, result.stderr
    assert f"INFO mlapp.publish published {directory}" in result.stderr
    meta = store.verify(directory)
    assert (meta["format_version"], meta["model"]) == (store.FORMAT_VERSION, digest(data).as_dict())
    assert meta["signature"] == TWO_INPUTS_SIGNATURE
    assert names(directory) == ["metadata.json", "model.onnx"]
    assert not run.exists()


# ---------------------------------------------------------------- read once


def test_the_model_file_is_read_once_and_that_copy_is_what_is_published(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import onnxruntime as ort

    data = models.two_inputs()
    source = models.write(tmp_path / "model.onnx", data)
    replacement = models.write(tmp_path / "replacement.onnx", models.identity("INT64"))
    opened: list[str] = []

    def spy(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def call(file: Any, *args: Any, **kwargs: Any) -> Any:
            if isinstance(file, str | bytes | os.PathLike) and os.fsdecode(file) == str(source):
                opened.append(name)
            return real(file, *args, **kwargs)

        return call

    # pathlib opens with io.open, the builtin is the same function, and os.open is beneath them all.
    monkeypatch.setattr(io, "open", spy("io.open", io.open))
    monkeypatch.setattr(builtins, "open", spy("open", builtins.open))
    monkeypatch.setattr(os, "open", spy("os.open", os.open))

    real_read = store.ModelBytes.read
    reads: list[Path] = []

    def read(path: Path, expect: store.ModelFile | None = None, limit: int = store.MAX_MODEL_BYTES) -> store.ModelBytes:
        model = real_read(path, expect, limit)
        reads.append(path)
        os.replace(replacement, source)  # the file changes once it was read: what was read is what is published
        return model

    monkeypatch.setattr(store.ModelBytes, "read", read)
    real_session = ort.InferenceSession
    loaded: list[object] = []

    def session(model: object, *args: Any, **kwargs: Any) -> Any:
        loaded.append(model)
        return real_session(model, *args, **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", session)

    published = publish(source, tmp_path / "store", NAME, VERSION, batchable=True)
    assert reads == [source]
    assert opened == ["io.open"]
    assert len(loaded) == 1
    if sys.platform == "linux":
        assert isinstance(loaded[0], str)
        assert re.fullmatch(r"/proc/self/fd/\d+", loaded[0]), loaded
    assert published.record == digest(data)
    assert (published.directory / "model.onnx").read_bytes() == data
    assert published.metadata["signature"] == TWO_INPUTS_SIGNATURE


@pytest.mark.skipif(sys.platform != "linux", reason="memfd_create is Linux's")
def test_model_bytes_are_held_in_a_sealed_memory_file(tmp_path: Path) -> None:
    import onnxruntime as ort

    data = models.two_inputs()
    path = models.write(tmp_path / "model.onnx", data)
    before = memory_files()
    model = store.ModelBytes.read(path)
    assert (model.sha256, model.size, model.record) == (*dataclasses.astuple(digest(data)), digest(data))
    source = model.source
    assert isinstance(source, str)
    match = re.fullmatch(r"/proc/self/fd/(\d+)", source)
    assert match, source
    fd = int(match[1])
    assert os.readlink(source).startswith("/memfd:mlapp-model")
    assert memory_files() == before + 1
    assert os.pread(fd, len(data) + 1, 0) == data
    # Sealed: what was hashed cannot change, grow or shrink.
    for change in (lambda: os.write(fd, b"x"), lambda: os.pwrite(fd, b"x", 0), lambda: os.ftruncate(fd, 1),
                   lambda: os.ftruncate(fd, len(data) + 1)):  # fmt: skip
        with pytest.raises(PermissionError) as refused:
            change()
        assert refused.value.errno == errno.EPERM
    # ONNX Runtime opens the path as a file; the bytes copy out unchanged.
    session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["features", "token_ids"]
    out = io.BytesIO()
    model.write_to(out)
    assert out.getvalue() == data

    model.close()
    assert memory_files() == before
    with pytest.raises(ValueError, match="released"):
        _ = model.source
    model.close()  # twice is harmless


@pytest.mark.parametrize("wrong", ["size", "sha256"])
def test_model_bytes_refuse_a_file_that_does_not_match_its_record(tmp_path: Path, wrong: str) -> None:
    data = models.two_inputs()
    path = models.write(tmp_path / "model.onnx", data)
    actual = digest(data)
    expect = (
        dataclasses.replace(actual, size=actual.size + 1)
        if wrong == "size"
        else dataclasses.replace(actual, sha256=hashlib.sha256(b"another model").hexdigest())
    )
    before = memory_files()
    with pytest.raises(store.Damaged) as refused:
        store.ModelBytes.read(path, expect=expect)
    assert memory_files() == before  # nothing held on to
    if wrong == "size":  # told by the size alone, before a byte is read
        assert str(refused.value) == (
            f"{path} is {actual.size} bytes but metadata.json names {expect.size}: incomplete or damaged"
        )
    else:
        assert str(refused.value) == (
            f"{path} ({actual.size} bytes, sha256 {actual.sha256[:12]}…) does not match metadata.json "
            f"({expect.size} bytes, sha256 {expect.sha256[:12]}…): incomplete or damaged"
        )
    with store.ModelBytes.read(path, expect=actual) as model:
        assert model.record == actual
    with pytest.raises(ValueError, match=f"is {actual.size} bytes; a model file may be at most {actual.size - 1}"):
        store.ModelBytes.read(path, limit=actual.size - 1)
    assert memory_files() == before


# ---------------------------------------------------------------- the Python API


def test_the_python_api_says_what_it_did_and_why_not(tmp_path: Path) -> None:
    assert issubclass(GateMissed, PublishError)
    assert issubclass(ContractError, PublishError)
    data = models.identity("FP32")
    source = models.write(tmp_path / "model.onnx", data)
    store_dir = tmp_path / "store"
    gate = Gate.parse("accuracy>=0.9")

    first = publish(source, store_dir, NAME, VERSION, metrics={"accuracy": 0.95}, gate=gate, labels=["a", "b", "c"])
    assert (first.created, first.directory, first.record) == (True, store_dir / NAME / VERSION, digest(data))
    assert first.metadata == metadata(first.directory)
    assert (first.metadata["labels"], first.metadata["gate"]["value"]) == (["a", "b", "c"], 0.95)
    again = publish(source, store_dir, NAME, VERSION)
    assert (again.created, again.record, again.metadata) == (False, first.record, first.metadata)

    other = models.write(tmp_path / "other.onnx", models.identity("INT64"))
    with pytest.raises(PublishError, match="already holds another model") as refused:
        publish(other, store_dir, NAME, VERSION)
    assert type(refused.value) is PublishError  # a store's fact: exit 1, not the contract's 4
    with pytest.raises(GateMissed, match=re.escape("accuracy is 0.5, on the wrong side of the gate accuracy>=0.9")):
        publish(source, store_dir, NAME, "v2", metrics={"accuracy": 0.5}, gate=gate)
    with pytest.raises(ContractError, match="ONNX Runtime cannot load the model"):
        publish(write_text(tmp_path / "text.onnx", "not a model"), store_dir, NAME, "v2")
    with pytest.raises(ContractError, match=r"label 1 must be a non-empty line of text, got 'b\\nc'"):
        publish(source, store_dir, NAME, "v2", labels=["a", "b\nc"])
    with pytest.raises(PublishError, match="model version must be 1-128 characters"):
        publish(source, store_dir, NAME, "../v2")
    assert names(store_dir / NAME) == [VERSION]

    # publish_run: the caller's labels replace the run's labels.txt; a second run finds the version published.
    run = write_run(store_dir, data, "r1", labels="x\ny\nz\n")
    made = publish_run(run, store_dir, NAME, "r1", gate=gate, labels=["one", "two", "three"], producer={"by": "t"})
    assert made.created
    assert (made.metadata["labels"], made.metadata["producer"]) == (["one", "two", "three"], {"by": "t"})
    assert not run.exists()
    assert not store.checkpoint_dir(store_dir, NAME, "r1").exists()
    retried = publish_run(run, store_dir, NAME, "r1", gate=gate)
    assert (retried.created, retried.metadata) == (False, made.metadata)


@pytest.mark.parametrize(
    ("metrics", "says"),
    [
        ({"accuracy": float("nan")}, "metrics: metric 'accuracy' must be a finite number, got nan"),
        ({"accuracy": "0.97"}, "metrics: metric 'accuracy' must be a finite number, got '0.97'"),
        ({"accuracy": True}, "metrics: metric 'accuracy' must be a finite number, got True"),
        ({"an accuracy": 0.9}, "metrics: metric name 'an accuracy' must be 1-128 characters"),
    ],
    ids=["nan", "string", "boolean", "bad-name"],
)
def test_the_api_holds_metrics_to_the_contract_as_the_command_line_does(
    tmp_path: Path, metrics: dict[str, Any], says: str
) -> None:
    """Bug: publish() took its metrics unchecked: a NaN failed with a bare ValueError after model.onnx was in
    the store, and a string or a boolean was published as a metric."""
    source = models.write(tmp_path / "model.onnx", models.identity("FP32"))
    with pytest.raises(ContractError) as refused:
        publish(source, tmp_path / "store", NAME, VERSION, metrics=metrics)
    assert says in str(refused.value)
    assert not (tmp_path / "store").exists()


def test_a_store_that_cannot_be_written_is_a_publish_error(tmp_path: Path) -> None:
    """Bug: the store's OSError (and a producer record that is no JSON, as a TypeError) escaped publish(),
    whose callers catch PublishError; the record's failure came after model.onnx was written."""
    source = models.write(tmp_path / "model.onnx", models.identity("FP32"))
    not_a_directory = write_text(tmp_path / "store", "a file where the store should be")
    with pytest.raises(
        PublishError, match=f"cannot write version {VERSION} into the store at {not_a_directory}: "
    ) as e:
        publish(source, not_a_directory, NAME, VERSION)
    assert isinstance(e.value.__cause__, NotADirectoryError)
    result = cli(source, *into(not_a_directory))
    assert result.returncode == contract.EXIT_ERROR, result.stderr
    assert f"not published: cannot write version {VERSION} into the store at {not_a_directory}" in result.stderr

    store_dir = tmp_path / "elsewhere"
    with pytest.raises(PublishError, match="the model's metadata cannot be written as JSON"):
        publish(source, store_dir, NAME, VERSION, producer={"started": dt.datetime.now(dt.UTC)})
    assert not store_dir.exists()


# ---------------------------------------------------------------- publish, then serve


def test_a_model_published_by_the_cli_is_served_with_its_signature(tmp_path: Path) -> None:
    data = models.two_inputs()
    store_dir = tmp_path / "store"
    metrics = write_text(tmp_path / "metrics.json", '{"accuracy": 0.91}')
    labels = write_text(tmp_path / "labels.txt", "low\nmid\nhigh\n")
    result = cli(models.write(tmp_path / "scorer.onnx", data), *into(store_dir), "--metrics", metrics,
                 "--gate", "accuracy>=0.9", "--labels", labels, "--batchable", MLAPP_TRAINER_IMAGE=IMAGE)  # fmt: skip
    assert result.returncode == contract.EXIT_OK, result.stderr
    meta = metadata(store_dir / NAME / VERSION)

    srv = Server(tmp_path, store_dir, MLAPP_MODEL_NAME=NAME, MLAPP_MODEL_VERSION=VERSION)
    try:
        srv.wait_for("/v2/health/ready")
        described = httpx.get(f"{srv.url}/v2/models/{NAME}", auth=(USER, PASSWORD))
        assert described.status_code == 200, described.text
        body = described.json()
        assert (body["name"], body["versions"]) == (NAME, [VERSION])
        assert {"inputs": body["inputs"], "outputs": body["outputs"]} == meta["signature"] == TWO_INPUTS_SIGNATURE
        parameters = body["parameters"]
        assert (parameters["batchable"], parameters["labels"], parameters["plugin"]) == (True, meta["labels"], None)
        assert (parameters["metrics"], parameters["gate"]) == (meta["metrics"], meta["gate"])
        assert (parameters["created_at"], parameters["trainer_image"]) == (meta["created_at"], IMAGE)

        features = np.random.default_rng(1).standard_normal((2, 4)).astype(np.float32)
        tokens = np.array([[1, 2, 3], [9, 0, 4]], dtype=np.int64)
        request = {"inputs": [
            {"name": "features", "datatype": "FP32", "shape": [2, 4], "data": features.ravel().tolist()},
            {"name": "token_ids", "datatype": "INT64", "shape": [2, 3], "data": tokens.ravel().tolist()},
        ]}  # fmt: skip
        answer = httpx.post(f"{srv.url}/v2/models/{NAME}/infer", auth=(USER, PASSWORD), json=request)
        assert answer.status_code == 200, answer.text
        scores, best = models.session(data).run(["scores", "best"], {"features": features, "token_ids": tokens})
        outputs = {o["name"]: o for o in answer.json()["outputs"]}
        assert (outputs["scores"]["shape"], outputs["best"]["shape"]) == ([2, 3], [2])
        np.testing.assert_allclose(np.asarray(outputs["scores"]["data"]).reshape(2, 3), scores, rtol=1e-5)
        assert outputs["best"]["data"] == best.tolist()
    finally:
        assert srv.stop() == 0
