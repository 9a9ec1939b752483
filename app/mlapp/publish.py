"""Publish any ONNX model into the model store: judged by its gate, checked by ONNX Runtime, crash-safe.

    python -m mlapp.publish MODEL.onnx --model-dir D --model-name N --version V \\
        [--metrics metrics.json] [--gate 'accuracy>=0.95'] [--labels labels.txt] \\
        [--batchable] [--serving serving.json]
    python -m mlapp.publish --run DIR --model-dir D --model-name N --version V [--gate G] [--labels FILE]

The first form publishes one model file, trained anywhere. The second is the publish Job's: DIR is
a training run's output directory (the trainer contract, docs/trainer-contract.md), holding
model.onnx, metrics.json and optionally labels.txt and serving.json; a version already published
counts as success (a retry, or another run, got there first), and the run's outputs and
checkpoints are removed once the version is in the store.

In order, so that nothing is read that need not be: the gate is judged on the metrics (under it:
exit 2, nothing written); the model is read once, hashed as it is read; a version that already
holds other bytes is refused; ONNX Runtime must load the model, every input and output must be a
tensor the Open Inference Protocol can carry, a batchable declaration must hold (the graph, then a
run with one and with two rows), a plug-in must fit the model; then the model and its record go
into the store (``mlapp.store.commit``: the model file first, metadata.json last).

Exit codes (mlapp.contract): 0 published or already published, 2 under the gate, 4 the model or
the run's outputs break the contract (a retry would find the same), 1 anything else.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, NoReturn

import numpy as np
import numpy.typing as npt

from mlapp import contract, plugins, signature, store
from mlapp.gate import Gate, GateError, MetricsError, check_metrics, read_metrics

log = logging.getLogger("mlapp.publish")

SERVING_KEYS: Final = ("batchable", "plugin")
MAX_LABELS: Final = 100_000
MAX_LABEL_BYTES: Final = 16 << 20
MAX_SERVING_BYTES: Final = 1 << 20
# The rows a batchable model is run on at publishing, together and each alone (check_batchable).
PROBE_ROWS: Final = 2
EXTERNAL_DATA_HINT: Final = (
    "; if the model keeps tensors in external data files, save it as one file "
    "(onnx.save_model(model, path, save_as_external_data=False)): the store holds one file, of at most 2 GiB"
)


class PublishError(Exception):
    """Not published; the message says why. Exit 1: a retry may succeed (the store, say)."""


class ContractError(PublishError):
    """The model or the run's outputs break the trainer contract: a retry would find the same. Exit 4."""


class GateMissed(PublishError):
    """The run's metric is on the wrong side of the gate: nothing is published. Exit 2."""


@dataclass(frozen=True)
class Published:
    directory: Path
    record: store.ModelFile
    created: bool  # False: the version was already published (with these bytes, or by another run)
    metadata: dict[str, Any]


@dataclass(frozen=True)
class ServingConfig:
    """How the model is to be served: ``serving.json``, or the CLI's --batchable."""

    batchable: bool = False
    plugin: Mapping[str, Any] | None = None


def check_serving(data: object, where: str) -> ServingConfig:
    if not isinstance(data, dict):
        raise ContractError(f"{where} must hold a JSON object with 'batchable' and/or 'plugin'")
    unknown = sorted(set(data) - set(SERVING_KEYS))
    if unknown:
        raise ContractError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(SERVING_KEYS)}")
    batchable = data.get("batchable", False)
    if not isinstance(batchable, bool):
        raise ContractError(f"{where}: 'batchable' must be true or false, got {batchable!r}")
    plugin = data.get("plugin")
    if plugin is not None and not isinstance(plugin, dict):
        raise ContractError(f"{where}: 'plugin' must be an object naming the plug-in and its parameters")
    return ServingConfig(batchable, plugin)


def _read_bounded(path: Path, limit: int, what: str) -> str:
    try:
        raw = store.read_at_most(path, limit)
    except FileNotFoundError:
        raise ContractError(f"{path} does not exist") from None
    except store.FileTooLarge as e:
        raise ContractError(f"{e}, too large for {what}") from None
    except OSError as e:
        raise PublishError(f"cannot read {path}: {e}") from e
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ContractError(f"{path} is not UTF-8 text: {e}") from None


def read_serving(path: Path) -> ServingConfig:
    text = _read_bounded(path, MAX_SERVING_BYTES, "a serving.json")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as e:  # nested past the parser's depth: still no serving.json
        raise ContractError(f"{path} is not JSON: {e}") from None
    return check_serving(data, str(path))


def check_labels(labels: Sequence[str], where: str) -> list[str]:
    if len(labels) > MAX_LABELS:
        raise ContractError(f"{where} has {len(labels)} labels; at most {MAX_LABELS}")
    for index, label in enumerate(labels):
        if not isinstance(label, str) or not label.strip() or "\n" in label or "\r" in label:
            raise ContractError(f"{where}: label {index} must be a non-empty line of text, got {label!r}")
    return list(labels)


def read_labels(path: Path) -> list[str]:
    """One label per line, line i naming class i; blank trailing lines are ignored."""
    lines = [line.strip() for line in _read_bounded(path, MAX_LABEL_BYTES, "a labels file").splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise ContractError(f"{path} holds no labels")
    return check_labels(lines, str(path))


def _judge(gate: Gate | None, metrics: Mapping[str, float] | None) -> dict[str, Any] | None:
    """The gate's record for the metadata; GateMissed when the metrics are on its wrong side."""
    if gate is None:
        return None
    if metrics is None:
        raise PublishError(f"the gate {gate} needs the run's metrics (--metrics)")
    try:
        value = gate.value(metrics)
    except GateError as e:
        raise ContractError(str(e)) from None
    if not gate.passes(metrics):
        raise GateMissed(f"{gate.metric} is {value:g}, on the wrong side of the gate {gate}: not publishing")
    return {**gate.as_dict(), "value": value}


def _session(model: store.ModelBytes) -> Any:
    import onnxruntime as ort  # noqa: PLC0415 - the gate is judged before this import's second

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = 1
    try:
        return ort.InferenceSession(model.source, options, providers=["CPUExecutionProvider"])
    except Exception as e:  # ONNX Runtime raises its own types (Fail, InvalidGraph, ...) for a bad file
        raise ContractError(
            f"ONNX Runtime cannot load the model: {' '.join(str(e).split())}{EXTERNAL_DATA_HINT}"
        ) from e


def _probe(spec: signature.TensorSpec, rows: int, rng: np.random.Generator) -> npt.NDArray[Any]:
    """Rows of small varied values for ``spec``: two rows differ, yet stay in the range any input
    takes (0 and 1 for integers, so an index into an embedding is valid; short strings for BYTES)."""
    shape = signature.example_shape(spec, rows)
    if spec.datatype == "BYTES":
        return np.array(rng.choice(["", "a"], size=shape), dtype=object)
    if spec.datatype == "BOOL":
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    if spec.datatype.startswith(("INT", "UINT")):
        return rng.integers(0, 2, size=shape).astype(spec.dtype)
    return rng.standard_normal(size=shape).astype(spec.dtype)


def _same(a: npt.NDArray[Any], b: npt.NDArray[Any]) -> bool:
    if a.shape != b.shape:
        return False
    if a.dtype.kind == "f":
        # The same row run in a larger batch may take another kernel path: equal up to rounding.
        tolerance = 1e-2 if a.dtype == np.float16 else 1e-4
        return bool(np.allclose(a, b, rtol=tolerance, atol=tolerance, equal_nan=True))
    return bool(np.array_equal(a, b))


def check_batchable(session: Any, sig: signature.Signature) -> None:
    """ContractError unless the model's callers can share one run.

    The graph must say so (``signature.batch_problem``). Then the model is run on two varied rows
    together and on each alone: every output must have as many rows as the input, and each row's
    answer must be the one it gets alone, so no caller's answer depends on another's rows. A model
    that cannot run on such rows cannot be checked, and is refused the declaration.
    """
    problem = signature.batch_problem(sig)
    if problem is not None:
        raise ContractError(f"the model is declared batchable, but {problem}")
    names = [o.name for o in sig.outputs]
    together = {spec.name: _probe(spec, PROBE_ROWS, np.random.default_rng(0)) for spec in sig.inputs}
    try:
        both = session.run(names, together)
        alone = [session.run(names, {k: v[i : i + 1] for k, v in together.items()}) for i in range(PROBE_ROWS)]
    except Exception as e:  # the model's own failure on these rows
        raise ContractError(
            f"the model is declared batchable, but it could not be run on {PROBE_ROWS} probe rows to check it: "
            f"{' '.join(str(e).split())}; publish it without the declaration"
        ) from e
    for index, (name, out) in enumerate(zip(names, both, strict=True)):
        got = len(out) if getattr(out, "ndim", 0) else None
        if got != PROBE_ROWS:
            raise ContractError(
                f"the model is declared batchable, but given {PROBE_ROWS} rows its output {name!r} has "
                f"{'no first dimension' if got is None else f'{got} row(s)'}: its rows are not the callers' rows"
            )
        for row in range(PROBE_ROWS):
            if not _same(np.asarray(out[row : row + 1]), np.asarray(alone[row][index])):
                raise ContractError(
                    f"the model is declared batchable, but its output {name!r} for a row changes when another row "
                    "is run with it: it mixes the callers' rows (batch statistics, say), so it is not batchable"
                )


def _describe_model(
    model: store.ModelBytes, serving: ServingConfig, labels: list[str] | None
) -> tuple[signature.Signature, dict[str, Any] | None]:
    """The model's signature and its checked plug-in; ContractError when ONNX Runtime or the checks refuse it."""
    session = _session(model)
    try:
        sig = signature.signature_of(session)
    except signature.SignatureError as e:
        raise ContractError(str(e)) from None
    if serving.batchable:
        check_batchable(session, sig)
    try:
        plugin = plugins.configure(serving.plugin, sig, labels)
    except plugins.PluginError as e:
        raise ContractError(str(e)) from None
    return sig, plugin.describe() if plugin is not None else None


def _already(final: Path, model: store.ModelBytes | None) -> Published | None:
    """The version as it is in the store when it is complete; PublishError if it holds other bytes than ``model``."""
    try:
        meta = store.verify(final)
    except (store.NotPublished, OSError):
        return None
    record = store.ModelFile(meta["model"]["sha256"], meta["model"]["bytes"])
    if model is not None and record != model.record:
        raise PublishError(
            f"{final} already holds another model ({record.size} bytes, sha256 {record.sha256[:12]}…; this one is "
            f"{model.size} bytes, sha256 {model.sha256[:12]}…): a published version never changes, publish under a "
            "new version"
        )
    return Published(final, record, created=False, metadata=meta)


def publish(  # noqa: PLR0913 - what a published model is made of, each optional
    model_file: Path,
    model_dir: Path,
    name: str,
    version: str,
    *,
    metrics: Mapping[str, float] | None = None,
    gate: Gate | None = None,
    labels: Sequence[str] | None = None,
    batchable: bool = False,
    plugin: Mapping[str, Any] | None = None,
    producer: Mapping[str, Any] | None = None,
    keep_published: bool = False,
) -> Published:
    """Publish ``model_file`` as version ``version`` of model ``name`` in the store at ``model_dir``.

    Raises GateMissed (under ``gate``), ContractError (a model or declaration that cannot be
    served) or PublishError (anything else). ``keep_published``: a version already complete counts
    as published whatever its bytes (the publish Job's retries); otherwise the same bytes do, and
    other bytes are refused.
    """
    try:
        final = store.version_dir(model_dir, name, version)
    except ValueError as e:
        raise PublishError(str(e)) from None
    # The command line reads its metrics with read_metrics; a caller of this function is held to the same.
    try:
        metrics = check_metrics(dict(metrics), "metrics") if metrics is not None else None
    except MetricsError as e:
        raise ContractError(str(e)) from None
    gate_record = _judge(gate, metrics)
    if keep_published and (existing := _already(final, None)) is not None:
        return existing
    checked_labels = check_labels(labels, "labels") if labels is not None else None
    serving = ServingConfig(batchable, plugin)
    try:
        model = store.ModelBytes.read(model_file)
    except FileNotFoundError:
        raise ContractError(f"{model_file} does not exist") from None
    except ValueError as e:
        raise ContractError(str(e)) from None
    except OSError as e:
        raise PublishError(f"cannot read {model_file}: {e}") from e
    with model:
        if (existing := _already(final, model)) is not None:
            return existing
        sig, plugin_record = _describe_model(model, serving, checked_labels)
        metadata = {
            "name": name,
            "version": version,
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "signature": sig.as_dict(),
            "batchable": serving.batchable,
            "plugin": plugin_record,
            "labels": checked_labels,
            "metrics": dict(metrics) if metrics is not None else None,
            "gate": gate_record,
            "producer": dict(producer) if producer else {},
        }
        try:
            written = store.commit(model_dir, name, version, model, metadata)
        except store.StoreError as e:
            raise PublishError(str(e)) from None
        except (TypeError, ValueError) as e:  # a producer record that is not JSON; nothing was written
            raise PublishError(f"the model's metadata cannot be written as JSON: {e}") from e
        except OSError as e:
            raise PublishError(f"cannot write version {version} into the store at {model_dir}: {e}") from e
        return Published(final, model.record, created=True, metadata=written)


def publish_run(  # noqa: PLR0913 - a run, where it goes, and what may replace or record it
    run: Path,
    model_dir: Path,
    name: str,
    version: str,
    *,
    gate: Gate | None = None,
    labels: Sequence[str] | None = None,
    producer: Mapping[str, Any] | None = None,
    clean: bool = True,
) -> Published:
    """Publish what a training run wrote into ``run`` (the trainer contract's outputs).

    ``labels`` replace the run's own labels.txt. A version already published counts as published.
    ``clean``: remove the run's outputs and its checkpoints once the version is in the store.
    """
    try:
        final = store.version_dir(model_dir, name, version)
    except ValueError as e:
        raise PublishError(str(e)) from None
    published = _already(final, None)
    if published is None:
        try:
            metrics = read_metrics(run / contract.TRAINER_METRICS_FILE)
        except MetricsError as e:
            raise ContractError(f"the trainer's metrics: {e}") from None
        serving_file = run / contract.TRAINER_SERVING_FILE
        serving = read_serving(serving_file) if serving_file.exists() else ServingConfig()
        labels_file = run / contract.TRAINER_LABELS_FILE
        if labels is None and labels_file.exists():
            labels = read_labels(labels_file)
        published = publish(
            run / contract.TRAINER_MODEL_FILE,
            model_dir,
            name,
            version,
            metrics=metrics,
            gate=gate,
            labels=labels,
            batchable=serving.batchable,
            plugin=serving.plugin,
            producer=producer,
            keep_published=True,
        )
    if clean:
        for problem in store.remove_run(model_dir, name, version):
            log.warning("could not remove a training leftover: %s", problem)
    return published


# --- the command line ---------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    # argparse exits 2 on bad arguments, but 2 means "under the gate" to the Job.
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(contract.EXIT_ERROR)


def _checked(check: Any, what: str) -> Any:
    def parse(text: str) -> Any:
        try:
            return check(what, text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    return parse


def _gate(text: str) -> Gate:
    try:
        return Gate.parse(text)
    except GateError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m mlapp.publish", description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("model", nargs="?", type=Path, help="the ONNX file to publish (or --run)")
    p.add_argument("--run", type=Path, help="a training run's output directory (the trainer contract)")
    p.add_argument("--model-dir", type=_checked(store.check_root, "--model-dir"), required=True)
    p.add_argument("--model-name", type=_checked(store.check_segment, "--model-name"), required=True)
    p.add_argument("--version", type=_checked(store.check_segment, "--version"), required=True)
    p.add_argument("--gate", type=_gate, help="METRIC>=THRESHOLD or METRIC<=THRESHOLD, judged on the metrics")
    p.add_argument("--metrics", type=Path, help="a JSON object of metric name -> number")
    p.add_argument("--labels", type=Path, help="class names, one per line")
    p.add_argument("--batchable", action="store_true", help="callers may share one run (checked)")
    p.add_argument("--serving", type=Path, help="a serving.json: batchable and plugin")
    return p


def _producer(env: Mapping[str, str]) -> dict[str, Any]:
    image = env.get(contract.ENV_TRAINER_IMAGE, "")
    return {"trainer_image": image} if image else {}


def _run(args: argparse.Namespace, env: Mapping[str, str]) -> Published:
    labels = read_labels(args.labels) if args.labels else None
    if args.run is not None:
        if args.model is not None or args.metrics or args.serving or args.batchable:
            raise PublishError(
                "--run reads the model, metrics and serving.json from the run's directory: give none of them"
            )
        return publish_run(
            args.run, args.model_dir, args.model_name, args.version, gate=args.gate, labels=labels,
            producer=_producer(env),
        )  # fmt: skip
    if args.model is None:
        raise PublishError("name the ONNX file to publish, or --run DIR")
    try:
        metrics = read_metrics(args.metrics) if args.metrics else None
    except MetricsError as e:
        raise ContractError(str(e)) from None
    serving = read_serving(args.serving) if args.serving else ServingConfig()
    return publish(
        args.model, args.model_dir, args.model_name, args.version, metrics=metrics, gate=args.gate, labels=labels,
        batchable=args.batchable or serving.batchable, plugin=serving.plugin, producer=_producer(env),
    )  # fmt: skip


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s", force=True)
    args = build_parser().parse_args(argv)
    try:
        published = _run(args, os.environ if env is None else env)
    except GateMissed as e:
        log.error("%s", e)
        return contract.EXIT_GATE
    except ContractError as e:
        log.error("not published: %s", e)
        return contract.EXIT_CONTRACT
    except PublishError as e:
        log.error("not published: %s", e)
        return contract.EXIT_ERROR
    except OSError as e:
        log.error("not published: the store at %s: %s", args.model_dir, e)
        return contract.EXIT_ERROR
    record = published.record
    log.info(
        "%s %s (%d bytes, sha256 %s)",
        "published" if published.created else "already published:", published.directory, record.size, record.sha256,
    )  # fmt: skip
    return contract.EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
