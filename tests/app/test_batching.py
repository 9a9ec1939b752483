"""The batching decisions as plain functions, and the Batcher around them with a stand-in model."""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from array import array
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from mlapp.serve.batching import Batcher, Flat, fitting, merge, split

Rows = npt.NDArray[np.float32]
ROW = (2,)  # the stand-in model's row: 2 values


def rows(n: int, first: float = 0.0) -> Flat:
    """``n`` rows of 2 values, flat as a request carries them, numbered from ``first`` so each row says
    where it came from."""
    return array("f", [first + i for i in range(n * 2)])


def shaped(x: Flat) -> Rows:
    return np.frombuffer(x, dtype=np.float32).reshape(-1, *ROW)


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
    assert fitting([rows(n) for n in sizes], max_batch, 2) == take


def test_merge_views_a_lone_request_uncopied_in_the_rows_shape() -> None:
    x = rows(3)
    merged = merge([x], ROW)
    assert merged.shape == (3, 2)
    assert merged.dtype == np.float32
    x[0] = 42.0
    assert merged[0, 0] == 42.0, "merge copied a lone request"


def test_merge_then_split_gives_each_request_its_own_rows_as_views() -> None:
    inputs = [rows(1, 0), rows(3, 100), rows(2, 200)]
    merged = merge(inputs, ROW)
    assert merged.shape == (6, 2)
    out = merged + 0.5  # what a model would answer, row for row
    parts = split(out, inputs, 2)
    assert [len(p) for p in parts] == [1, 3, 2]
    for x, part in zip(inputs, parts, strict=True):
        np.testing.assert_array_equal(part, shaped(x) + 0.5)
        assert np.shares_memory(part, out), "split copied a request's rows"


class Doubler:
    """A stand-in model: doubles its batch, records each batch's size, fails while ``broken``."""

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.broken = False

    def run(self, batch: Rows) -> Rows:
        if self.broken:
            raise RuntimeError("the model fell over")
        self.batches.append(len(batch))
        return batch * 2


def test_batcher_coalesces_concurrent_requests_and_answers_each_caller() -> None:
    model = Doubler()

    async def scenario() -> list[Rows]:
        batcher = Batcher(model, max_batch=4, row_shape=ROW)
        try:
            return await asyncio.gather(*(batcher.infer(rows(1 + i % 2, 10 * i)) for i in range(10)))
        finally:
            await batcher.close()

    answers = asyncio.run(scenario())
    for i, answer in enumerate(answers):
        np.testing.assert_array_equal(answer, shaped(rows(1 + i % 2, 10 * i)) * 2, err_msg=f"request {i}")
    assert sum(model.batches) == 15
    assert max(model.batches) <= 4
    assert len(model.batches) < 10, f"nothing was coalesced: {model.batches}"


def test_a_failed_run_fails_its_callers_and_the_batcher_goes_on() -> None:
    model = Doubler()

    async def scenario() -> Rows:
        batcher = Batcher(model, max_batch=4, row_shape=ROW)
        try:
            model.broken = True
            failed = await asyncio.gather(*(batcher.infer(rows(1)) for _ in range(3)), return_exceptions=True)
            assert all(isinstance(f, RuntimeError) for f in failed), failed
            model.broken = False
            return await batcher.infer(rows(2))
        finally:
            await batcher.close()

    np.testing.assert_array_equal(asyncio.run(scenario()), shaped(rows(2)) * 2)


class Recorder:
    """A stand-in model that records the thread each batch ran on, taking ``seconds`` per batch."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.seconds = seconds
        self.threads: list[int] = []
        self.batches: list[int] = []

    def run(self, batch: Rows) -> Rows:
        self.threads.append(threading.get_ident())
        self.batches.append(len(batch))
        if self.seconds:
            time.sleep(self.seconds)  # releases the GIL, as ONNX Runtime's run does
        return batch + 1


def test_requests_queued_in_one_loop_turn_make_one_batch() -> None:
    model = Recorder()

    async def scenario() -> None:
        batcher = Batcher(model, max_batch=64, row_shape=ROW)
        try:
            await asyncio.gather(*(batcher.infer(rows(1, i)) for i in range(5)))
            await batcher.infer(rows(2))
        finally:
            await batcher.close()

    asyncio.run(scenario())
    assert model.batches == [5, 2]


def arrivals(batcher: Batcher, waves: list[int]) -> list[asyncio.Future[Rows]]:
    """Queue ``waves[k]`` requests k loop turns from now, as data_received does: parsed and queued in a callback."""
    loop = asyncio.get_running_loop()
    pending: list[asyncio.Future[Rows]] = []

    def arrive(count: int) -> None:
        pending.extend(asyncio.ensure_future(batcher.infer(rows(1))) for _ in range(count))

    for turns, count in enumerate(waves):
        callback: Any = functools.partial(arrive, count)
        for _ in range(turns):
            callback = functools.partial(loop.call_soon, callback)
        loop.call_soon(callback)
    return pending


async def answered(pending: list[asyncio.Future[Rows]], count: int) -> None:
    while len(pending) < count:
        await asyncio.sleep(0)
    await asyncio.gather(*pending)


def test_with_concurrent_callers_a_batch_takes_in_the_next_turns_requests_and_no_later_ones() -> None:
    """What a poll reads in the turn after a batch opened joins it; a turn later is the next batch."""
    model = Recorder()

    async def scenario() -> None:
        batcher = Batcher(model, max_batch=64, row_shape=ROW, inline_below=1.0)
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
        batcher = Batcher(model, max_batch=64, row_shape=ROW, inline_below=1.0)
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
        batcher = Batcher(model, max_batch=4, row_shape=ROW, inline_below=1.0)
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

    async def scenario() -> tuple[int, int, list[Rows]]:
        batcher = Batcher(model, max_batch=64, row_shape=ROW, inline_below=0.01)
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
    for i, answer in enumerate(answers):
        np.testing.assert_array_equal(answer, shaped(rows(1, i)) + 1)


def test_a_batch_queued_as_the_batcher_closes_fails_its_callers_instead_of_hanging() -> None:
    model = Recorder(seconds=0.02)

    async def scenario() -> tuple[Rows | BaseException]:
        batcher = Batcher(model, max_batch=64, row_shape=ROW, inline_below=0.001)
        await batcher.infer(rows(1))  # measured on the worker, and slow: later batches go there too
        pending = asyncio.ensure_future(batcher.infer(rows(1)))
        await batcher.close()  # before the queued batch's turn comes
        return await asyncio.wait_for(asyncio.gather(pending, return_exceptions=True), timeout=5)

    (outcome,) = asyncio.run(scenario())
    assert isinstance(outcome, RuntimeError), outcome
