"""Coalescing concurrent inference requests into one model run, and splitting the result back.

The decisions are plain functions (``fitting``, ``merge``, ``split``) that a
test calls on arrays; ``Batcher`` is the asyncio queue and worker thread
around them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from collections.abc import Sequence, Sized
from typing import Protocol

import numpy as np
import numpy.typing as npt

Rows = npt.NDArray[np.float32]


class Runner(Protocol):
    def run(self, batch: Rows) -> Rows: ...


def fitting(pending: Sequence[Sized], max_batch: int) -> int:
    """How many of the queued requests, taken in order, make the next batch.

    Whole requests only, and never fewer than one: a request with more rows
    than ``max_batch`` runs alone rather than waiting forever. The first request
    that would overflow the batch ends it, so no request is overtaken.
    """
    take = rows = 0
    for x in pending:
        n = len(x)
        if take and rows + n > max_batch:
            break
        rows += n
        take += 1
    return take


def merge(inputs: Sequence[Rows]) -> Rows:
    """One array of all the requests' rows, in order; a lone request is passed through uncopied."""
    return inputs[0] if len(inputs) == 1 else np.concatenate(inputs)


def split(out: Rows, inputs: Sequence[Sized]) -> list[Rows]:
    """The rows of ``out`` belonging to each request of ``inputs``, as views (no copy)."""
    parts: list[Rows] = []
    start = 0
    for x in inputs:
        n = len(x)
        parts.append(out[start : start + n])
        start += n
    return parts


class Batcher:
    """Coalesces concurrent requests into one run of ``runner``.

    No timer: while one batch runs in the worker thread (ORT releases the GIL),
    the event loop keeps parsing requests; whatever queued meanwhile is the
    next batch. A lone request therefore waits for nothing.
    """

    def __init__(self, runner: Runner, max_batch: int) -> None:
        self.runner = runner
        self.max_batch = max_batch
        # Two parallel lists rather than one of pairs, so ``fitting`` and
        # ``split`` read the inputs without building a list per batch.
        self._inputs: list[Rows] = []
        self._futures: list[asyncio.Future[Rows]] = []
        self._wakeup = asyncio.Event()
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="ort")
        self._task = asyncio.get_running_loop().create_task(self._work())

    async def infer(self, x: Rows) -> Rows:
        fut: asyncio.Future[Rows] = asyncio.get_running_loop().create_future()
        self._inputs.append(x)
        self._futures.append(fut)
        self._wakeup.set()
        return await fut

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._inputs:
                take = fitting(self._inputs, self.max_batch)
                inputs, futures = self._inputs[:take], self._futures[:take]
                del self._inputs[:take], self._futures[:take]
                try:
                    out = await loop.run_in_executor(self._executor, self.runner.run, merge(inputs))
                except Exception as e:
                    for fut in futures:
                        if not fut.done():
                            fut.set_exception(e)
                    continue
                for fut, part in zip(futures, split(out, inputs), strict=True):
                    # A caller that went away has cancelled its future.
                    if not fut.done():
                        fut.set_result(part)

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._executor.shutdown(wait=True)
