"""Time to the accuracy gate: the trainer alone vs. data-parallel under torchrun, on this machine.

    python -m bench.distributed [--repeat 3] [--procs 1 2] [--epochs 10] [--device cpu]

Each run trains the digits model with the shipped stacks' training parameters (batch 32, learning
rate 0.003, seed 42, gate 0.95: Pulumi.yaml's defaults) into a fresh output directory, in a fresh process:
``python -m digits.train`` (examples/digits) for one process, ``torchrun --nproc-per-node N -m digits.train``
for N. The
global batch is the same in both (each of N ranks takes 1/N of it), so every run takes the same steps.

Reported per process count, the median of ``--repeat`` runs (interleaved, so a noisy moment hurts
all alike):

- ``gate``: seconds from start until rank 0's first end-of-epoch held-out accuracy at or above the
  gate (the trainer logs it each epoch), start-up included;
- ``total``: seconds until the process exits, the model's outputs written;
- ``efficiency`` = gate(1) / (N x gate(N)): 1.0 is perfect scaling, 0.5 means N processes take as
  long as one.

``--device cuda`` runs one process per GPU (torchrun's ``--nproc-per-node``), where there are GPUs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TORCHRUN = Path(sys.executable).parent / "torchrun"
GATE = 0.95
_EPOCH = re.compile(r"^(\S+ \S+) INFO digits\.train(?: \[rank 0/\d+\])? Accuracy at step (\d+): ([0-9.]+)", re.M)
# Rank 0's line (the others' say "rank 0's to judge" instead of a number).
_LOOP = re.compile(r"held-out accuracy [0-9.]+ after (\d+) steps \(([0-9.]+)s this run\)")


def trainer_args(output: Path, epochs: int, device: str) -> list[str]:
    return [
        "--output-dir", str(output), "--model-name", "digits", "--model-version", "bench",
        "--epochs", str(epochs), "--batch-size", "32", "--learning-rate", "0.003", "--seed", "42",
        "--gate", f"accuracy>={GATE}", "--device", device,
    ]  # fmt: skip


@dataclass(frozen=True)
class Run:
    gate: float  # seconds from start to the first epoch at or above the gate
    gate_step: int  # the step that epoch ended at
    total: float  # seconds until the process exited
    loop: float  # seconds of rank 0's training loop, as the trainer logs it
    steps: int
    accuracy: float  # the final held-out accuracy


def run(procs: int, epochs: int, device: str) -> Run:
    """One run, timed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLAPP_")}
    env["PYTHONPATH"] = str(ROOT / "examples" / "digits")
    env["OMP_NUM_THREADS"] = "1"  # one intra-op thread per process: the processes share the cores
    with tempfile.TemporaryDirectory() as tmp:
        args = trainer_args(Path(tmp), epochs, device)
        if procs == 1:
            command = [sys.executable, "-m", "digits.train", *args]
        else:
            command = [str(TORCHRUN), "--nproc-per-node", str(procs), "-m", "digits.train", *args]
        started_wall = dt.datetime.now()
        started = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False, timeout=1800)
        total = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{procs} process(es) exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    gate, gate_step = None, 0
    accuracy = 0.0
    for stamp, step, value in _EPOCH.findall(done.stdout):
        accuracy = float(value)
        if gate is None and accuracy >= GATE:
            at = dt.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f")
            gate, gate_step = (at - started_wall).total_seconds(), int(step)
    if gate is None:
        raise SystemExit(f"{procs} process(es) never reached the gate {GATE}:\n{done.stdout}")
    loop = _LOOP.search(done.stdout)
    if loop is None:
        raise SystemExit(f"no training-loop time in the log:\n{done.stdout}")
    return Run(gate, gate_step, total, float(loop.group(2)), int(loop.group(1)), accuracy)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = parser.parse_args(argv)
    results: dict[int, list[Run]] = {n: [] for n in args.procs}
    for _ in range(args.repeat):
        for n in args.procs:
            results[n].append(run(n, args.epochs, args.device))
    print(f"cores: {os.cpu_count()}, device: {args.device}, epochs: {args.epochs}, gate: {GATE}, runs: {args.repeat}")
    print(
        "| processes | to the gate (s) | gate reached at step | in all (s) | training loop (s) | ms per step "
        "| final accuracy | efficiency to the gate | efficiency of the loop |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")

    def median(n: int, field: str) -> float:
        return statistics.median(float(getattr(r, field)) for r in results[n])

    first = args.procs[0]
    for n in args.procs:
        gate, loop = median(n, "gate"), median(n, "loop")
        print(
            f"| {n} | {gate:.2f} | {median(n, 'gate_step'):.0f} | {median(n, 'total'):.2f} | {loop:.2f} "
            f"| {1000 * loop / median(n, 'steps'):.1f} | {median(n, 'accuracy'):.4f} "
            f"| {first * median(first, 'gate') / (n * gate):.2f} | {first * median(first, 'loop') / (n * loop):.2f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
