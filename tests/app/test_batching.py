"""The batching decisions as plain functions, and the Batcher around them with stand-in models."""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from array import array
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from mlapp.serve.batching import Batcher, Job, RowsMismatch, fitting, merge, split
from mlapp.serve.tensors import Flat

Rows = npt.NDArray[np.float32]
Outputs = list[npt.NDArray[Any]]
ROW = (2,)  # the stand-in model's row: 2 values
OUT = ("y",)


def rows(n: int, first: float = 0.0, key: object = OUT) -> Job:
    """A job of ``n`` rows of 2 FP32 values, flat as a request carries them, numbered from ``first`` so each
    row says where it came from. ``key`` None: a job that runs alone (a model that is not batchable)."""
    return Job((array("f", [first + i for i in range(n * 2)]),), ((n, *ROW),), OUT, key)


def shaped(job: Job) -> Rows:
    return np.frombuffer(job.feeds[0], dtype=np.float32).reshape(job.shapes[0])


@pytest.mark.parametrize(
    ("sizes", "max_batch", "take"),
    [
        ([], 4, 0),
        ([1, 1, 1], 2, 2),
        ([2, 2], 4, 2),  # exactly full
        ([1, 2, 1], 4, 3),
        ([9], 4, 1),  # over the limit on its own: runs alone rather than never
        ([1, 9, 1], 4, 1),  # the overflowing request ends the batch; the one behind it does not overtake
        ([4, 1], 4, 1),
    ],
)
def test_fitting_takes_whole_requests_in_order_up_to_max_batch(sizes: list[int], max_batch: int, take: int) -> None:
    assert fitting([rows(n) for n in sizes], max_batch) == take


def test_fitting_never_puts_jobs_of_different_keys_in_one_run_and_keeps_their_order() -> None:
    """Other tail shapes or other outputs: the first job that differs ends the run, and is not overtaken."""
    jobs = [rows(1), rows(1), rows(1, key=("other",)), rows(1)]
    assert fitting(jobs, 64) == 2
    assert fitting(jobs[2:], 64) == 1


def test_a_model_that_is_not_batchable_runs_every_job_alone() -> None:
    assert fitting([rows(1, key=None), rows(1, key=None), rows(1, key=None)], 64) == 1


def test_merge_passes_a_lone_job_uncopied() -> None:
    job = rows(3)
    feeds, shapes = merge([job])
    assert list(shapes) == [(3, 2)]
    assert feeds[0] is job.feeds[0], "merge copied a lone job"


def test_merge_then_split_gives_each_job_its_own_rows_of_every_output_as_views() -> None:
    jobs = [rows(1, 0), rows(3, 100), rows(2, 200)]
    feeds, shapes = merge(jobs)
    assert shapes == [(6, 2)]
    merged = np.frombuffer(feeds[0], dtype=np.float32).reshape(shapes[0])
    outputs = [merged + 0.5, merged.sum(axis=1)]  # what a model with two outputs would answer, row for row
    parts = split(outputs, jobs)
    assert [[len(o) for o in part] for part in parts] == [[1, 1], [3, 3], [2, 2]]
    for job, (plus, total) in zip(jobs, parts, strict=True):
        np.testing.assert_array_equal(plus, shaped(job) + 0.5)
        np.testing.assert_array_equal(total, shaped(job).sum(axis=1))
        assert np.shares_memory(plus, outputs[0]), "split copied a job's rows"


def test_merge_joins_numpy_inputs_of_any_datatype_and_several_inputs() -> None:
    def job(ids: list[int], mask: list[bool]) -> Job:
        n = len(ids)
        return Job((np.array(ids, dtype=np.int64), np.array(mask)), ((n, 1), (n, 1)), OUT, OUT)

    feeds, shapes = merge([job([1, 2], [True, False]), job([3], [True])])
    assert shapes == [(3, 1), (3, 1)]
    np.testing.assert_array_equal(feeds[0], [1, 2, 3])
    np.testing.assert_array_equal(feeds[1], [True, False, True])
    assert isinstance(feeds[0], np.ndarray)
    assert feeds[0].dtype == np.int64


def test_split_refuses_outputs_whose_rows_are_not_the_inputs() -> None:
    jobs = [rows(1), rows(2)]
    with pytest.raises(RowsMismatch):
        split([np.zeros(4, dtype=np.float32)], jobs)  # 4 rows for 3
    with pytest.raises(RowsMismatch):
        split([np.float32(1.0) * np.ones(())], jobs)  # a scalar: no rows at all


class Doubler:
    """A stand-in model: doubles its input, records each run's rows, fails while ``broken``, and refuses any
    run holding a row that starts with ``poison``."""

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.broken = False
        self.poison: float | None = None

    def run(self, feeds: Sequence[Flat], shapes: Sequence[tuple[int, ...]], outputs: Sequence[str]) -> Outputs:
        if self.broken:
            raise RuntimeError("the model fell over")
        x = np.frombuffer(feeds[0], dtype=np.float32).reshape(shapes[0])
        if self.poison is not None and (x[:, 0] == self.poison).any():
            raise ValueError("an index past the embedding's end")
        self.batches.append(len(x))
        return [x * 2]


def test_batcher_coalesces_concurrent_requests_and_answers_each_caller() -> None:
    model = Doubler()

    async def scenario() -> list[Outputs]:
        batcher = Batcher(model, max_batch=4)
        try:
            return await asyncio.gather(*(batcher.infer(rows(1 + i % 2, 10 * i)) for i in range(10)))
        finally:
            await batcher.close()

    answers = asyncio.run(scenario())
    for i, (answer,) in enumerate(answers):
        np.testing.assert_array_equal(answer, shaped(rows(1 + i % 2, 10 * i)) * 2, err_msg=f"request {i}")
    assert sum(model.batches) == 15
    assert max(model.batches) <= 4
    assert len(model.batches) < 10, f"nothing was coalesced: {model.batches}"


def test_a_failed_run_fails_its_callers_and_the_batcher_goes_on() -> None:
    model = Doubler()

    async def scenario() -> Outputs:
        batcher = Batcher(model, max_batch=4)
        try:
            model.broken = True
            failed = await asyncio.gather(*(batcher.infer(rows(1)) for _ in range(3)), return_exceptions=True)
            assert all(isinstance(f, RuntimeError) for f in failed), failed
            model.broken = False
            return await batcher.infer(rows(2))
        finally:
            await batcher.close()

    np.testing.assert_array_equal(asyncio.run(scenario())[0], shaped(rows(2)) * 2)


def test_one_callers_bad_input_in_a_shared_run_fails_that_caller_alone() -> None:
    """The shared run fails; each job is run again alone, and only the one at fault is refused."""
    model = Doubler()
    model.poison = 300.0

    async def scenario() -> list[Outputs | BaseException]:
        batcher = Batcher(model, max_batch=64, inline_below=1.0)
        try:
            await batcher.infer(rows(1))  # measured: the rest run on the loop, one batch per turn
            jobs = [rows(1, 100), rows(2, 200), rows(1, 300), rows(1, 400)]
            return await asyncio.gather(*(batcher.infer(j) for j in jobs), return_exceptions=True)
        finally:
            await batcher.close()

    answers = asyncio.run(scenario())
    assert isinstance(answers[2], ValueError), answers[2]
    for index, first in ((0, 100), (1, 200), (3, 400)):
        answer = answers[index]
        assert not isinstance(answer, BaseException), answer
        np.testing.assert_array_equal(answer[0], shaped(rows(len(answer[0]), first)) * 2)


class RowDropper:
    """A stand-in for a model published batchable that is not: one output row whatever the rows in."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    def run(self, feeds: Sequence[Flat], shapes: Sequence[tuple[int, ...]], outputs: Sequence[str]) -> Outputs:
        self.batches.append(shapes[0][0])
        x = np.frombuffer(feeds[0], dtype=np.float32).reshape(shapes[0])
        return [x.sum(axis=0, keepdims=True)]


def test_a_shared_run_whose_outputs_lose_the_rows_is_rerun_job_by_job() -> None:
    model = RowDropper()

    async def scenario() -> list[Outputs]:
        batcher = Batcher(model, max_batch=64, inline_below=1.0)
        try:
            await batcher.infer(rows(1))
            return list(await asyncio.gather(batcher.infer(rows(1, 0)), batcher.infer(rows(1, 10))))
        finally:
            await batcher.close()

    first, second = asyncio.run(scenario())
    np.testing.assert_array_equal(first[0], [[0.0, 1.0]])
    np.testing.assert_array_equal(second[0], [[10.0, 11.0]])
    assert model.batches == [1, 2, 1, 1]


class Recorder:
    """A stand-in model that records the thread each batch ran on, taking ``seconds`` per batch."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.seconds = seconds
        self.threads: list[int] = []
        self.batches: list[int] = []

    def run(self, feeds: Sequence[Flat], shapes: Sequence[tuple[int, ...]], outputs: Sequence[str]) -> Outputs:
        self.threads.append(threading.get_ident())
        self.batches.append(shapes[0][0])
        if self.seconds:
            time.sleep(self.seconds)  # releases the GIL, as ONNX Runtime's run does
        return [np.frombuffer(feeds[0], dtype=np.float32).reshape(shapes[0]) + 1]


def test_requests_queued_in_one_loop_turn_make_one_batch() -> None:
    model = Recorder()

    async def scenario() -> None:
        batcher = Batcher(model, max_batch=64)
        try:
            await asyncio.gather(*(batcher.infer(rows(1, i)) for i in range(5)))
            await batcher.infer(rows(2))
        finally:
            await batcher.close()

    asyncio.run(scenario())
    assert model.batches == [5, 2]


def arrivals(batcher: Batcher, waves: list[int]) -> list[asyncio.Future[Outputs]]:
    """Queue ``waves[k]`` requests k loop turns from now, as data_received does: parsed and queued in a callback."""
    loop = asyncio.get_running_loop()
    pending: list[asyncio.Future[Outputs]] = []

    def arrive(count: int) -> None:
        pending.extend(asyncio.ensure_future(batcher.infer(rows(1))) for _ in range(count))

    for turns, count in enumerate(waves):
        callback: Any = functools.partial(arrive, count)
        for _ in range(turns):
            callback = functools.partial(loop.call_soon, callback)
        loop.call_soon(callback)
    return pending


async def answered(pending: list[asyncio.Future[Outputs]], count: int) -> None:
    while len(pending) < count:
        await asyncio.sleep(0)
    await asyncio.gather(*pending)


def test_with_concurrent_callers_a_batch_takes_in_the_next_turns_requests_and_no_later_ones() -> None:
    """What a poll reads in the turn after a batch opened joins it; a turn later is the next batch."""
    model = Recorder()

    async def scenario() -> None:
        batcher = Batcher(model, max_batch=64, inline_below=1.0)
        try:
            await batcher.infer(rows(1))  # the first batch, measured (fast) on the worker
            await answered(arrivals(batcher, [2]), 2)  # two at once: callers are concurrent
            await answered(arrivals(batcher, [2, 3, 4]), 9)
        finally:
            await batcher.close()

    asyncio.run(scenario())
    assert model.batches == [1, 2, 5, 4]


def test_a_lone_callers_batch_runs_at_the_end_of_its_turn() -> None:
    model = Recorder()

    async def scenario() -> None:
        batcher = Batcher(model, max_batch=64, inline_below=1.0)
        try:
            await batcher.infer(rows(1))
            await batcher.infer(rows(1))  # a lone caller's batch: no poll waited for
            await answered(arrivals(batcher, [1, 1]), 2)
        finally:
            await batcher.close()

    asyncio.run(scenario())
    assert model.batches == [1, 1, 1, 1]


def test_a_fast_model_runs_on_the_loops_thread_with_no_hop() -> None:
    model = Recorder()

    async def scenario() -> int:
        batcher = Batcher(model, max_batch=4, inline_below=1.0)
        try:
            await batcher.infer(rows(1))
            await asyncio.gather(*(batcher.infer(rows(1)) for _ in range(6)))
        finally:
            await batcher.close()
        return threading.get_ident()

    loop_thread = asyncio.run(scenario())
    # The first batch is measured on the worker; found fast, the rest run on the loop's thread.
    assert model.threads[0] != loop_thread
    assert model.threads[1:] == [loop_thread, loop_thread], model.batches


def test_a_slow_model_runs_on_the_worker_and_the_loop_keeps_turning() -> None:
    model = Recorder(seconds=0.05)

    async def scenario() -> tuple[int, int, list[Outputs]]:
        batcher = Batcher(model, max_batch=64, inline_below=0.01)
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.001)

        tick = asyncio.create_task(ticker())
        try:
            await batcher.infer(rows(1))  # the first batch, measured on the worker: slow
            before = ticks
            answers = await asyncio.gather(*(batcher.infer(rows(1, i)) for i in range(3)))
            return threading.get_ident(), ticks - before, answers
        finally:
            tick.cancel()
            await batcher.close()

    loop_thread, ticks, answers = asyncio.run(scenario())
    assert loop_thread not in model.threads, "a slow model's batch blocked the event loop"
    assert model.batches == [1, 3]
    assert ticks >= 10, f"the loop turned only {ticks} times during a 50 ms batch on the worker"
    for i, (answer,) in enumerate(answers):
        np.testing.assert_array_equal(answer, shaped(rows(1, i)) + 1)


def test_a_batch_queued_as_the_batcher_closes_fails_its_callers_instead_of_hanging() -> None:
    model = Recorder(seconds=0.02)

    async def scenario() -> tuple[Outputs | BaseException]:
        batcher = Batcher(model, max_batch=64, inline_below=0.001)
        await batcher.infer(rows(1))  # measured on the worker, and slow: later batches go there too
        pending = asyncio.ensure_future(batcher.infer(rows(1)))
        await batcher.close()  # before the queued batch's turn comes
        return await asyncio.wait_for(asyncio.gather(pending, return_exceptions=True), timeout=5)

    (outcome,) = asyncio.run(scenario())
    assert isinstance(outcome, RuntimeError), outcome
