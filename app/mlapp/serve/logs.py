"""The server's log: one JSON object per line, from log records and from the access log alike."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from typing import Any, Final

import orjson


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def configure_logging(level: int) -> None:
    handler = logging.StreamHandler(sys.stdout)
    formatter = JsonFormatter()
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


_ACCESS_LINE: Final = (
    b'{"time":"%s.%03dZ","level":"INFO","logger":"mlapp.access","message":"request",'
    b'"method":%s,"path":%s,"status":%d,"duration_ms":%.3f}\n'
)


class AccessLog:
    """One JSON line per request, in the same shape as the other log lines.

    Written in batches every ``FLUSH_SECONDS`` rather than one write(2) per
    request through ``logging``: that alone cost a third of the throughput.
    Nothing from the request's headers is logged, so credentials never are.
    """

    FLUSH_SECONDS = 0.05

    def __init__(self) -> None:
        self._lines: list[bytes] = []
        self._second = -1
        self._stamp = b""
        self._method = self._path = ""
        self._escaped = (b'""', b'""')
        self._task: asyncio.Task[None] | None = None

    def request(self, method: str, path: str, status: int, elapsed: float) -> None:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)).encode()
        # The line as bytes formatting, not a dict through orjson: half the cost, the same JSON.
        # Method and path go through orjson, which escapes them as JSON strings; the last pair is
        # kept, as consecutive requests mostly share it (one entry: nothing a caller can grow).
        if method != self._method or path != self._path:
            self._method, self._path = method, path
            self._escaped = (orjson.dumps(method), orjson.dumps(path))
        self._lines.append(
            _ACCESS_LINE % (self._stamp, int((now - second) * 1000), *self._escaped, status, elapsed * 1000)
        )

    def flush(self) -> None:
        if self._lines:
            data, self._lines = b"".join(self._lines), []
            stream = sys.stdout
            stream.flush()
            stream.buffer.write(data)
            stream.buffer.flush()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.FLUSH_SECONDS)
            self.flush()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.flush()
