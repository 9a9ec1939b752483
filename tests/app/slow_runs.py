"""A server whose ONNX Runtime runs take a set time, and fail on a marked input: a stand-in for a large model.

``MLAPP_TEST_RUN_SECONDS`` is how long every run of a session sleeps before it runs (the sleep
releases the GIL, as ONNX Runtime's run does), so a test can see requests running and queued;
an input holding ``FAIL_VALUE`` makes the run raise, as ONNX Runtime raises on input it cannot
run (an index past an embedding's end). Run as a script, it patches ``onnxruntime`` and then
runs a module:

    python tests/app/slow_runs.py -m mlapp.serve
"""

from __future__ import annotations

import os
import runpy
import sys
import time
from typing import Any

import numpy as np
import onnxruntime as ort

SECONDS_VARIABLE = "MLAPP_TEST_RUN_SECONDS"
FAIL_VALUE = -7.0


def slow_and_failing_runs(seconds: float) -> None:
    """Make every ``InferenceSession.run`` of this process sleep ``seconds`` first, and raise on ``FAIL_VALUE``."""
    original = ort.InferenceSession.run

    def run(self: Any, output_names: Any, input_feed: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        time.sleep(seconds)
        if any(np.any(np.asarray(v) == FAIL_VALUE) for v in input_feed.values()):
            raise RuntimeError(f"an input holds {FAIL_VALUE}, which this stand-in model cannot run")
        return original(self, output_names, input_feed, *args, **kwargs)

    ort.InferenceSession.run = run


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[0] != "-m":
        raise SystemExit("usage: slow_runs.py -m MODULE [ARGS...]")
    slow_and_failing_runs(float(os.environ.get(SECONDS_VARIABLE, "0")))
    module = argv[1]
    sys.argv = [module, *argv[2:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
