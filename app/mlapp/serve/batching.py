"""Coalescing concurrent inference requests into one model run, and splitting the result back.

The decisions are plain functions (``fitting``, ``merge``, ``split``) that a
test calls on arrays; ``Batcher`` is the asyncio queue and worker thread
around them.

A request's rows arrive as one flat ``array('f')`` (what ``protocol`` builds
from the JSON numbers or the raw bytes, with no numpy call per request) and
become numpy only here, once per batch: each numpy call costs about a
microsecond of dispatch however few values it touches, several times that on
a busy event loop (issue 16 measured 10 us per request for the three calls
a request used to make).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import time
from array import array
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final, Protocol, TypeAlias

import numpy as np
import numpy.typing as npt

Rows = npt.NDArray[np.float32]
# A request's input: its rows' FP32 values one after another, row-major, in an array('f').
# (array is generic to type checkers only: subscripting it at run time needs Python 3.12.)
if TYPE_CHECKING:
    Flat: TypeAlias = array[float]
else:
    Flat = array


class Runner(Protocol):
    def run(self, batch: Rows) -> Rows: ...


def fitting(pending: Sequence[Flat], max_batch: int, row_size: int) -> int:
    """How many of the queued requests, taken in order, make the next batch (``row_size`` values a row).

    Whole requests only, and never fewer than one: a request with more rows
    than ``max_batch`` runs alone rather than waiting forever. The first request
    that would overflow the batch ends it, so no request is overtaken.
    """
    take = rows = 0
    for x in pending:
        n = len(x) // row_size
        if take and rows + n > max_batch:
            break
        rows += n
        take += 1
    return take


def merge(inputs: Sequence[Flat], row_shape: tuple[int, ...]) -> Rows:
    """One array of all the requests' rows, in order, shaped ``(rows, *row_shape)``; a lone request is
    viewed, not copied."""
    if len(inputs) == 1:
        flat = inputs[0]
    else:
        flat = array("f")
        for x in inputs:
            flat.extend(x)
    return np.frombuffer(flat, dtype=np.float32).reshape(-1, *row_shape)


def split(out: Rows, inputs: Sequence[Flat], row_size: int) -> list[Rows]:
    """The rows of ``out`` belonging to each request of ``inputs``, as views (no copy)."""
    parts: list[Rows] = []
    start = 0
    for x in inputs:
        n = len(x) // row_size
        parts.append(out[start : start + n])
        start += n
    return parts


# A batch that runs for less than this is run on the event loop's own thread. Handing it to a worker
# thread and back costs more than that: the executor's queue and condition, a futex wake of the
# worker, ``call_soon_threadsafe``'s write to the loop's self-pipe, and the worker then waits for the
# GIL the busy loop holds (up to ``sys.getswitchinterval()``, 5 ms by default). Measured on the
# digits model (BENCHMARKS.md, issue 16): one row runs in about 40 us, 64 rows in about 0.6 ms.
# A model slower than this keeps the loop free: its batches run on the worker thread.
INLINE_SECONDS: Final = 0.001


class Batcher:
    """Coalesces concurrent requests into one run of ``runner``.

    No timer: a batch holds every request queued in the loop turn its first
    one came in, then runs at the end of that turn. When callers are concurrent
    (the last batch held more than one request) it also holds the next turn's:
    between the two the loop polls its sockets once, with a zero timeout, so the
    requests whose bytes arrived while the previous batch ran join this one. No
    request ever waits for a clock (see ``_flush_soon``).

    Where a batch runs follows how long the last one took: under
    ``inline_below`` seconds on the loop's thread, with no thread hop at all;
    over it (and the first batch, before any was measured) on the worker
    thread (ONNX Runtime releases the GIL), while the loop goes on parsing,
    and whatever queued meanwhile is the next batch.
    """

    def __init__(
        self, runner: Runner, max_batch: int, row_shape: tuple[int, ...], inline_below: float = INLINE_SECONDS
    ) -> None:
        self.runner = runner
        self.max_batch = max_batch
        self.row_shape = row_shape
        self.row_size = math.prod(row_shape)
        self.inline_below = inline_below
        # Two parallel lists rather than one of pairs, so ``fitting`` and
        # ``split`` read the inputs without building a list per batch.
        self._inputs: list[Flat] = []
        self._futures: list[asyncio.Future[Rows]] = []
        self._loop = asyncio.get_running_loop()
        self._scheduled = False  # a flush waits at the end of this loop turn
        self._on_worker = False  # a batch is running on the worker thread
        # The last batch took inline_below or longer. True to begin with: the first batch runs on the
        # worker and its time decides, so a model not yet measured never holds the loop.
        self._slow = True
        # The last batch held more than one request: callers are concurrent, and one more poll will
        # likely bring more of them (see _flush_soon).
        self._crowd = False
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="ort")

    def infer(self, x: Flat) -> asyncio.Future[Rows]:
        """The model's output rows for ``x`` (a whole number of rows of ``row_shape``), to await.

        The future itself, not a coroutine around it: one frame less to create and to
        resume for every request."""
        fut: asyncio.Future[Rows] = self._loop.create_future()
        self._inputs.append(x)
        self._futures.append(fut)
        self._flush_soon()
        return fut

    def _flush_soon(self) -> None:
        """Run the next batch at the end of this loop turn or, when callers are concurrent, after one more
        I/O poll and the turn after it.

        A callback queued with call_soon runs in the next turn, after the loop has
        polled its sockets; the poll does not block while callbacks are ready
        (libuv, which uvloop runs on: "If there are any idle handles active, the
        timeout is 0", https://docs.libuv.org/en/v1.x/design.html, and uvloop runs
        ready callbacks from an idle handle, uvloop/loop.pyx ``_call_soon``/
        ``_on_idle``; asyncio's own loop polls with timeout 0 whenever ``_ready`` is
        not empty, asyncio/base_events.py ``_run_once``). So a flush queued from the
        next turn runs after everything that poll read has been parsed and queued
        too. At 16 connections the batch grew from 6.9 to 14.9 requests and the
        server's CPU per request fell 12 % (issue 16). A lone caller (the last batch
        held one request) gains nothing from the poll and would wait for it, so its
        batch runs at the end of this turn, as before.
        """
        if not self._scheduled and not self._on_worker:
            self._scheduled = True
            if self._crowd:
                self._loop.call_soon(self._loop.call_soon, self._flush)
            else:
                self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Run the next batch: here if the model is fast, else on the worker thread."""
        self._scheduled = False
        take = fitting(self._inputs, self.max_batch, self.row_size)
        if take == 0:
            return
        self._crowd = take > 1
        inputs, futures = self._inputs[:take], self._futures[:take]
        del self._inputs[:take], self._futures[:take]
        batch = merge(inputs, self.row_shape)
        if self._slow:
            try:
                done = self._loop.run_in_executor(self._executor, self._timed, batch)
            except RuntimeError as e:  # the executor was shut down (close): nothing will run these
                _fail(futures, e)
                return
            self._on_worker = True
            done.add_done_callback(lambda d: self._answer(inputs, futures, d))
            return
        try:
            out = self._timed(batch)
        except Exception as e:
            _fail(futures, e)
        else:
            _deliver(futures, split(out, inputs, self.row_size))
        if self._inputs:
            self._flush_soon()  # a batch's worth more: next turn, so the loop reads sockets in between

    def _timed(self, batch: Rows) -> Rows:
        start = time.perf_counter()
        out = self.runner.run(batch)
        self._slow = time.perf_counter() - start >= self.inline_below
        return out

    def _answer(self, inputs: list[Flat], futures: list[asyncio.Future[Rows]], done: asyncio.Future[Rows]) -> None:
        self._on_worker = False
        if done.cancelled():  # the executor was shut down under it
            for fut in futures:
                fut.cancel()
        elif (e := done.exception()) is not None:
            _fail(futures, e)
        else:
            _deliver(futures, split(done.result(), inputs, self.row_size))
        if self._inputs:
            self._flush_soon()

    async def close(self) -> None:
        self._executor.shutdown(wait=True)
        _fail(self._futures, RuntimeError("the server is shutting down"))


def _deliver(futures: list[asyncio.Future[Rows]], parts: list[Rows]) -> None:
    for fut, part in zip(futures, parts, strict=True):
        # A caller that went away has cancelled its future.
        if not fut.done():
            fut.set_result(part)


def _fail(futures: list[asyncio.Future[Rows]], error: BaseException) -> None:
    for fut in futures:
        if not fut.done():
            fut.set_exception(error)
