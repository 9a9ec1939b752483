"""Running requests through the model: one at a time, or, for a batchable model, several callers per run.

A request becomes a ``Job``: its inputs' values flat (an ``array('f')`` for FP32, a numpy array
otherwise), their shapes, and the outputs it asks for. The decisions are plain functions
(``fitting``, ``merge``, ``split``) that a test calls on jobs; ``Batcher`` is the asyncio queue and
worker thread around them.

Callers share a run only when the model was published batchable (``mlapp.publish`` checked it:
every input and output's first dimension is the batch, and no row's answer depends on another's),
and only with callers whose jobs fit together: the same shape after the first dimension for every
input and the same outputs asked (``Job.key``). Each caller then gets exactly its own rows of
every output back. Any other model runs one job per run. If a shared run fails (one caller's
input an embedding cannot index, say), each of its jobs is run again alone, so only the job at
fault is refused.

FP32 values become numpy only here, once per run: each numpy call costs about a microsecond of
dispatch however few values it touches, several times that on a busy event loop (BENCHMARKS.md).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from array import array
from collections.abc import Hashable, Sequence
from typing import Any, Final, NamedTuple, Protocol

import numpy as np
import numpy.typing as npt

from mlapp.serve.tensors import Flat

Outputs = list[npt.NDArray[Any]]


class Job(NamedTuple):
    """One request's run: its inputs (in the model's order) flat, their shapes, the outputs it asks for.

    A NamedTuple, not a frozen dataclass, whose ``__init__`` sets each field through
    ``object.__setattr__``: one is built per request."""

    feeds: tuple[Flat, ...]
    shapes: tuple[tuple[int, ...], ...]
    outputs: tuple[str, ...]  # in the signature's order
    # Jobs with equal keys may share a run: the inputs' shapes after their first dimension, and the
    # outputs asked. None: the job runs alone (a model that is not batchable).
    key: Hashable | None


class Runner(Protocol):
    def run(
        self, feeds: Sequence[Flat], shapes: Sequence[tuple[int, ...]], outputs: Sequence[str]
    ) -> list[npt.NDArray[Any]]: ...


class RowsMismatch(Exception):
    """A shared run's output has not one row per input row: the model is not batchable after all."""


def fitting(pending: Sequence[Job], max_batch: int) -> int:
    """How many of the queued jobs, taken in order, make the next run.

    Whole jobs only, and never fewer than one: a job with more rows than ``max_batch`` runs alone
    rather than waiting forever. The first job that does not fit (too many rows, another key, or a
    job that runs alone) ends the run, so no job is overtaken.
    """
    first = pending[0] if pending else None
    if first is None:
        return 0
    if first.key is None:
        return 1
    key = first.key
    take = rows = 0
    for job in pending:
        n = job.shapes[0][0]
        # The keys are most often one object (the model's tuple of every output): "is" decides then.
        if take and ((job.key is not key and job.key != key) or rows + n > max_batch):
            break
        rows += n
        take += 1
    return take


def merge(jobs: Sequence[Job]) -> tuple[Sequence[Flat], Sequence[tuple[int, ...]]]:
    """Every input's values of all ``jobs``, in order, and the shared shapes; a lone job's are its own."""
    if len(jobs) == 1:
        return jobs[0].feeds, jobs[0].shapes
    rows = sum(job.shapes[0][0] for job in jobs)
    feeds: list[Flat] = []
    shapes: list[tuple[int, ...]] = []
    for index, first in enumerate(jobs[0].feeds):
        parts = [job.feeds[index] for job in jobs]
        if isinstance(first, array) and all(isinstance(p, array) for p in parts):
            merged = array("f")
            for part in parts:
                merged.extend(part)
            feeds.append(merged)
        else:
            feeds.append(
                np.concatenate([p if isinstance(p, np.ndarray) else np.frombuffer(p, np.float32) for p in parts])
            )
        shapes.append((rows, *jobs[0].shapes[index][1:]))
    return feeds, shapes


def split(outputs: Outputs, jobs: Sequence[Job]) -> list[Outputs]:
    """Each job's rows of every output (views, no copy); RowsMismatch if an output's rows are not the inputs'."""
    if len(jobs) == 1:
        return [outputs]
    total = sum(job.shapes[0][0] for job in jobs)
    if any(out.ndim == 0 or len(out) != total for out in outputs):
        raise RowsMismatch(f"a run of {total} rows gave outputs of shapes {[o.shape for o in outputs]}")
    parts: list[Outputs] = []
    start = 0
    if len(outputs) == 1:  # the common case, without a comprehension per job
        (out,) = outputs
        for job in jobs:
            end = start + job.shapes[0][0]
            parts.append([out[start:end]])
            start = end
        return parts
    for job in jobs:
        n = job.shapes[0][0]
        parts.append([out[start : start + n] for out in outputs])
        start += n
    return parts


# A run that takes less than this is run on the event loop's own thread. Handing it to a worker
# thread and back costs more than that: the executor's queue and condition, a futex wake of the
# worker, ``call_soon_threadsafe``'s write to the loop's self-pipe, and the worker then waits for the
# GIL the busy loop holds (up to ``sys.getswitchinterval()``, 5 ms by default). A small model such as
# the digits one stays under it (one row in about 40 us, 64 rows in about 0.6 ms), so its runs skip
# the hop; a model slower than this keeps the loop free: its runs are on the worker thread.
INLINE_SECONDS: Final = 0.001


class Batcher:
    """Runs the queued jobs through ``runner``, several per run where ``fitting`` allows.

    No timer: a run holds every job queued in the loop turn its first one came in, then runs at
    the end of that turn. When callers are concurrent (the last run held more than one job) it
    also holds the next turn's: between the two the loop polls its sockets once, with a zero
    timeout, so the requests whose bytes arrived while the previous run ran join this one. No
    request ever waits for a clock (see ``_flush_soon``).

    Where a run happens follows how long the last one took: under ``inline_below`` seconds on the
    loop's thread, with no thread hop at all; over it (and the first run, before any was measured)
    on the worker thread (ONNX Runtime releases the GIL), while the loop goes on parsing, and
    whatever queued meanwhile is the next run.
    """

    def __init__(self, runner: Runner, max_batch: int, inline_below: float = INLINE_SECONDS) -> None:
        self.runner = runner
        self.max_batch = max_batch
        self.inline_below = inline_below
        # Two parallel lists rather than one of pairs, so ``fitting`` reads the jobs without building
        # a list per run.
        self._jobs: list[Job] = []
        self._futures: list[asyncio.Future[Outputs]] = []
        self._loop = asyncio.get_running_loop()
        self._scheduled = False  # a flush waits at the end of this loop turn
        self._on_worker = False  # a run is on the worker thread
        # The last run took inline_below or longer. True to begin with: the first run is on the
        # worker and its time decides, so a model not yet measured never holds the loop.
        self._slow = True
        # The last run held more than one job: callers are concurrent, and one more poll will
        # likely bring more of them (see _flush_soon).
        self._crowd = False
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="ort")

    @property
    def waiting(self) -> int:
        """Jobs queued for a run that has not started (``mlapp_batch_queue_requests``): a run on the
        worker thread holds its own, no longer counted here. A job whose caller went away still runs,
        and waits until then."""
        return len(self._jobs)

    def infer(self, job: Job) -> asyncio.Future[Outputs]:
        """The outputs ``job`` asks for (its own rows of each), to await.

        The future itself, not a coroutine around it: one frame less to create and to resume for
        every request."""
        fut: asyncio.Future[Outputs] = self._loop.create_future()
        self._jobs.append(job)
        self._futures.append(fut)
        self._flush_soon()
        return fut

    def _flush_soon(self) -> None:
        """Run the next batch at the end of this loop turn or, when callers are concurrent, after one more
        I/O poll and the turn after it.

        A callback queued with call_soon runs in the next turn, after the loop has polled its
        sockets; the poll does not block while callbacks are ready (libuv, which uvloop runs on:
        "If there are any idle handles active, the timeout is 0",
        https://docs.libuv.org/en/v1.x/design.html, and uvloop runs ready callbacks from an idle
        handle, uvloop/loop.pyx ``_call_soon``/``_on_idle``; asyncio's own loop polls with timeout
        0 whenever ``_ready`` is not empty, asyncio/base_events.py ``_run_once``). So a flush
        queued from the next turn runs after everything that poll read has been parsed and queued
        too: the requests that arrived while the last run ran join this one, so concurrent callers
        share fewer, larger runs, for less CPU per request (figures in BENCHMARKS.md, "Serving"). A
        lone caller (the last run held one job) gains nothing from the poll and would wait for it,
        so its run is at the end of this turn.
        """
        if not self._scheduled and not self._on_worker:
            self._scheduled = True
            if self._crowd:
                self._loop.call_soon(self._loop.call_soon, self._flush)
            else:
                self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Start the next run: here if the model is fast, else on the worker thread."""
        self._scheduled = False
        take = fitting(self._jobs, self.max_batch)
        if take == 0:
            return
        self._crowd = take > 1
        jobs, futures = self._jobs[:take], self._futures[:take]
        del self._jobs[:take], self._futures[:take]
        if self._slow:
            try:
                done = self._loop.run_in_executor(self._executor, self._timed, jobs)
            except RuntimeError as e:  # the executor was shut down (close): nothing will run these
                _fail(futures, e)
                return
            self._on_worker = True
            done.add_done_callback(lambda d: self._answer(futures, d))
            return
        _deliver(futures, self._timed(jobs))
        if self._jobs:
            self._flush_soon()  # a batch's worth more: next turn, so the loop reads sockets in between

    def _timed(self, jobs: list[Job]) -> list[Outputs | BaseException]:
        """Each job's outputs (or its error), and whether that took long enough to run elsewhere next time."""
        start = time.perf_counter()
        answers = self._run(jobs)
        self._slow = time.perf_counter() - start >= self.inline_below
        return answers

    def _run(self, jobs: list[Job]) -> list[Outputs | BaseException]:
        first = jobs[0]
        try:
            feeds, shapes = merge(jobs)
            return split(self.runner.run(feeds, shapes, first.outputs), jobs)  # type: ignore[return-value]
        except Exception as e:
            if len(jobs) == 1:
                return [e]
        # A shared run failed: each job alone, so that only the one at fault fails.
        answers: list[Outputs | BaseException] = []
        for job in jobs:
            try:
                answers.append(self.runner.run(job.feeds, job.shapes, job.outputs))
            except Exception as e:
                answers.append(e)
        return answers

    def _answer(
        self, futures: list[asyncio.Future[Outputs]], done: asyncio.Future[list[Outputs | BaseException]]
    ) -> None:
        self._on_worker = False
        if done.cancelled():  # the executor was shut down under it
            for fut in futures:
                fut.cancel()
        elif (e := done.exception()) is not None:
            _fail(futures, e)
        else:
            _deliver(futures, done.result())
        if self._jobs:
            self._flush_soon()

    async def close(self) -> None:
        self._executor.shutdown(wait=True)
        _fail(self._futures, RuntimeError("the server is shutting down"))
        self._jobs.clear()
        self._futures.clear()


def _deliver(futures: list[asyncio.Future[Outputs]], answers: list[Outputs | BaseException]) -> None:
    for fut, answer in zip(futures, answers, strict=True):
        # A caller that went away has cancelled its future.
        if fut.done():
            continue
        if isinstance(answer, BaseException):
            fut.set_exception(answer)
        else:
            fut.set_result(answer)


def _fail(futures: list[asyncio.Future[Outputs]], error: BaseException) -> None:
    for fut in futures:
        if not fut.done():
            fut.set_exception(error)
