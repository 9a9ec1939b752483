"""Train the digit CNN, gate it on held-out accuracy and publish it as ONNX.

    python -m mlapp.train --model-dir DIR --model-name N --version V \
        --epochs E --batch-size B --learning-rate R --min-accuracy A \
        [--data-dir D] [--seed S] [--device auto|cuda|cpu]

Exit codes (mlapp.contract; the Kubernetes Job relies on them): 0 published (or already
published), 2 held-out accuracy under --min-accuracy, 1 anything else.

Under torchrun (``torchrun --nproc-per-node G ... -m mlapp.train ...``, or ``mlapp.launch`` in a
multi-node Job) every worker trains its shard of each batch; rank 0 alone reads and writes the
checkpoint, evaluates the gate and publishes, and every rank exits with rank 0's verdict. A rank
that stops because another failed or was stopped exits 3 (mlapp.contract.EXIT_PEER).
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from mlapp import contract, cuda, progress, store
from mlapp.data import DataError, Dataset, load_digits_dataset, load_idx_dataset
from mlapp.launch import Rank

log = logging.getLogger("mlapp.train")


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    # argparse exits 2 on bad arguments, but 2 means "failed the accuracy gate"
    # to the Job; a typo in the Job spec is an ordinary error.
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


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text}")
    return value


def _checked(check: Callable[[str, str], Any], what: str) -> Callable[[str], Any]:
    """An argparse type from one of the store's checks, ``check(what, text)``: its refusal is a usage error."""

    def parse(text: str) -> Any:
        try:
            return check(what, text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    return parse


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m mlapp.train", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--model-dir", type=_checked(store.check_root, "--model-dir"), required=True, help="root of the model store"
    )
    p.add_argument("--model-name", type=_checked(store.check_segment, "--model-name"), required=True)
    p.add_argument("--version", type=_checked(store.check_segment, "--version"), required=True)
    p.add_argument("--epochs", type=_positive_int, required=True)
    p.add_argument("--batch-size", type=_positive_int, required=True)
    p.add_argument("--learning-rate", type=_positive_float, required=True)
    p.add_argument("--min-accuracy", type=_fraction, required=True, help="held-out gate, 0-1")
    p.add_argument("--data-dir", type=Path, help="MNIST-format IDX files (default: sklearn digits)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--device",
        choices=cuda.DEVICES,
        default="auto",
        help="cuda: a GPU must work, or exit 1 naming why (the Job sets it when it requests one); "
        "cpu: never use a GPU; auto: CUDA when it works",
    )
    p.add_argument("--checkpoint-every", type=_positive_int, default=50, help="steps")
    p.add_argument("--log-every", type=_positive_int, default=20, help="steps")
    p.add_argument(
        "--collective-timeout",
        type=_positive_int,
        default=600,
        help="seconds a rank waits in a collective (under torchrun) before it gives up on its peers",
    )
    return p


def _metadata(args: argparse.Namespace, dataset: Dataset, accuracy: float, device: str, steps: int) -> dict[str, Any]:
    h, w = dataset.image_shape
    return {
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
        "trainer_image": os.environ.get(contract.ENV_TRAINER_IMAGE) or None,
        "framework": {"onnx_opset": store.ONNX_OPSET, "device": device},
        "num_classes": dataset.num_classes,
        "input": {
            "name": store.INPUT_NAME,
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
        "output": {
            "name": store.OUTPUT_NAME,
            "datatype": "FP32",
            "shape": [-1, dataset.num_classes],
        },
    }


def train(args: argparse.Namespace, rank: Rank | None = None) -> int:
    rank = rank or Rank()
    final = store.version_dir(args.model_dir, args.model_name, args.version)
    if store.is_complete(final):
        log.info(
            "model %s version %s is already in the store at %s; nothing to do",
            args.model_name, args.version, final,
        )  # fmt: skip
        return contract.EXIT_OK

    ckpt_path = store.checkpoint_path(args.model_dir, args.model_name, args.version)
    if rank.leader:
        removed = _prepare_store(args, ckpt_path)
        if removed is None:
            return contract.EXIT_ERROR
        if removed:
            log.info("removed %d staging file(s) that an interrupted run of version %s left", removed, args.version)
    if args.batch_size < rank.world_size:
        log.error("--batch-size %d is smaller than the %d ranks sharing each batch", args.batch_size, rank.world_size)
        return contract.EXIT_ERROR

    dataset = load_idx_dataset(args.data_dir) if args.data_dir else load_digits_dataset(args.seed)
    h, w = dataset.image_shape
    log.info(
        "data set %s: %d train, %d held out, %dx%d, %d classes",
        dataset.name, len(dataset.y_train), len(dataset.y_test), h, w, dataset.num_classes,
    )  # fmt: skip

    from mlapp import fit  # noqa: PLC0415 - torch takes seconds to import; errors above need not wait

    try:
        device = fit.select_device(args.device, rank.local_rank)
    except fit.DeviceError as e:
        log.error("--device cuda: a GPU was requested but CUDA cannot be used: %s", e)
        return contract.EXIT_ERROR
    if not rank.distributed:
        return _train_and_publish(args, dataset, device, ckpt_path, rank)
    return _train_in_group(args, dataset, device, ckpt_path, rank)


def _train_in_group(args: argparse.Namespace, dataset: Dataset, device: Any, ckpt_path: Path, rank: Rank) -> int:
    """Train as one rank of torchrun's group; a rank that lost its peers exits EXIT_PEER."""
    from mlapp import fit  # noqa: PLC0415 - imported by train() before it calls this

    fit.join_group(rank, device, args.collective_timeout)
    try:
        return _train_and_publish(args, dataset, device, ckpt_path, rank)
    except Exception as e:
        if not fit.lost_peer(e):
            raise
        log.error("lost contact with the other ranks: %s", " ".join(str(e).split()))
        return contract.EXIT_PEER
    finally:
        fit.leave_group()


def _prepare_store(args: argparse.Namespace, ckpt_path: Path) -> int | None:
    """Check the store can be written and remove this version's staging leftovers: how many; None if it cannot."""
    try:
        store.check_writable(ckpt_path)
        # No earlier run of this version is still writing: with a podFailurePolicy
        # the Job creates a replacement pod only once the previous one is fully
        # terminated (podReplacementPolicy "Failed", the only value allowed then:
        # https://kubernetes.io/docs/concepts/workloads/controllers/job/#pod-replacement-policy).
        # So staging files of this version are a killed run's leftovers.
        return store.remove_staging(args.model_dir, args.model_name, args.version)
    except OSError as e:
        log.error("cannot write to the model store %s: %s", args.model_dir, e)
        return None


def _train_and_publish(args: argparse.Namespace, dataset: Dataset, device: Any, ckpt_path: Path, rank: Rank) -> int:
    from mlapp import fit  # noqa: PLC0415 - imported by train() before it calls this

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
        return _judge_and_publish(args, dataset, result, ckpt_path)
    code = contract.EXIT_OK
    if rank.leader:
        try:
            code = _judge_and_publish(args, dataset, result, ckpt_path)
        except Exception:  # the other ranks wait for a verdict: they must get one
            log.exception("publishing failed")
            code = contract.EXIT_ERROR
    # Every rank exits with rank 0's verdict; rank 0's own error is counted on its pod alone.
    verdict = fit.verdict_of_leader(code, device)
    return contract.EXIT_PEER if verdict == contract.EXIT_ERROR and not rank.leader else verdict


def _judge_and_publish(args: argparse.Namespace, dataset: Dataset, result: Any, ckpt_path: Path) -> int:
    from mlapp import fit  # noqa: PLC0415 - imported by train() before it calls this

    h, w = dataset.image_shape
    final = store.version_dir(args.model_dir, args.model_name, args.version)
    if not progress.verdict(result.accuracy, args.min_accuracy):
        log.error(
            "held-out accuracy %.4f is under --min-accuracy %.4f; not publishing",
            result.accuracy, args.min_accuracy,
        )  # fmt: skip
        return contract.EXIT_GATE

    meta = _metadata(args, dataset, result.accuracy, result.device, result.steps)
    meta["framework"]["torch"] = fit.TORCH_VERSION

    published = store.publish(
        args.model_dir,
        args.model_name,
        args.version,
        lambda path: fit.export_onnx(result.net, h, w, path),
        meta,
    )
    ckpt_path.unlink(missing_ok=True)
    log.info(
        "%s %s (held-out accuracy %.4f, gate %.4f)",
        "published" if published else "another run already published",
        final, result.accuracy, args.min_accuracy,
    )  # fmt: skip
    return contract.EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    try:
        rank = Rank.from_env()
    except ValueError as e:
        print(f"python -m mlapp.train: {e}", file=sys.stderr)
        return contract.EXIT_ERROR
    where = f" [rank {rank.rank}/{rank.world_size}]" if rank.distributed else ""
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s %(levelname)s %(name)s{where} %(message)s",
        stream=sys.stdout,
        force=True,
    )
    args = build_parser().parse_args(argv)
    try:
        with progress.reporting(args.model_name, args.version, args.epochs, args.min_accuracy):
            return train(args, rank)
    except DataError as e:
        log.error("cannot load training data: %s", e)
        return contract.EXIT_ERROR
    except OSError as e:
        log.error("cannot write the model to the store %s: %s", args.model_dir, e)
        return contract.EXIT_ERROR
    except Exception:
        log.exception("training failed")
        return contract.EXIT_ERROR


def _exit(code: int) -> NoReturn:
    """Exit with ``code``; a rank of a group skips the interpreter's teardown.

    gloo's C++ threads can still hold work objects with Python references when the interpreter
    finalizes, and the process then aborts (SIGABRT) after its work is done (pytorch/pytorch#179291,
    "crashes with SIGABRT because the interpreter is being torn down"): seen here as a rank that had
    published exiting -6, which would fail its pod. Everything the rank had to do is done and its
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
    _exit(main())
