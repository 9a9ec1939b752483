"""Train a small PyTorch classifier of numbers and words and write it as ONNX, keeping mlstack's trainer contract.

    MLAPP_OUTPUT_DIR=DIR MLAPP_CHECKPOINT_DIR=DIR MLAPP_DEVICE=cpu MLAPP_SEED=42 \
        MLAPP_EPOCHS=10 MLAPP_BATCH_SIZE=32 MLAPP_LEARNING_RATE=0.003 python train.py

Imports nothing of mlstack's: the contract (docs/trainer-contract.md) is environment variables,
files and an exit code. The model reads two inputs of two datatypes, ``features`` FP32 [batch, 8]
and ``token_ids`` INT64 [batch, 12] (0 pads), and answers ``probabilities`` FP32 [batch, 3]. It
learns a synthetic task made from MLAPP_SEED: a row's class counts how many of two signals it
carries, one in its numbers and one in its words, so it needs both inputs to do well.

Resumable: a checkpoint in MLAPP_CHECKPOINT_DIR after every epoch, and on SIGTERM, which it then
exits 1 on; the next run resumes from it. Exit codes: 0 outputs written, or the version was already
published; 1 anything else (a missing or bad variable, no usable GPU under MLAPP_DEVICE=cuda, SIGTERM).
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import math
import os
import signal
import sys
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

log = logging.getLogger("tabular-text")

EXIT_OK = 0
EXIT_ERROR = 1

FEATURES_NAME = "features"
TOKEN_IDS_NAME = "token_ids"  # noqa: S105 - an input's name, not a password
PROBABILITIES_NAME = "probabilities"
CLASS_NAMES = ("low", "medium", "high")
FEATURES = 8
TOKENS = 12  # every row's token_ids has this many ids, padded with PAD
VOCABULARY = 64
PAD = 0
# Ids 1-4 are the marker words, the task's second signal; 5 and up are ordinary words.
MARKERS = (1, 2, 3, 4)
ROWS = 5000
TEST_ROWS = 1000
EMBEDDING_DIM = 16
HIDDEN = 32
# The opset the digits example exports too: old enough that every current ONNX Runtime runs it
# (https://onnxruntime.ai/docs/reference/compatibility.html, "ONNX opset support").
ONNX_OPSET = 17
# The seeds iris-forest takes too (scikit-learn's are 32-bit), so one stack seed suits either example.
MAX_SEED = 2**32 - 1
CHECKPOINT_FILE = "checkpoint.pt"
# Bumped when the checkpoint's layout changes: an older file is then ignored, not misread.
CHECKPOINT_FORMAT = 1
LOG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class ConfigError(Exception):
    """A variable or flag the trainer cannot run with, or a device it cannot use; the message says which and why."""


class Stopped(Exception):
    """SIGTERM arrived: the checkpoint is saved, and the next run resumes from it."""


class _Parser(argparse.ArgumentParser):
    # argparse exits 2 on a bad flag, but 2 means "under the gate" to the platform (the Job then fails
    # without retrying); a typo in trainerCommand is an ordinary error.
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_ERROR)


def build_parser() -> argparse.ArgumentParser:
    # No flags: every parameter comes from the platform's variables. The parser still answers --help
    # and refuses a stray argument in trainerCommand.
    return _Parser(prog="train.py", description=__doc__.split("\n\n")[0])


# --- settings --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Params:
    """What determines the trained weights besides the number of epochs: a checkpoint resumes only a
    run with the same. The epochs may differ: a run of N epochs resumed after epoch K < N trains as one
    straight run of N would (no schedule depends on N)."""

    seed: int
    batch_size: int
    learning_rate: float
    rows: int = ROWS
    vocabulary: int = VOCABULARY
    embedding_dim: int = EMBEDDING_DIM
    hidden: int = HIDDEN


@dataclass(frozen=True)
class Settings:
    """What the platform passes in the environment, checked."""

    output_dir: Path
    checkpoint_dir: Path
    device: str
    epochs: int
    params: Params


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "")
    if not value:
        raise ConfigError(f"{name} is not set: the training Job sets it (docs/trainer-contract.md, Environment)")
    return value


def _int(env: Mapping[str, str], name: str, low: int, high: int | None = None) -> int:
    text = _required(env, name)
    allowed = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{name} must be {allowed}, got {text!r}") from None
    if value < low or (high is not None and value > high):
        raise ConfigError(f"{name} must be {allowed}, got {value}")
    return value


def _positive_float(env: Mapping[str, str], name: str) -> float:
    text = _required(env, name)
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{name} must be a positive number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{name} must be a positive number, got {text!r}")
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
        checkpoint_dir=Path(_required(env, "MLAPP_CHECKPOINT_DIR")),
        device=_device(env),
        epochs=_int(env, "MLAPP_EPOCHS", 1),
        params=Params(
            seed=_int(env, "MLAPP_SEED", 0, MAX_SEED),
            batch_size=_int(env, "MLAPP_BATCH_SIZE", 1),
            learning_rate=_positive_float(env, "MLAPP_LEARNING_RATE"),
        ),
    )


def configure_logging(env: Mapping[str, str]) -> None:
    text = env.get("MLAPP_LOG_LEVEL", "") or "info"
    if text not in LOG_LEVELS:
        raise ConfigError(f"MLAPP_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {text!r}")
    logging.basicConfig(level=LOG_LEVELS[text], format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def select_device(requested: str) -> torch.device:
    """``cuda`` must work or fail saying why: the pod was given a GPU, and training on its CPU instead
    would hide a broken node or image (docs/trainer-contract.md, MLAPP_DEVICE)."""
    if requested == "cpu":
        return torch.device("cpu")
    # torch.version.cuda names the CUDA a build was made for, None in a CPU-only build (torch/version.py,
    # written when the wheel is built: 2.13.0+cpu has `cuda: Optional[str] = None`).
    if torch.version.cuda is None:
        raise ConfigError(
            f"MLAPP_DEVICE=cuda, but torch {torch.__version__} is a CPU-only build: install a CUDA build "
            "(the Dockerfile's TORCH_INDEX_URL names its wheel index)"
        )
    if not torch.cuda.is_available():
        raise ConfigError(
            f"MLAPP_DEVICE=cuda, but torch {torch.__version__} (CUDA {torch.version.cuda}) finds no usable GPU: "
            "torch.cuda.is_available() is False (no NVIDIA driver on the node, no GPU given to this container, "
            "or a driver too old for this CUDA)"
        )
    return torch.device("cuda")


# --- the data --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    """The synthetic rows, split into training and held-out ones."""

    features_train: npt.NDArray[np.float32]
    tokens_train: npt.NDArray[np.int64]
    y_train: npt.NDArray[np.int64]
    features_test: npt.NDArray[np.float32]
    tokens_test: npt.NDArray[np.int64]
    y_test: npt.NDArray[np.int64]


def make_data(seed: int, rows: int = ROWS) -> Split:
    """The same rows for the same seed: the tests rebuild the held-out rows from it.

    A row's class is 0, 1 or 2: how many of two signals it carries. One is in its numbers (their
    projection on a direction drawn from the seed is positive), the other in its words (a marker id
    is among them), each in half the rows, independently. A quarter of the rows are "low", half
    "medium", a quarter "high": always answering "medium" scores 0.5, and so does the best guess from
    either input alone (it leaves two classes equally likely), so accuracy above 0.5 needs both.
    """
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((rows, FEATURES)).astype(np.float32)
    direction = rng.standard_normal(FEATURES).astype(np.float32)
    lengths = rng.integers(4, TOKENS + 1, size=rows)
    tokens = rng.integers(len(MARKERS) + 1, VOCABULARY, size=(rows, TOKENS), dtype=np.int64)
    marked = rng.random(rows) < 0.5  # noqa: PLR2004 - half the rows carry a marker word
    positions = (rng.random(rows) * lengths).astype(np.int64)
    tokens[marked, positions[marked]] = rng.choice(MARKERS, size=int(marked.sum()))
    tokens[np.arange(TOKENS)[None, :] >= lengths[:, None]] = PAD
    labels = ((features @ direction > 0).astype(np.int64) + marked).astype(np.int64)
    cut = rows - TEST_ROWS
    return Split(features[:cut], tokens[:cut], labels[:cut], features[cut:], tokens[cut:], labels[cut:])


# --- the model -------------------------------------------------------------------------------


class TabularText(nn.Module):  # type: ignore[misc]  # nn.Module is Any: mypy skips torch (pyproject.toml)
    """Numbers and the mean of the words' embeddings, through a small MLP, to one logit per class."""

    def __init__(self, params: Params) -> None:
        super().__init__()
        self.vocabulary = params.vocabulary
        # The padding id's embedding stays zero and gets no gradient
        # (https://pytorch.org/docs/stable/generated/torch.nn.Embedding.html, padding_idx).
        self.embedding = nn.Embedding(params.vocabulary, params.embedding_dim, padding_idx=PAD)
        self.mlp = nn.Sequential(
            nn.Linear(FEATURES + params.embedding_dim, params.hidden),
            nn.ReLU(),
            nn.Linear(params.hidden, len(CLASS_NAMES)),
        )

    def forward(self, features: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
        # An id outside the vocabulary reads as padding: the served model answers any INT64 input
        # instead of failing its Gather on an index out of range.
        known = (token_ids >= 0) & (token_ids < self.vocabulary)
        ids = torch.where(known, token_ids, torch.zeros_like(token_ids))
        present = (ids != PAD).unsqueeze(-1).to(features.dtype)
        words = (self.embedding(ids) * present).sum(dim=1) / present.sum(dim=1).clamp(min=1.0)
        return self.mlp(torch.cat([features, words], dim=1))


class WithSoftmax(nn.Module):  # type: ignore[misc]  # nn.Module is Any: mypy skips torch (pyproject.toml)
    """What is exported: probabilities rather than logits, so a client needs no softmax of its own."""

    def __init__(self, net: TabularText) -> None:
        super().__init__()
        self.net = net

    def forward(self, features: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(features, token_ids), dim=1)


# --- checkpoints -----------------------------------------------------------------------------


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


@dataclass(frozen=True)
class Position:
    """Where training stands: ``batch`` batches of epoch ``epoch`` (0-based) are done."""

    epoch: int
    batch: int


def save_checkpoint(path: Path, params: Params, position: Position, net: nn.Module, optimizer: Any) -> None:
    buffer = io.BytesIO()
    state = {
        "format": CHECKPOINT_FORMAT,
        "params": asdict(params),
        "epoch": position.epoch,
        "batch": position.batch,
        "model": net.state_dict(),
        "optimizer": optimizer.state_dict(),
    }
    torch.save(state, buffer)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, buffer.getvalue())


def _unusable(state: Any, params: Params, epochs: int, steps_per_epoch: int) -> str | None:
    """Why ``state`` cannot resume this run, or None."""
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        return f"it is not a format-{CHECKPOINT_FORMAT} checkpoint of this trainer"
    if state.get("params") != asdict(params):
        return f"it was made with {state.get('params')}, this run has {asdict(params)}"
    epoch, batch = state.get("epoch"), state.get("batch")
    if not (isinstance(epoch, int) and isinstance(batch, int) and 0 <= batch < steps_per_epoch):
        return f"its position (epoch {epoch!r}, batch {batch!r}) is not one of this run's"
    if epoch > epochs or (epoch == epochs and batch):
        return f"it is past this run's {epochs} epochs"
    return None


def load_checkpoint(path: Path, params: Params, epochs: int, steps_per_epoch: int, device: torch.device) -> Any:
    """The checkpoint's state if it resumes this run; else None, with a warning naming the file and why.

    A file that does not fit never fails the run: training from scratch is always right, only slower.
    """
    if not path.exists():
        return None
    try:
        # weights_only=True unpickles tensors, dicts and plain values only, never code
        # (https://pytorch.org/docs/stable/generated/torch.load.html).
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # any unreadable file (another torch's, a foreign one) means "no checkpoint"
        log.warning("ignoring checkpoint %s: it does not load (%s); training from scratch", path, e)
        return None
    reason = _unusable(state, params, epochs, steps_per_epoch)
    if reason is not None:
        log.warning("ignoring checkpoint %s: %s; training from scratch", path, reason)
        return None
    return state


class _StopFlag:
    """A SIGTERM handler that only records the signal: the loop acts on it between two batches, so the
    checkpoint never holds a half-applied step."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True


# --- training --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    net: TabularText
    accuracy: float
    loss: float


def _tensors(split: Split, device: torch.device) -> tuple[torch.Tensor, ...]:
    return tuple(
        torch.from_numpy(a).to(device)
        for a in (
            split.features_train, split.tokens_train, split.y_train,
            split.features_test, split.tokens_test, split.y_test,
        )
    )  # fmt: skip


def evaluate(
    net: TabularText, features: torch.Tensor, tokens: torch.Tensor, labels: torch.Tensor
) -> tuple[float, float]:
    """Held-out accuracy and mean cross-entropy."""
    net.eval()
    with torch.no_grad():
        logits = net(features, tokens)
        loss = float(nn.functional.cross_entropy(logits, labels))
        # A count over the rows, not a float32 mean: the figure is exactly what the rows' answers give.
        accuracy = int((logits.argmax(dim=1) == labels).sum()) / len(labels)
    net.train()
    return accuracy, loss


def epoch_order(seed: int, epoch: int, rows: int) -> npt.NDArray[np.int64]:
    """An epoch's order depends on (seed, epoch) alone, so a resumed run sees the batches the stopped one would have."""
    # default_rng takes a sequence of integers as its seed's entropy
    # (https://numpy.org/doc/stable/reference/random/bit_generators/generated/numpy.random.SeedSequence.html).
    return np.random.default_rng([seed, epoch]).permutation(rows)


def train(settings: Settings, data: Split, device: torch.device) -> Result:
    params = settings.params
    torch.manual_seed(params.seed)
    net = TabularText(params).to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=params.learning_rate)
    x_train, t_train, y_train, x_test, t_test, y_test = _tensors(data, device)
    steps_per_epoch = math.ceil(len(y_train) / params.batch_size)
    checkpoint_path = settings.checkpoint_dir / CHECKPOINT_FILE

    start = Position(0, 0)
    state = load_checkpoint(checkpoint_path, params, settings.epochs, steps_per_epoch, device)
    if state is not None:
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start = Position(state["epoch"], state["batch"])
        log.info(
            "resuming from checkpoint %s after %d epochs and %d batches", checkpoint_path, start.epoch, start.batch
        )

    stop = _StopFlag()
    # Kubernetes sends SIGTERM and waits the pod's grace period (30 s) before SIGKILL
    # (https://kubernetes.io/docs/concepts/workloads/pods/pod-lifecycle/#pod-termination): a batch takes
    # milliseconds, so the checkpoint is written well inside it.
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        for epoch in range(start.epoch, settings.epochs):
            order = torch.from_numpy(epoch_order(params.seed, epoch, len(y_train))).to(device)
            first = start.batch if epoch == start.epoch else 0
            for b in range(first, steps_per_epoch):
                rows = order[b * params.batch_size : (b + 1) * params.batch_size]
                optimizer.zero_grad(set_to_none=True)
                loss = nn.functional.cross_entropy(net(x_train[rows], t_train[rows]), y_train[rows])
                loss.backward()
                optimizer.step()
                if stop.requested:
                    done = Position(epoch, b + 1) if b + 1 < steps_per_epoch else Position(epoch + 1, 0)
                    save_checkpoint(checkpoint_path, params, done, net, optimizer)
                    raise Stopped(
                        f"stopped by SIGTERM at epoch {epoch + 1}, batch {b + 1}: "
                        f"checkpoint saved to {checkpoint_path}, a rerun resumes from it"
                    )
            save_checkpoint(checkpoint_path, params, Position(epoch + 1, 0), net, optimizer)
            accuracy, held_out_loss = evaluate(net, x_test, t_test, y_test)
            log.info(
                "epoch %d/%d: held-out accuracy %.4f, loss %.4f; checkpoint saved",
                epoch + 1, settings.epochs, accuracy, held_out_loss,
            )  # fmt: skip
    finally:
        signal.signal(signal.SIGTERM, previous)
    accuracy, held_out_loss = evaluate(net, x_test, t_test, y_test)
    return Result(net=net, accuracy=accuracy, loss=held_out_loss)


# --- outputs ---------------------------------------------------------------------------------


def export_onnx(net: TabularText, path: Path) -> None:
    """Both inputs and the output with a dynamic first dimension, the batch, named alike."""
    wrapped = WithSoftmax(net).cpu().eval()
    example = (torch.zeros(1, FEATURES), torch.zeros(1, TOKENS, dtype=torch.int64))
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter warns that it is deprecated in favour of dynamo=True, which needs
        # onnxscript; this plain graph exports exactly without it.
        warnings.simplefilter("ignore", DeprecationWarning)
        # dynamic_axes marks the named inputs' and outputs' dimensions as symbolic, with the name given
        # (https://pytorch.org/docs/stable/onnx_torchscript.html#torch.onnx.export, dynamic_axes).
        torch.onnx.export(
            wrapped,
            example,
            buffer,
            dynamo=False,
            input_names=[FEATURES_NAME, TOKEN_IDS_NAME],
            output_names=[PROBABILITIES_NAME],
            dynamic_axes={name: {0: "batch"} for name in (FEATURES_NAME, TOKEN_IDS_NAME, PROBABILITIES_NAME)},
            opset_version=ONNX_OPSET,
        )
    write_atomically(path, buffer.getvalue())


def write_outputs(output_dir: Path, net: TabularText, metrics: Mapping[str, float]) -> None:
    for name, value in metrics.items():
        if not math.isfinite(value):
            raise ValueError(f"metric {name} is {value}, not a finite number")
    output_dir.mkdir(parents=True, exist_ok=True)
    export_onnx(net, output_dir / "model.onnx")
    write_atomically(output_dir / "metrics.json", json.dumps(dict(metrics), indent=2).encode())
    write_atomically(output_dir / "labels.txt", "".join(f"{name}\n" for name in CLASS_NAMES).encode())
    # No row's answer depends on another's (no batch statistics at inference), and every input and the
    # output lead with the batch: the server may run several callers' rows in one model run.
    serving: dict[str, Any] = {"batchable": True}
    write_atomically(output_dir / "serving.json", json.dumps(serving).encode())


def run(argv: Sequence[str], env: Mapping[str, str]) -> int:
    build_parser().parse_args(argv)
    configure_logging(env)
    record = model_record(env)
    if record is not None and record.exists():
        log.info("this version is already published (%s exists): nothing to train", record)
        return EXIT_OK
    settings = read_settings(env)
    device = select_device(settings.device)
    log.info(
        "training on %s: %d epochs, batches of %d, learning rate %g, seed %d",
        device, settings.epochs, settings.params.batch_size, settings.params.learning_rate, settings.params.seed,
    )  # fmt: skip
    result = train(settings, make_data(settings.params.seed, settings.params.rows), device)
    log.info("held-out accuracy %.4f, loss %.4f on %d rows", result.accuracy, result.loss, TEST_ROWS)
    write_outputs(settings.output_dir, result.net, {"accuracy": result.accuracy, "loss": result.loss})
    log.info("wrote model.onnx, metrics.json, labels.txt and serving.json to %s", settings.output_dir)
    return EXIT_OK


def main() -> int:
    try:
        return run(sys.argv[1:], os.environ)
    except (ConfigError, Stopped) as e:
        print(f"train.py: error: {e}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
