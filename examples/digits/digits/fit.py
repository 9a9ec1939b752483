"""The torch half of the trainer: the training loop, checkpoints and the ONNX export.

Kept apart from ``train`` so that argument, output directory and data errors are
reported before the (slow) torch import.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import signal
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from types import FrameType
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from digits import cuda, files, progress
from digits.data import Dataset
from digits.launch import Rank
from digits.model import DigitCNN, WithSoftmax

log = logging.getLogger("digits.train")

TORCH_VERSION = torch.__version__
# The exported graph's interface, which serving.json names for the server's image-classifier plug-in.
ONNX_OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "probabilities"


class Stopped(Exception):
    """SIGTERM arrived; the checkpoint is saved and a rerun resumes."""


class PeerStopped(Exception):
    """Another rank was stopped by SIGTERM; rank 0 saved the checkpoint and every rank stops with it."""


class DeviceError(Exception):
    """The requested device cannot train here; the message says why."""


def torch_build() -> cuda.TorchBuild:
    arch_list = tuple(torch.cuda.get_arch_list()) if torch.version.cuda else ()
    return cuda.TorchBuild(version=TORCH_VERSION, cuda=torch.version.cuda, arch_list=arch_list)


def select_device(requested: str, local_rank: int = 0) -> torch.device:
    """``cuda`` must work or fail with its cause; ``cpu`` is the CPU; ``auto`` takes CUDA if it works.

    The Job asks for ``cuda`` (MLAPP_DEVICE) exactly when its pod requests a GPU, so a GPU
    node whose CUDA does not come up fails the Job instead of training on CPU.
    """
    if requested == "cpu":
        return torch.device("cpu")
    if requested == "auto":
        return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    build = torch_build()
    driver = cuda.probe_driver() if build.cuda else cuda.DriverProbe(loaded=False)
    available = build.cuda is not None and torch.cuda.is_available()
    capabilities = [torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())] if available else []
    reason = cuda.unusable_reason(build, driver, capabilities)
    if reason is None and not available:
        reason = f"torch {build.version} reports CUDA unavailable although the driver loaded ({driver})"
    if reason is not None:
        raise DeviceError(reason)
    if local_rank >= torch.cuda.device_count():
        raise DeviceError(f"local rank {local_rank} has no GPU: this pod sees {torch.cuda.device_count()}")
    # torchrun starts one worker per GPU of the pod (--nproc-per-node); each takes the one its local rank names.
    return torch.device("cuda", local_rank)


def join_group(rank: Rank, device: torch.device, timeout_seconds: int) -> None:
    """Join the training group torchrun started: NCCL between GPUs, gloo between CPUs.

    The timeout bounds every collective, so a rank whose peer died without a word (a lost node)
    fails instead of waiting forever (https://pytorch.org/docs/stable/distributed.html,
    init_process_group: "timeout ... Duration of timeouts for operations executed against the
    process group", 10 minutes for NCCL and 30 for the others by default).
    """
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(
        "nccl" if device.type == "cuda" else "gloo",
        rank=rank.rank,
        world_size=rank.world_size,
        timeout=timedelta(seconds=timeout_seconds),
        device_id=device if device.type == "cuda" else None,
    )


# gloo reports a peer that went away, or never answered in time, as a plain RuntimeError raised from its
# TCP transport ("[.../gloo/transport/tcp/pair.cc:537] Read error ...: Connection reset by peer", "[.../gloo/
# transport/tcp/unbound_buffer.cc] Timed out waiting ...ms for recv operation"), not as a DistError;
# tests/stacks/test_distributed_training.py kills a rank's pod and holds the other to exiting EXIT_PEER on it.
_GLOO_TRANSPORT = "gloo/transport/"


def lost_peer(error: BaseException) -> bool:
    """Whether ``error`` says that another rank failed or went away, not that this one did.

    torch raises DistError (DistBackendError from NCCL, DistNetworkError and DistStoreError from the
    store) when the group breaks (https://pytorch.org/docs/stable/distributed.html#torch.distributed.DistError).
    """
    return isinstance(error, dist.DistError) or (isinstance(error, RuntimeError) and _GLOO_TRANSPORT in str(error))


def verdict_of_leader(code: int, device: torch.device) -> int:
    """Rank 0's exit code, on every rank."""
    box = [code]
    dist.broadcast_object_list(box, src=0, device=device)
    return int(box[0])


def leave_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


@dataclass(frozen=True)
class Params:
    """What determines the trained weights: a checkpoint only resumes an identical run."""

    epochs: int
    batch_size: int
    learning_rate: float
    seed: int
    data: str

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class _Trainee:
    """What training changes and a checkpoint restores, besides the RNG."""

    net: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler


@dataclass(frozen=True)
class Result:
    net: nn.Module
    accuracy: float | None  # None on a rank other than 0: only rank 0 evaluates
    loss: float  # the mean training loss over this rank's examples of the last epoch
    steps: int
    device: str


@dataclass
class RankGroup:
    """The ranks' shared view of a run: this one's place, and the collectives it takes part in."""

    rank: Rank = field(default_factory=Rank)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def shard(self, idx: torch.Tensor) -> torch.Tensor:
        """This rank's part of a global batch: every world_size-th example, starting at its rank."""
        return idx[self.rank.rank :: self.rank.world_size] if self.rank.distributed else idx

    def any_stopped(self, stopped: bool) -> bool:
        """Whether any rank was asked to stop: every rank then stops after the same step."""
        if not self.rank.distributed:
            return stopped
        flag = torch.tensor([int(stopped)], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def from_leader(self, state: dict[str, Any] | None) -> dict[str, Any] | None:
        """Rank 0's checkpoint state on every rank, so that all resume from the same step,
        whatever each would read from the store while an old rank 0 may still be writing."""
        if not self.rank.distributed:
            return state
        box: list[dict[str, Any] | None] = [state if self.rank.leader else None]
        dist.broadcast_object_list(box, src=0, device=self.device)
        return box[0]


class _StopFlag:
    """SIGTERM (Spot eviction, pod deletion) stops after the current step with a checkpoint."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True


def evaluate(net: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device, batch: int = 1024) -> float:
    net.eval()
    correct = 0
    with torch.no_grad(), torch.autocast(device.type, enabled=device.type == "cuda"):
        for i in range(0, len(x), batch):
            out = net(x[i : i + batch].to(device))
            correct += int((out.argmax(1).cpu() == y[i : i + batch]).sum())
    net.train()
    return correct / len(x)


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Save ``state`` whole or not at all, with its size and SHA-256 in the archive's comment
    (``files.write_checked``), which torch.load reads past.

    torch.save's archive checks nothing on load: bytes flipped in a tensor's data load as other weights,
    and the run would resume from them and publish what they train into."""
    buf = io.BytesIO()
    torch.save(state, buf)
    files.write_checked(path, buf.getvalue())


# What a checkpoint holds (``_Loop._checkpoint``), and the type each entry must have.
_CHECKPOINT_TYPES: dict[str, type] = {
    "params": dict,
    "model": dict,
    "optimizer": dict,
    "scaler": dict,
    "rng": torch.Tensor,
    "epoch": int,
    "batch": int,
    "step": int,
    # The epoch's loss so far (summed over its examples) and how many examples that is: after the
    # last epoch they are its mean loss, which metrics.json reports even when a rerun resumes there.
    "loss_sum": float,
    "seen": int,
}


def _checkpoint_problem(state: object, params: Params, steps_per_epoch: int) -> str | None:
    """Why ``state`` cannot resume this run, or None: its parameters, keys, types and position."""
    if not isinstance(state, dict):
        return f"it holds a {type(state).__name__}, not a dict of training state"
    if state.get("params") != params.as_dict():
        return f"it was made with {state.get('params')}, this run is {params.as_dict()}"
    return _type_problem(state) or _position_problem(state, params, steps_per_epoch)


def _type_problem(state: dict[str, Any]) -> str | None:
    for key, kind in _CHECKPOINT_TYPES.items():
        if key not in state:
            return f"it has no {key!r}"
        # bool is an int to Python, never a position to us.
        if not isinstance(state[key], kind) or isinstance(state[key], bool):
            return f"its {key!r} is {type(state[key]).__name__}, not {kind.__name__}"
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state["model"].items()):
        return "'model' is not a state dict of named tensors"
    optimizer = state["optimizer"]
    if not isinstance(optimizer.get("state"), dict) or not isinstance(optimizer.get("param_groups"), list):
        return "'optimizer' is not an optimizer state dict (no 'state' and 'param_groups')"
    if state["rng"].dtype != torch.uint8:
        return f"'rng' is a {state['rng'].dtype} tensor, not a uint8 generator state"
    return None


def _position_problem(state: dict[str, Any], params: Params, steps_per_epoch: int) -> str | None:
    epoch, batch, step = state["epoch"], state["batch"], state["step"]
    # Every step trains one batch, so a checkpoint at (epoch, batch) has taken
    # epoch x steps_per_epoch + batch steps; after the last epoch, batch is 0.
    if (
        0 <= epoch <= params.epochs
        and 0 <= batch <= (0 if epoch == params.epochs else steps_per_epoch)
        and step == epoch * steps_per_epoch + batch
        and state["seen"] >= 0
    ):
        return None
    return (
        f"its position (epoch {epoch}, batch {batch}, step {step}, {state['seen']} examples seen) is not one "
        f"this run reaches: epoch 0-{params.epochs}, batch 0-{steps_per_epoch}, "
        f"step = epoch x {steps_per_epoch} + batch, examples seen 0 or more"
    )


def _load_checkpoint(path: Path | None, params: Params, steps_per_epoch: int) -> dict[str, Any] | None:
    """The checkpoint's state if it can resume this run; else None, with a warning naming the file and why.

    A checkpoint that loads but cannot resume must not fail the run: the Job
    would retry, load it again and fail again until its retries are spent.
    """
    if path is None or not path.is_file():
        return None
    # Its size and SHA-256 first: a damaged checkpoint is refused, and one without them too, since nothing
    # says it is whole (one saved before checkpoints carried them costs a run from scratch, once).
    try:
        data = files.read_checked(path)
    except files.Unverified as e:
        log.warning("ignoring checkpoint %s: %s; training from scratch", path, e)
        return None
    except OSError as e:
        log.warning("ignoring unreadable checkpoint %s: %s; training from scratch", path, e)
        return None
    try:
        # weights_only: a checkpoint is data, never code to run. The bytes just verified, not a second read.
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # a foreign or damaged file must not block training from scratch
        log.warning("ignoring unreadable checkpoint %s: %s; training from scratch", path, e)
        return None
    problem = _checkpoint_problem(state, params, steps_per_epoch)
    if problem is not None:
        log.warning("ignoring checkpoint %s: %s; training from scratch", path, problem)
        return None
    checked: dict[str, Any] = state
    return checked


def _fresh(params: Params, dataset: Dataset, device: torch.device) -> _Trainee:
    """The untrained net and its optimizer and scaler, the same for a seed on every run."""
    torch.manual_seed(params.seed)
    h, w = dataset.image_shape
    net = DigitCNN(h, w, dataset.num_classes).to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=params.learning_rate)
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda")
    return _Trainee(net, optimizer, scaler)


def _restore(trainee: _Trainee, state: dict[str, Any]) -> None:
    """Load ``state`` into ``trainee``; raises if it does not fit, possibly after loading part of it."""
    trainee.net.load_state_dict(state["model"])
    trainee.optimizer.load_state_dict(state["optimizer"])
    # Adam takes moment tensors of any shape here and fails only at its first step.
    for group in trainee.optimizer.param_groups:
        for param in group["params"]:
            for name, value in trainee.optimizer.state.get(param, {}).items():
                if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape != param.shape:
                    raise ValueError(
                        f"optimizer state {name!r} has shape {tuple(value.shape)}, its parameter {tuple(param.shape)}"
                    )
    # A disabled scaler (CPU) saves {}; an enabled one then keeps its fresh state.
    if state["scaler"]:
        trainee.scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["rng"])


@dataclass
class _Position:
    """Where a run is, as its checkpoint records it: the next batch to train and the epoch's loss so far."""

    epoch: int = 0
    batch: int = 0  # the next batch of ``epoch``; after the last one, steps_per_epoch until the epoch closes
    step: int = 0
    # The current epoch's loss summed over its examples, and how many: rank 0's when a run resumes, since
    # only rank 0 saves them; every other rank counts its own from there.
    loss_sum: float = 0.0
    seen: int = 0

    @classmethod
    def of(cls, state: dict[str, Any], leader: bool) -> _Position:
        loss_sum, seen = (state["loss_sum"], state["seen"]) if leader else (0.0, 0)
        return cls(state["epoch"], state["batch"], state["step"], loss_sum, seen)

    @property
    def mean_loss(self) -> float:
        return self.loss_sum / max(self.seen, 1)


@dataclass(frozen=True)
class _Tensors:
    """The data set as tensors, kept on the CPU: each batch moves to the device when it is trained."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    @classmethod
    def of(cls, dataset: Dataset) -> _Tensors:
        return cls(
            torch.from_numpy(dataset.x_train),
            torch.from_numpy(dataset.y_train),
            torch.from_numpy(dataset.x_test),
            torch.from_numpy(dataset.y_test),
        )


@dataclass
class _Running:
    """This run's part of the current epoch, for the running accuracy the log shows."""

    correct: int = 0
    counted: int = 0


def fit(  # noqa: PLR0913 - its knobs are its parameters, as train passes them
    dataset: Dataset,
    params: Params,
    checkpoint_path: Path | None,
    checkpoint_every: int,
    log_every: int,
    *,
    device: torch.device,
    rank: Rank | None = None,
) -> Result:
    """Train; with torchrun's ranks (``rank``), data-parallel: every rank takes its shard of each
    global batch of ``params.batch_size`` and DDP averages the gradients, so the global batch, the
    order of the examples and the steps are those of one process with the same seed.

    Without a ``checkpoint_path`` (a run by hand) it neither resumes nor saves.
    """
    group = RankGroup(rank or Rank(), device)
    _set_up(device)
    data = _Tensors.of(dataset)
    steps_per_epoch = math.ceil(len(data.x_train) / params.batch_size)
    trainee, at = _fresh_or_resumed(params, dataset, group, checkpoint_path, steps_per_epoch)
    model = _parallel(trainee.net, group)
    loop = _Loop(params, group, trainee, model, data, steps_per_epoch, checkpoint_path, checkpoint_every, log_every)
    with _stop_on_sigterm() as stop:
        trainee.net.train()
        started = time.monotonic()
        while at.epoch < params.epochs:
            loop.epoch(at, stop)
        accuracy = loop.held_out()
        log.info(
            "held-out accuracy %s after %d steps (%.1fs this run)",
            "rank 0's to judge" if accuracy is None else f"{accuracy:.4f}", at.step, time.monotonic() - started,
        )  # fmt: skip
    return Result(net=trainee.net, accuracy=accuracy, loss=at.mean_loss, steps=at.step, device=device.type)


def _set_up(device: torch.device) -> None:
    """Say which device trains; on the CPU, train reproducibly (the same seed gives the same weights)."""
    on_gpu = device.type == "cuda"
    name = f" {torch.cuda.get_device_name(device)}" if on_gpu else ""
    log.info("device %s%s%s", device.type, name, " (mixed precision)" if on_gpu else "")
    if not on_gpu:
        torch.use_deterministic_algorithms(True)


def _fresh_or_resumed(
    params: Params, dataset: Dataset, group: RankGroup, checkpoint_path: Path | None, steps_per_epoch: int
) -> tuple[_Trainee, _Position]:
    """The trainee and where it starts: rank 0's checkpoint on every rank if it resumes this run, else from scratch."""
    trainee = _fresh(params, dataset, group.device)
    loaded = _load_checkpoint(checkpoint_path, params, steps_per_epoch) if group.rank.leader else None
    state = group.from_leader(loaded)
    if state is None:
        return trainee, _Position()
    try:
        _restore(trainee, state)
    except Exception as e:  # any misfit means "not this model's state", and it may be half loaded
        log.warning(
            "ignoring checkpoint %s: its state does not fit this model (%s); training from scratch",
            checkpoint_path, " ".join(str(e).split()),
        )  # fmt: skip
        return _fresh(params, dataset, group.device), _Position()
    at = _Position.of(state, group.rank.leader)
    log.info("resuming from checkpoint %s at step %d", checkpoint_path, at.step)
    return trainee, at


def _parallel(net: nn.Module, group: RankGroup) -> nn.Module:
    """What the steps run: ``net`` itself, or with ranks, DDP around it, which broadcasts rank 0's
    weights at construction and all-reduces the gradients in backward."""
    if not group.rank.distributed:
        return net
    on_gpu = group.device.type == "cuda"
    return nn.parallel.DistributedDataParallel(net, device_ids=[group.device] if on_gpu else None)


@contextlib.contextmanager
def _stop_on_sigterm() -> Iterator[_StopFlag]:
    stop = _StopFlag()
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGTERM, previous)


@dataclass(frozen=True)
class _Loop:
    """The training loop: what it trains, on which data, and when it logs and saves a checkpoint."""

    params: Params
    group: RankGroup
    trainee: _Trainee
    model: nn.Module  # the trainee's net, in DDP when there are ranks
    data: _Tensors
    steps_per_epoch: int
    checkpoint_path: Path | None
    checkpoint_every: int
    log_every: int
    mean_loss: nn.Module = field(default_factory=nn.CrossEntropyLoss)
    # Summed, then scaled by world_size / global batch: DDP averages the ranks' gradients
    # (https://pytorch.org/docs/stable/notes/ddp.html), so the step is the global batch's mean,
    # even where the last batch splits unevenly.
    summed_loss: nn.Module = field(default_factory=lambda: nn.CrossEntropyLoss(reduction="sum"))

    def epoch(self, at: _Position, stop: _StopFlag) -> None:
        """Train the rest of epoch ``at.epoch``, from batch ``at.batch``; then save, evaluate and report it."""
        # An epoch's order depends only on (seed, epoch), so a resumed run
        # sees exactly the batches the interrupted one would have.
        order = torch.randperm(
            len(self.data.x_train),
            generator=torch.Generator().manual_seed(self.params.seed * 100_003 + at.epoch),
        )
        if at.batch == 0:  # a resumed epoch carries on with the loss its checkpoint held
            at.loss_sum, at.seen = 0.0, 0
        running = _Running()
        size = self.params.batch_size
        while at.batch < self.steps_per_epoch:
            self._step(order[at.batch * size : (at.batch + 1) * size], at, running)
            self._log_progress(at, running)
            self._checkpoint_or_stop(at, stop)
        at.epoch, at.batch = at.epoch + 1, 0
        self._checkpoint(at)
        held_out = self.held_out()
        if held_out is not None:
            log.info("Accuracy at step %d: %.4f", at.step, held_out)
        progress.epoch_done(at.epoch, at.step, at.mean_loss, held_out)

    def held_out(self) -> float | None:
        """The held-out accuracy; None on a rank other than 0, which leaves judging to rank 0."""
        if not self.group.rank.leader:
            return None
        return evaluate(self.trainee.net, self.data.x_test, self.data.y_test, self.group.device)

    def _step(self, idx: torch.Tensor, at: _Position, running: _Running) -> None:
        """Train on this rank's shard of the global batch ``idx`` and count it in ``at`` and ``running``."""
        device = self.group.device
        optimizer, scaler = self.trainee.optimizer, self.trainee.scaler
        distributed, world_size = self.group.rank.distributed, self.group.rank.world_size
        mine = self.group.shard(idx)
        xb, yb = self.data.x_train[mine].to(device), self.data.y_train[mine].to(device)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, enabled=device.type == "cuda"):
            out = self.model(xb)
            loss = self.summed_loss(out, yb) * (world_size / len(idx)) if distributed else self.mean_loss(out, yb)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        at.step += 1
        at.batch += 1
        at.seen += len(yb)
        running.counted += len(yb)
        running.correct += int((out.argmax(1) == yb).sum())
        # This rank's examples' mean loss, whichever way the step's loss was scaled.
        at.loss_sum += (loss.item() * len(idx) / world_size) if distributed else (loss.item() * len(yb))

    def _log_progress(self, at: _Position, running: _Running) -> None:
        if at.step % self.log_every == 0 and running.counted:
            log.info(
                "step %d epoch %d loss %.4f running accuracy %.4f",
                at.step, at.epoch + 1, at.loss_sum / at.seen, running.correct / running.counted,
            )  # fmt: skip

    def _checkpoint_or_stop(self, at: _Position, stop: _StopFlag) -> None:
        """Save a checkpoint every ``checkpoint_every`` steps, and stop, after saving one, when any rank is asked to.

        The epoch's end saves its own checkpoint, so its last step saves none unless stopping."""
        last_of_epoch = at.batch == self.steps_per_epoch
        # The flag is read once: a SIGTERM landing while the ranks agree is acted on at the next
        # step, with every rank told; acting on it now would leave the others waiting on a rank
        # that already left (they would see a lost peer, not a stop, and rank 0 no checkpoint).
        requested = stop.requested
        stopping = self.group.any_stopped(requested)
        if stopping or (at.step % self.checkpoint_every == 0 and not last_of_epoch):
            self._checkpoint(at)
        if requested:
            raise Stopped(f"stopped by SIGTERM at step {at.step}; a rerun resumes from it")
        if stopping:
            raise PeerStopped(f"another rank was stopped by SIGTERM at step {at.step}; a rerun resumes from it")

    def _checkpoint(self, at: _Position) -> None:
        # One writer; every rank resumes from what it wrote (RankGroup.from_leader).
        if not self.group.rank.leader or self.checkpoint_path is None:
            return
        trainee = self.trainee
        state = {
            "params": self.params.as_dict(),
            "model": trainee.net.state_dict(),
            "optimizer": trainee.optimizer.state_dict(),
            "scaler": trainee.scaler.state_dict(),
            "rng": torch.get_rng_state(),
            **asdict(at),
        }
        save_checkpoint(self.checkpoint_path, state)
        log.info("checkpoint saved at step %d", at.step)


def export_onnx(net: nn.Module, height: int, width: int, path: Path) -> None:
    """Export ``net`` + softmax as ONNX with a dynamic batch axis."""
    wrapped = WithSoftmax(net).cpu().float().eval()
    example = torch.zeros(1, 1, height, width)
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of torch.export, but
        # it needs no onnxscript and exports this plain CNN exactly.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapped,
            (example,),
            str(path),
            dynamo=False,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=ONNX_OPSET,
        )
