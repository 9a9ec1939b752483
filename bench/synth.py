"""Synth time: how long evaluating each stack offline takes, against the floor of importing its SDKs.

    python -m bench.synth [--repeat 7] [--stacks local dev gke]

For each stack, in the same run and each in a fresh interpreter:

- ``synth``: the whole program under the mock harness (``harness.run_stack``),
  as the tests and ``make render`` run it, interpreter start-up included;
- ``floor``: only importing the Pulumi SDK modules that same run loaded
  (found by a first, untimed run), interpreter start-up included.

The median of ``--repeat`` runs of each, interleaved so that a noisy moment
hurts both alike. ``ratio`` = synth / floor; the target is under 1.5.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_RATIO = 1.5

# Runs a stack and prints the SDK modules it loaded (on the untimed discovery run).
_SYNTH = """
import sys, json
sys.path.insert(0, {root!r})
from tools import harness
with harness.offline_kubeconfig():
    harness.run_stack({stack!r})
if {report}:
    print(json.dumps(sorted(m for m in sys.modules if m == "pulumi" or m.startswith(("pulumi.", "pulumi_")))))
"""

_FLOOR = """
import importlib, json, sys
for name in json.loads(sys.argv[1]):
    importlib.import_module(name)
"""


def _timed(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(args, check=True, cwd=ROOT, capture_output=True)
    return time.perf_counter() - start


def sdk_modules(stack: str) -> list[str]:
    code = _SYNTH.format(root=str(ROOT), stack=stack, report=True)
    out = subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, capture_output=True, text=True)
    modules: list[str] = json.loads(out.stdout.strip().splitlines()[-1])
    return modules


def measure(stack: str, repeat: int) -> tuple[float, float, int]:
    """(median floor seconds, median synth seconds, SDK modules imported)."""
    modules = sdk_modules(stack)
    synth_code = _SYNTH.format(root=str(ROOT), stack=stack, report=False)
    floors, synths = [], []
    for _ in range(repeat):
        floors.append(_timed([sys.executable, "-c", _FLOOR, json.dumps(modules)]))
        synths.append(_timed([sys.executable, "-c", synth_code]))
    return statistics.median(floors), statistics.median(synths), len(modules)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.synth", description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--stacks", nargs="+", default=["local", "dev", "gke"])
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {load:.1f} at start; "
        f"{args.repeat} runs each, median seconds, fresh interpreter per run"
    )
    print("| stack | SDK modules | floor (import SDKs) | synth (run under mocks) | ratio |")
    print("| --- | ---: | ---: | ---: | ---: |")
    worst = 0.0
    for stack in args.stacks:
        floor, synth, modules = measure(stack, args.repeat)
        ratio = synth / floor
        worst = max(worst, ratio)
        print(f"| {stack} | {modules} | {floor:.2f} | {synth:.2f} | {ratio:.2f}x |", flush=True)
    verdict = "within" if worst < TARGET_RATIO else "ABOVE"
    print(f"worst ratio {worst:.2f}x: {verdict} the {TARGET_RATIO}x target")
    return 0


if __name__ == "__main__":
    sys.exit(main())
