"""Train a random forest on the iris flowers and write it as ONNX, keeping mlstack's trainer contract.

    MLAPP_OUTPUT_DIR=DIR MLAPP_SEED=42 MLAPP_DEVICE=cpu python train.py [--n-estimators N] [--max-depth D]

Imports nothing of mlstack's: the contract (docs/trainer-contract.md) is environment variables,
files and an exit code. Writes model.onnx (input ``float_input`` FP32 [batch, 4]; outputs ``label``
INT64 [batch] and ``probabilities`` FP32 [batch, 3]), metrics.json, labels.txt and serving.json into
MLAPP_OUTPUT_DIR. Exit codes: 0 outputs written, or the version was already published; 1 anything
else (a missing or bad variable or flag included).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import numpy.typing as npt
import onnx
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import accuracy_score, log_loss
from sklearn.model_selection import train_test_split

log = logging.getLogger("iris-forest")

EXIT_OK = 0
EXIT_ERROR = 1

INPUT_NAME = "float_input"
LABEL_NAME = "label"
PROBABILITIES_NAME = "probabilities"
BATCH_DIM = "batch"
# 60 of the 150 flowers, 20 of each species (the split is stratified), are held out for the metrics.
# With fewer the accuracy swings more with the seed: 45 held out gave 0.889 at seed 42, the stack's default.
TEST_FRACTION = 0.4
# The opset the digits example exports too: old enough that every current ONNX Runtime runs it
# (https://onnxruntime.ai/docs/reference/compatibility.html, "ONNX opset support").
ONNX_OPSET = 17
# scikit-learn seeds a numpy RandomState with an integer random_state, which takes "any integer between 0
# and 2**32 - 1 inclusive" (https://numpy.org/doc/stable/reference/random/legacy.html#numpy.random.RandomState).
MAX_SEED = 2**32 - 1
LOG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class ConfigError(Exception):
    """A variable or flag the trainer cannot run with; the message names it."""


class _Parser(argparse.ArgumentParser):
    # argparse exits 2 on a bad flag, but 2 means "under the gate" to the platform (the Job then fails
    # without retrying); a typo in trainerCommand is an ordinary error.
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_ERROR)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="train.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--n-estimators", type=_positive_int, default=100, help="trees in the forest (default 100)")
    p.add_argument("--max-depth", type=_positive_int, default=None, help="deepest a tree grows (default: no limit)")
    return p


@dataclass(frozen=True)
class Settings:
    """What the platform passes in the environment, checked."""

    output_dir: Path
    model_record: Path | None
    seed: int
    device: str


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "")
    if not value:
        raise ConfigError(f"{name} is not set: the training Job sets it (docs/trainer-contract.md, Environment)")
    return value


def _seed(env: Mapping[str, str]) -> int:
    text = _required(env, "MLAPP_SEED")
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"MLAPP_SEED must be an integer in [0, {MAX_SEED}], got {text!r}") from None
    if not 0 <= value <= MAX_SEED:
        raise ConfigError(f"MLAPP_SEED must be an integer in [0, {MAX_SEED}], got {value}")
    return value


def _device(env: Mapping[str, str]) -> str:
    value = _required(env, "MLAPP_DEVICE")
    if value not in ("cuda", "cpu"):
        raise ConfigError(f"MLAPP_DEVICE must be cuda or cpu, got {value!r}")
    return value


def model_record(env: Mapping[str, str]) -> Path | None:
    """This version's commit record in the store; unset on a run outside the platform, which has none."""
    value = env.get("MLAPP_MODEL_RECORD", "")
    return Path(value) if value else None


def read_settings(env: Mapping[str, str]) -> Settings:
    return Settings(
        output_dir=Path(_required(env, "MLAPP_OUTPUT_DIR")),
        model_record=model_record(env),
        seed=_seed(env),
        device=_device(env),
    )


def configure_logging(env: Mapping[str, str]) -> None:
    text = env.get("MLAPP_LOG_LEVEL", "") or "info"
    if text not in LOG_LEVELS:
        raise ConfigError(f"MLAPP_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {text!r}")
    logging.basicConfig(level=LOG_LEVELS[text], format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@dataclass(frozen=True)
class Split:
    """The iris flowers, split into training and held-out rows (FP32, as the ONNX model reads them)."""

    x_train: npt.NDArray[np.float32]
    y_train: npt.NDArray[np.int64]
    x_test: npt.NDArray[np.float32]
    y_test: npt.NDArray[np.int64]
    class_names: list[str]


def split(seed: int) -> Split:
    """The same rows for the same seed: the tests rebuild the held-out rows from it.

    FP32 from the start: a forest converts its features to FP32 anyway (RandomForestClassifier.fit, "X:
    Internally, its dtype will be converted to dtype=np.float32",
    https://scikit-learn.org/stable/modules/generated/sklearn.ensemble.RandomForestClassifier.html),
    so the forest and its ONNX conversion compare the very same numbers.
    """
    # Bundled with scikit-learn: no download (https://scikit-learn.org/stable/modules/generated/sklearn.datasets.load_iris.html).
    iris = load_iris()
    x = np.asarray(iris.data, dtype=np.float32)
    y = np.asarray(iris.target, dtype=np.int64)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=TEST_FRACTION, random_state=seed, stratify=y)
    return Split(x_train, y_train, x_test, y_test, [str(name) for name in iris.target_names])


def train(data: Split, seed: int, n_estimators: int, max_depth: int | None) -> RandomForestClassifier:
    forest = RandomForestClassifier(n_estimators=n_estimators, max_depth=max_depth, random_state=seed)
    forest.fit(data.x_train, data.y_train)
    return forest


def metrics_of(forest: RandomForestClassifier, data: Split) -> dict[str, float]:
    """Held-out accuracy and log loss; every value finite, as the publisher requires."""
    probabilities = forest.predict_proba(data.x_test)
    values = {
        "accuracy": float(accuracy_score(data.y_test, forest.predict(data.x_test))),
        "loss": float(log_loss(data.y_test, probabilities, labels=list(range(len(data.class_names))))),
    }
    for name, value in values.items():
        if not math.isfinite(value):
            raise ValueError(f"metric {name} is {value}, not a finite number")
    return values


def to_onnx(forest: RandomForestClassifier) -> onnx.ModelProto:
    """The forest as ONNX with tensor outputs, its batch dimension named on every input and output."""
    model = convert_sklearn(
        forest,
        # A fixed graph name: skl2onnx draws a random one otherwise (skl2onnx/convert.py, convert_sklearn:
        # "name: The name of the graph"), and a rerun of the same version should write the same bytes.
        name="iris_forest",
        initial_types=[(INPUT_NAME, FloatTensorType([None, forest.n_features_in_]))],
        # By default a classifier's probabilities leave through ZipMap, a list of {class: probability}
        # maps, which the Open Inference Protocol cannot carry; zipmap=False keeps them the [N, classes]
        # tensor (https://onnx.ai/sklearn-onnx/auto_examples/plot_convert_zipmap.html).
        options={id(forest): {"zipmap": False}},
        target_opset=ONNX_OPSET,
    )
    # skl2onnx leaves the first dimension unnamed (FloatTensorType takes None or an int, no name), and an
    # unnamed dimension is "unrelated to other unknown dimensions"; one name on every input and output
    # says they are the same size, the batch, as a batchable model promises ("A dimension variable "N"
    # represents the same value across the entire graph in a model",
    # https://github.com/onnx/onnx/blob/main/docs/IR.md#static-tensor-shapes).
    for value in [*model.graph.input, *model.graph.output]:
        value.type.tensor_type.shape.dim[0].dim_param = BATCH_DIM
    # Shape inference checks the names against the operators (TreeEnsembleClassifier's N is its input's N).
    onnx.checker.check_model(model, full_check=True)
    return model


def write_atomically(path: Path, data: bytes) -> None:
    """Write through a temporary file and a rename, so a killed run never leaves half a file under the name.

    os.replace renames atomically on POSIX (https://docs.python.org/3/library/os.html#os.replace), and a
    file rename works on every store mlstack mounts (app/mlapp/store.py says why, gcsfuse included). The
    data reaches the disk before the rename, so a node that dies just after it leaves no empty file.
    """
    partial = path.with_name(f".{path.name}.partial")
    with partial.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, path)


def write_outputs(
    output_dir: Path, model: onnx.ModelProto, metrics: Mapping[str, float], class_names: Sequence[str]
) -> None:
    output_dir.mkdir(parents=True, exist_ok=True)
    write_atomically(output_dir / "model.onnx", model.SerializeToString())
    write_atomically(output_dir / "metrics.json", json.dumps(dict(metrics), indent=2).encode())
    write_atomically(output_dir / "labels.txt", "".join(f"{name}\n" for name in class_names).encode())
    # Each row is judged on its own (a tree reads one flower's four numbers), so the server may run
    # several callers' rows in one model run.
    serving: dict[str, Any] = {"batchable": True}
    write_atomically(output_dir / "serving.json", json.dumps(serving).encode())


def run(argv: Sequence[str], env: Mapping[str, str]) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(env)
    record = model_record(env)
    if record is not None and record.exists():
        log.info("this version is already published (%s exists): nothing to train", record)
        return EXIT_OK
    settings = read_settings(env)
    if settings.device == "cuda":
        # scikit-learn's forests run on the CPU alone (https://scikit-learn.org/stable/faq.html#will-you-add-gpu-support;
        # the few estimators that can use a GPU, through the Array API, are listed in
        # https://scikit-learn.org/stable/modules/array_api.html, and the forests are not among them).
        # The contract's "do not fall back to the CPU of a GPU node" guards a model that could use the
        # GPU; this one never could, so it trains on the CPU whatever the pod was given.
        log.warning("MLAPP_DEVICE=cuda, but scikit-learn has no GPU support: training on the CPU")
    data = split(settings.seed)
    forest = train(data, settings.seed, args.n_estimators, args.max_depth)
    metrics = metrics_of(forest, data)
    log.info(
        "%d trees, held-out accuracy %.4f, log loss %.4f on %d flowers",
        args.n_estimators, metrics["accuracy"], metrics["loss"], len(data.y_test),
    )  # fmt: skip
    write_outputs(settings.output_dir, to_onnx(forest), metrics, data.class_names)
    log.info("wrote model.onnx, metrics.json, labels.txt and serving.json to %s", settings.output_dir)
    return EXIT_OK


def main() -> int:
    try:
        return run(sys.argv[1:], os.environ)
    except ConfigError as e:
        print(f"train.py: error: {e}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
