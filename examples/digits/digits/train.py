"""Train the digit CNN and write it, with its metrics, where the trainer contract says.

    python -m digits.train --output-dir DIR --epochs E --batch-size B --learning-rate R
        [--checkpoint-dir DIR] [--model-record FILE] [--model-name N] [--model-version V]
        [--gate 'accuracy>=0.9'] [--seed S] [--device auto|cuda|cpu] [--data-dir D]

Each of those options has its variable of the trainer contract (docs/trainer-contract.md,
"Environment"; digits.contract): the training Job sets the variables, and a flag given on the
command line overrides its variable, so that a person can run the trainer by hand. A value that
neither gives, where one is required, is a usage error naming both.

Outputs, into the output directory (the contract's "Outputs"): model.onnx (input ``input`` FP32
[-1, 1, H, W], output ``probabilities`` FP32 [-1, classes]), metrics.json (held-out accuracy, the
last epoch's mean loss, steps), labels.txt and serving.json (the server's image-classifier
plug-in). The platform's publisher judges them against the gate and publishes them; this trainer
never touches the model store beyond its output and checkpoint directories.

Exit codes (the contract's; digits.contract): 0 outputs written, or the version already published;
2 the metrics miss the gate (this trainer's own judgement, which the contract allows: nothing is
written); 1 anything else, bad arguments included.

Under torchrun (``torchrun --nproc-per-node G ... -m digits.train ...``, or ``python -m digits`` in a
multi-node Job) every worker trains its shard of each batch; rank 0 alone reads and writes the
checkpoint, evaluates, judges the gate and writes the outputs, and every rank exits with rank 0's
verdict. A rank that stops because another failed or was stopped exits 3 (contract.EXIT_PEER).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

from digits import contract, cuda, files, progress
from digits.contract import Gate
from digits.data import DataError, Dataset, load_digits_dataset, load_idx_dataset
from digits.launch import Rank

log = logging.getLogger("digits.train")

# The resumable state, one file in MLAPP_CHECKPOINT_DIR (a directory of this version's own).
CHECKPOINT_FILE = "checkpoint.pt"
OUTPUT_FILES = (contract.MODEL_FILE, contract.METRICS_FILE, contract.LABELS_FILE, contract.SERVING_FILE)
# What a run by hand is called in its logs and metrics when neither flag nor variable names it.
DEFAULT_MODEL_NAME = "digits"
DEFAULT_MODEL_VERSION = "local"


class _Parser(argparse.ArgumentParser):
    # argparse exits 2 on bad arguments, but 2 means "under the gate" to the Job; a typo in the
    # Job spec is an ordinary error.
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(contract.EXIT_ERROR)


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


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None


def _directory(text: str) -> Path:
    """A directory to write into. An empty path is the current directory, "/" the whole filesystem,
    and a ".." component leaves the directory the operator named; none of them is ever meant as a
    place for a run's files. A NUL byte no filesystem call accepts. Relative paths are allowed."""
    path = Path(text)
    if not text or "\0" in text or str(path) == path.anchor or ".." in path.parts:
        raise argparse.ArgumentTypeError(
            "must be a directory path that is not empty, not the filesystem root, without a NUL byte "
            f"and without a '..' component; got {text!r}"
        )
    return path


def _name(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text.strip()


def _device(text: str) -> str:
    if text not in cuda.DEVICES:
        raise argparse.ArgumentTypeError(f"must be one of {', '.join(cuda.DEVICES)}, got {text!r}")
    return text


def _gate(text: str) -> Gate:
    try:
        return Gate.parse(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


_REQUIRED: Any = object()
# The options the contract's environment gives: (flag, variable, parse, default). A flag on the
# command line wins over its variable; _REQUIRED: one of the two must give it.
_FROM_ENV: tuple[tuple[str, str, Callable[[str], Any], Any], ...] = (
    ("--output-dir", contract.ENV_OUTPUT_DIR, _directory, _REQUIRED),
    ("--checkpoint-dir", contract.ENV_CHECKPOINT_DIR, _directory, None),
    ("--model-record", contract.ENV_MODEL_RECORD, Path, None),
    ("--model-name", contract.ENV_MODEL_NAME, _name, DEFAULT_MODEL_NAME),
    ("--model-version", contract.ENV_MODEL_VERSION, _name, DEFAULT_MODEL_VERSION),
    ("--device", contract.ENV_DEVICE, _device, "auto"),
    ("--epochs", contract.ENV_EPOCHS, _positive_int, _REQUIRED),
    ("--batch-size", contract.ENV_BATCH_SIZE, _positive_int, _REQUIRED),
    ("--learning-rate", contract.ENV_LEARNING_RATE, _positive_float, _REQUIRED),
    ("--seed", contract.ENV_SEED, _integer, 0),
)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m digits.train", description=__doc__.split("\n\n")[0])
    helps = {
        "--output-dir": "where model.onnx, metrics.json, labels.txt and serving.json go",
        "--checkpoint-dir": "resumable state, kept across pods; without one, no checkpoints",
        "--model-record": "the version's commit record: when it exists, exit 0 at once",
        "--device": "cuda: a GPU must work, or exit 1 naming why (the Job sets it when its pod has a GPU); "
        "cpu: never use a GPU; auto: CUDA when it works",
    }
    for flag, variable, parse, default in _FROM_ENV:
        shown = "required" if default is _REQUIRED else f"default {default}"
        # default None: whether the flag was given is told apart from its variable in parse_args.
        p.add_argument(flag, type=parse, default=None, help=f"{helps.get(flag, '')} (${variable}; {shown})".strip())
    p.add_argument(
        "--gate",
        type=_gate,
        default=None,
        help=f"METRIC>=THRESHOLD or METRIC<=THRESHOLD (${contract.ENV_GATE_METRIC}, ${contract.ENV_GATE_DIRECTION}, "
        f"${contract.ENV_GATE_THRESHOLD}); without one, the outputs are written whatever the metrics",
    )
    p.add_argument("--data-dir", type=Path, help="MNIST-format IDX files (default: sklearn digits)")
    p.add_argument("--checkpoint-every", type=_positive_int, default=50, help="steps")
    p.add_argument("--log-every", type=_positive_int, default=20, help="steps")
    p.add_argument(
        "--collective-timeout",
        type=_positive_int,
        default=600,
        help="seconds a rank waits in a collective (under torchrun) before it gives up on its peers",
    )
    return p


def parse_args(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> argparse.Namespace:
    """The command line, each contract option missing from it taken from its variable in ``env``."""
    env = os.environ if env is None else env
    parser = build_parser()
    args = parser.parse_args(argv)
    for flag, variable, parse, default in _FROM_ENV:
        dest = flag[2:].replace("-", "_")
        if getattr(args, dest) is not None:
            continue
        raw = env.get(variable, "").strip()
        if not raw:
            if default is _REQUIRED:
                parser.error(f"{flag} or {variable} is required")
            setattr(args, dest, default)
            continue
        try:
            setattr(args, dest, parse(raw))
        except argparse.ArgumentTypeError as e:
            parser.error(f"{variable} (or {flag}): {e}")
    if args.gate is None:
        try:
            args.gate = Gate.from_env(env)
        except ValueError as e:
            parser.error(f"the gate ({contract.ENV_GATE_METRIC} and the rest, or --gate): {e}")
    return args


def train(args: argparse.Namespace, rank: Rank | None = None) -> int:
    rank = rank or Rank()
    if args.model_record is not None and args.model_record.exists():
        log.info(
            "model %s version %s is already published (%s exists); nothing to do",
            args.model_name, args.model_version, args.model_record,
        )  # fmt: skip
        return contract.EXIT_OK
    image = os.environ.get(contract.ENV_TRAINER_IMAGE, "").strip()
    if image and rank.leader:
        log.info("trainer image %s", image)

    ckpt_path = args.checkpoint_dir / CHECKPOINT_FILE if args.checkpoint_dir is not None else None
    if rank.leader:
        removed = _prepare(args.output_dir, ckpt_path)
        if removed is None:
            return contract.EXIT_ERROR
        if removed:
            log.info("removed %d staging file(s) that an interrupted run of this version left", removed)
    if args.batch_size < rank.world_size:
        log.error("--batch-size %d is smaller than the %d ranks sharing each batch", args.batch_size, rank.world_size)
        return contract.EXIT_ERROR

    dataset = load_idx_dataset(args.data_dir) if args.data_dir else load_digits_dataset(args.seed)
    h, w = dataset.image_shape
    log.info(
        "data set %s: %d train, %d held out, %dx%d, %d classes",
        dataset.name, len(dataset.y_train), len(dataset.y_test), h, w, dataset.num_classes,
    )  # fmt: skip

    from digits import fit  # noqa: PLC0415 - torch takes seconds to import; errors above need not wait

    try:
        device = fit.select_device(args.device, rank.local_rank)
    except fit.DeviceError as e:
        log.error("device cuda: a GPU was requested but CUDA cannot be used: %s", e)
        return contract.EXIT_ERROR
    if not rank.distributed:
        return _train_and_write(args, dataset, device, ckpt_path, rank)
    return _train_in_group(args, dataset, device, ckpt_path, rank)


def _train_in_group(args: argparse.Namespace, dataset: Dataset, device: Any, ckpt_path: Path | None, rank: Rank) -> int:
    """Train as one rank of torchrun's group; a rank that lost its peers exits EXIT_PEER."""
    from digits import fit  # noqa: PLC0415 - imported by train() before it calls this

    fit.join_group(rank, device, args.collective_timeout)
    try:
        return _train_and_write(args, dataset, device, ckpt_path, rank)
    except Exception as e:
        if not fit.lost_peer(e):
            raise
        log.error("lost contact with the other ranks: %s", " ".join(str(e).split()))
        return contract.EXIT_PEER
    finally:
        fit.leave_group()


def _prepare(output_dir: Path, ckpt_path: Path | None) -> int | None:
    """Check the output and checkpoint directories can be written and remove the staging files killed
    writers left there: how many; None if they cannot be written."""
    try:
        files.check_writable(output_dir / contract.MODEL_FILE)
        if ckpt_path is not None:
            files.check_writable(ckpt_path)
        # No earlier run of this version is still writing: with a podFailurePolicy
        # the Job creates a replacement pod only once the previous one is fully
        # terminated (podReplacementPolicy "Failed", the only value allowed then:
        # https://kubernetes.io/docs/concepts/workloads/controllers/job/#pod-replacement-policy).
        # So staging files here are a killed run's leftovers.
        removed = files.remove_staging(output_dir, OUTPUT_FILES)
        if ckpt_path is not None:
            removed += files.remove_staging(ckpt_path.parent, {ckpt_path.name})
    except OSError as e:
        log.error("cannot write to the output directory %s or the checkpoint directory: %s", output_dir, e)
        return None
    return removed


def _train_and_write(
    args: argparse.Namespace, dataset: Dataset, device: Any, ckpt_path: Path | None, rank: Rank
) -> int:
    from digits import fit  # noqa: PLC0415 - imported by train() before it calls this

    params = fit.Params(args.epochs, args.batch_size, args.learning_rate, args.seed, dataset.name)
    try:
        result = fit.fit(dataset, params, ckpt_path, args.checkpoint_every, args.log_every, device=device, rank=rank)
    except fit.Stopped as e:
        log.error("%s", e)
        return contract.EXIT_ERROR
    except fit.PeerStopped as e:
        log.error("%s", e)
        return contract.EXIT_PEER
    if not rank.distributed:
        return _judge_and_write(args, dataset, result)
    code = contract.EXIT_OK
    if rank.leader:
        try:
            code = _judge_and_write(args, dataset, result)
        except Exception:  # the other ranks wait for a verdict: they must get one
            log.exception("writing the outputs failed")
            code = contract.EXIT_ERROR
    # Every rank exits with rank 0's verdict; rank 0's own error is counted on its pod alone.
    verdict = fit.verdict_of_leader(code, device)
    return contract.EXIT_PEER if verdict == contract.EXIT_ERROR and not rank.leader else verdict


def run_metrics(result: Any) -> dict[str, float]:
    """metrics.json: the held-out accuracy, the last epoch's mean training loss and the steps taken.

    Numbers only, and finite (the contract's publisher refuses anything else): a diverged loss is
    left out, with a warning, rather than written as NaN.
    """
    metrics: dict[str, float] = {"accuracy": float(result.accuracy), "loss": float(result.loss)}
    if not math.isfinite(metrics["loss"]):
        log.warning("the last epoch's mean loss is %s; metrics.json leaves it out", metrics.pop("loss"))
    metrics["steps"] = int(result.steps)
    return metrics


def _judge_and_write(args: argparse.Namespace, dataset: Dataset, result: Any) -> int:
    metrics = run_metrics(result)
    gate: Gate | None = args.gate
    passed = progress.verdict(metrics, gate)
    if gate is not None and passed is False:
        log.error("%s %.4f misses the gate %s; writing no outputs", gate.metric, metrics[gate.metric], gate)
        return contract.EXIT_GATE
    if gate is not None and passed is None:
        log.warning(
            "the gate's metric %r is not one this trainer reports (%s): the publisher judges it",
            gate.metric, ", ".join(metrics),
        )  # fmt: skip
    write_outputs(args.output_dir, dataset, result, metrics)
    log.info(
        "wrote model %s version %s to %s (held-out accuracy %.4f, gate %s)",
        args.model_name, args.model_version, args.output_dir, metrics["accuracy"], gate or "none",
    )  # fmt: skip
    return contract.EXIT_OK


def serving(dataset: Dataset) -> dict[str, Any]:
    """serving.json: rows are independent (no batch norm, nothing across the batch), and the server's
    image-classifier plug-in turns a picture into the input as data.py scales the training images:
    grey, 0-1, a light digit on a dark ground."""
    from digits import fit  # noqa: PLC0415 - torch is imported by then: the outputs follow training

    h, w = dataset.image_shape
    return {
        "batchable": True,
        "plugin": {
            "name": "image-classifier",
            "input": fit.INPUT_NAME,
            "output": fit.OUTPUT_NAME,
            "height": h,
            "width": w,
            "foreground": "light",
            "scores": "probabilities",
        },
    }


def write_outputs(directory: Path, dataset: Dataset, result: Any, metrics: Mapping[str, float]) -> None:
    """The contract's files, each written whole (a staging file renamed over it): metrics.json last."""
    from digits import fit  # noqa: PLC0415 - torch is imported by then: the outputs follow training

    h, w = dataset.image_shape
    # Exported to $TMPDIR first (the pod's scratch emptyDir): a failing export leaves the output
    # directory as it was.
    with tempfile.TemporaryDirectory(prefix="digits-export-") as scratch:
        local = Path(scratch) / contract.MODEL_FILE
        fit.export_onnx(result.net, h, w, local)
        model = local.read_bytes()
    files.write_file_atomic(directory / contract.MODEL_FILE, model)
    labels = "".join(f"{i}\n" for i in range(dataset.num_classes))
    files.write_file_atomic(directory / contract.LABELS_FILE, labels.encode("utf-8"))
    files.write_file_atomic(directory / contract.SERVING_FILE, _json(serving(dataset)))
    files.write_file_atomic(directory / contract.METRICS_FILE, _json(metrics))


def _json(data: Mapping[str, Any]) -> bytes:
    return (json.dumps(data, indent=2) + "\n").encode("utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        rank = Rank.from_env()
    except ValueError as e:
        print(f"python -m digits.train: {e}", file=sys.stderr)
        return contract.EXIT_ERROR
    where = f" [rank {rank.rank}/{rank.world_size}]" if rank.distributed else ""
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s %(levelname)s %(name)s{where} %(message)s",
        stream=sys.stdout,
        force=True,
    )
    args = parse_args(argv)
    try:
        with progress.reporting(args.model_name, args.model_version, args.epochs, args.gate):
            return train(args, rank)
    except DataError as e:
        log.error("cannot load training data: %s", e)
        return contract.EXIT_ERROR
    except OSError as e:
        log.error("cannot write the outputs to %s: %s", args.output_dir, e)
        return contract.EXIT_ERROR
    except Exception:
        log.exception("training failed")
        return contract.EXIT_ERROR


def exit_process(code: int) -> NoReturn:
    """Exit with ``code``; a rank of a group skips the interpreter's teardown.

    gloo's C++ threads can still hold work objects with Python references when the interpreter
    finalizes, and the process then aborts (SIGABRT) after its work is done (pytorch/pytorch#179291,
    "crashes with SIGABRT because the interpreter is being torn down"): seen here as a rank that had
    finished its work exiting -6, which would fail its pod. Everything the rank had to do is done and its
    output flushed by then, so it leaves at once.
    """
    try:
        distributed = Rank.from_env().distributed
    except ValueError:
        distributed = False
    if distributed:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    exit_process(main())
