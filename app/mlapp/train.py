"""Train the digit CNN, gate it on held-out accuracy and publish it as ONNX.

    python -m mlapp.train --model-dir DIR --model-name N --version V \
        --epochs E --batch-size B --learning-rate R --min-accuracy A \
        [--data-dir D] [--seed S]

Exit codes (the Kubernetes Job relies on them): 0 published (or already
published), 2 held-out accuracy under --min-accuracy, 1 anything else.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import logging
import math
import os
import signal
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

import torch
from torch import nn

from mlapp import store
from mlapp.data import DataError, Dataset, load_digits_dataset, load_idx_dataset
from mlapp.model import DigitCNN, WithSoftmax

log = logging.getLogger("mlapp.train")

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_GATE = 2
ONNX_OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "probabilities"


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    # argparse exits 2 on bad arguments, but 2 means "failed the accuracy gate"
    # to the Job; a typo in the Job spec is an ordinary error.
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


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text}")
    return value


def _segment(what: str) -> Any:
    def parse(text: str) -> str:
        try:
            return store.check_segment(what, text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    return parse


@dataclass(frozen=True)
class Params:
    """What determines the trained weights: a checkpoint only resumes an identical run."""

    epochs: int
    batch_size: int
    learning_rate: float
    seed: int
    data: str


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m mlapp.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--model-dir", type=Path, required=True, help="root of the model store")
    p.add_argument("--model-name", type=_segment("--model-name"), required=True)
    p.add_argument("--version", type=_segment("--version"), required=True)
    p.add_argument("--epochs", type=_positive_int, required=True)
    p.add_argument("--batch-size", type=_positive_int, required=True)
    p.add_argument("--learning-rate", type=_positive_float, required=True)
    p.add_argument("--min-accuracy", type=_fraction, required=True, help="held-out gate, 0-1")
    p.add_argument("--data-dir", type=Path, help="MNIST-format IDX files (default: sklearn digits)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-every", type=_positive_int, default=50, help="steps")
    p.add_argument("--log-every", type=_positive_int, default=20, help="steps")
    return p


class _Stop:
    """SIGTERM (Spot eviction, pod deletion) stops after the current step with a checkpoint."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True


def _evaluate(
    net: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device, batch: int = 1024
) -> float:
    net.eval()
    correct = 0
    with torch.no_grad(), torch.autocast(device.type, enabled=device.type == "cuda"):
        for i in range(0, len(x), batch):
            out = net(x[i : i + batch].to(device))
            correct += int((out.argmax(1).cpu() == y[i : i + batch]).sum())
    net.train()
    return correct / len(x)


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    store.write_file_atomic(path, buf.getvalue())


def _load_checkpoint(path: Path, params: Params) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # a torn or foreign file must not stop training from scratch
        log.warning("ignoring unreadable checkpoint %s: %s", path, e)
        return None
    if state.get("params") != asdict(params):
        log.warning(
            "ignoring checkpoint %s: it was made with %s, this run is %s",
            path,
            state.get("params"),
            asdict(params),
        )
        return None
    return state


def _export(net: nn.Module, dataset: Dataset, out: Path) -> None:
    h, w = dataset.image_shape
    wrapped = WithSoftmax(net).cpu().float().eval()
    example = torch.zeros(1, 1, h, w)
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of torch.export, but
        # it needs no onnxscript and exports this plain CNN exactly.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapped,
            (example,),
            str(out / store.MODEL_FILE),
            dynamo=False,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=ONNX_OPSET,
        )


def _metadata(
    args: argparse.Namespace, dataset: Dataset, accuracy: float, device: torch.device, steps: int
) -> dict[str, Any]:
    h, w = dataset.image_shape
    return {
        "format_version": 1,
        "model_name": args.model_name,
        "version": args.version,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "accuracy": accuracy,
        "dataset": {
            "name": dataset.name,
            "train_examples": len(dataset.y_train),
            "test_examples": len(dataset.y_test),
        },
        "parameters": {
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "learning_rate": args.learning_rate,
            "seed": args.seed,
            "min_accuracy": args.min_accuracy,
            "steps": steps,
        },
        "trainer_image": os.environ.get("MLAPP_TRAINER_IMAGE") or None,
        "framework": {"torch": torch.__version__, "onnx_opset": ONNX_OPSET, "device": device.type},
        "num_classes": dataset.num_classes,
        "input": {
            "name": INPUT_NAME,
            "datatype": "FP32",
            "shape": [-1, 1, h, w],
            # How the server turns a picture into this tensor: grayscale, resize
            # to height x width, light digit on dark ground, pixel / pixel_max.
            "preprocessing": {
                "height": h,
                "width": w,
                "color": "grayscale",
                "foreground": "light",
                "pixel_max": dataset.pixel_max,
                "range": [0.0, 1.0],
            },
        },
        "output": {"name": OUTPUT_NAME, "datatype": "FP32", "shape": [-1, dataset.num_classes]},
    }


def train(args: argparse.Namespace) -> int:
    final = store.version_dir(args.model_dir, args.model_name, args.version)
    if store.is_complete(final):
        log.info(
            "model %s version %s is already in the store at %s; nothing to do",
            args.model_name,
            args.version,
            final,
        )
        return EXIT_OK

    ckpt_path = store.checkpoint_path(args.model_dir, args.model_name, args.version)
    try:
        ckpt_path.parent.mkdir(parents=True, exist_ok=True)
        probe = ckpt_path.parent / f".probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        log.error("cannot write to the model store %s: %s", args.model_dir, e)
        return EXIT_ERROR

    dataset = load_idx_dataset(args.data_dir) if args.data_dir else load_digits_dataset(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    h, w = dataset.image_shape
    log.info(
        "data set %s: %d train, %d held out, %dx%d, %d classes; device %s%s",
        dataset.name,
        len(dataset.y_train),
        len(dataset.y_test),
        h,
        w,
        dataset.num_classes,
        device.type,
        " (mixed precision)" if device.type == "cuda" else "",
    )

    params = Params(args.epochs, args.batch_size, args.learning_rate, args.seed, dataset.name)
    torch.manual_seed(args.seed)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True)
    net = DigitCNN(h, w, dataset.num_classes).to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=args.learning_rate)
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda")
    loss_fn = nn.CrossEntropyLoss()

    x_train = torch.from_numpy(dataset.x_train)
    y_train = torch.from_numpy(dataset.y_train)
    x_test = torch.from_numpy(dataset.x_test)
    y_test = torch.from_numpy(dataset.y_test)
    steps_per_epoch = math.ceil(len(x_train) / args.batch_size)

    start_epoch, start_batch, step = 0, 0, 0
    state = _load_checkpoint(ckpt_path, params)
    if state is not None:
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"])
        start_epoch, start_batch, step = state["epoch"], state["batch"], state["step"]
        log.info(
            "resuming from checkpoint %s at step %d (epoch %d)", ckpt_path, step, start_epoch + 1
        )

    def checkpoint(epoch: int, batch: int) -> None:
        _save_checkpoint(
            ckpt_path,
            {
                "params": asdict(params),
                "model": net.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict(),
                "rng": torch.get_rng_state(),
                "epoch": epoch,
                "batch": batch,
                "step": step,
            },
        )
        log.info("checkpoint saved at step %d", step)

    stop = _Stop()
    signal.signal(signal.SIGTERM, stop)
    net.train()
    started = time.monotonic()
    for epoch in range(start_epoch, args.epochs):
        # The order of an epoch depends only on (seed, epoch), so a resumed run
        # sees exactly the batches the interrupted one would have.
        order = torch.randperm(
            len(x_train), generator=torch.Generator().manual_seed(args.seed * 100_003 + epoch)
        )
        seen = correct = 0
        loss_sum = 0.0
        first = start_batch if epoch == start_epoch else 0
        for b in range(first, steps_per_epoch):
            idx = order[b * args.batch_size : (b + 1) * args.batch_size]
            xb, yb = x_train[idx].to(device), y_train[idx].to(device)
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, enabled=device.type == "cuda"):
                out = net(xb)
                loss = loss_fn(out, yb)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            step += 1
            seen += len(yb)
            correct += int((out.argmax(1) == yb).sum())
            loss_sum += loss.item() * len(yb)
            if step % args.log_every == 0:
                log.info(
                    "step %d epoch %d loss %.4f running accuracy %.4f",
                    step,
                    epoch + 1,
                    loss_sum / seen,
                    correct / seen,
                )
            last_of_epoch = b + 1 == steps_per_epoch
            if stop.requested or (step % args.checkpoint_every == 0 and not last_of_epoch):
                checkpoint(epoch, b + 1)
            if stop.requested:
                log.error(
                    "stopped by SIGTERM at step %d; a rerun resumes from the checkpoint", step
                )
                return EXIT_ERROR
        checkpoint(epoch + 1, 0)
        log.info("Accuracy at step %d: %.4f", step, _evaluate(net, x_test, y_test, device))

    accuracy = _evaluate(net, x_test, y_test, device)
    log.info(
        "held-out accuracy %.4f after %d steps in %.1fs (gate %.4f)",
        accuracy,
        step,
        time.monotonic() - started,
        args.min_accuracy,
    )
    if accuracy < args.min_accuracy:
        log.error(
            "held-out accuracy %.4f is under --min-accuracy %.4f; not publishing",
            accuracy,
            args.min_accuracy,
        )
        return EXIT_GATE

    meta = _metadata(args, dataset, accuracy, device, step)

    def write(staging: Path) -> None:
        _export(net, dataset, staging)
        write_metadata(staging, meta)

    published = store.publish(args.model_dir, args.model_name, args.version, write)
    ckpt_path.unlink(missing_ok=True)
    log.info("%s %s", "published" if published else "already published by another run", final)
    return EXIT_OK


def write_metadata(directory: Path, meta: dict[str, Any]) -> None:
    text = json.dumps(meta, indent=2, sort_keys=True) + "\n"
    (directory / store.METADATA_FILE).write_text(text, encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stdout,
        force=True,
    )
    args = build_parser().parse_args(argv)
    try:
        return train(args)
    except DataError as e:
        log.error("cannot load training data: %s", e)
        return EXIT_ERROR
    except OSError as e:
        log.error("cannot write the model to the store %s: %s", args.model_dir, e)
        return EXIT_ERROR
    except Exception:
        log.exception("training failed")
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
