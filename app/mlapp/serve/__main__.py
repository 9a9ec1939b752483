"""``python -m mlapp.serve``: read the settings, log as JSON, serve under uvicorn until SIGTERM has drained it.

Exit codes: 0 after a drained shutdown, 1 on bad settings or if the server
never started.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from collections.abc import Iterator

from mlapp.serve.app import App
from mlapp.serve.logs import configure_logging
from mlapp.settings import SettingsError, from_env, read_labels

# The logger's name is part of every line's shape (its "logger" field).
log = logging.getLogger("mlapp.serve")


def main() -> int:
    try:
        settings = from_env(os.environ)
        labels = read_labels(settings.labels_file) if settings.labels_file else None
    except SettingsError as e:
        print(f"mlapp.serve: refusing to start: {e}", file=sys.stderr)
        return 1
    configure_logging(settings.log_level_number)

    import uvicorn  # noqa: PLC0415 - keeps `import mlapp.serve` light for tests and tools

    config = uvicorn.Config(
        App(settings, labels),
        host=settings.host,
        port=settings.port,
        lifespan="on",
        access_log=False,  # one JSON line per request comes from App instead
        log_config=None,
        server_header=False,
        timeout_graceful_shutdown=25,  # under Kubernetes' default 30 s grace period
        backlog=2048,
    )
    log.info(
        "serving model %s version %s from %s on %s:%d as user %r",
        settings.model_name,
        settings.model_version,
        settings.model_dir,
        settings.host,
        settings.port,
        settings.username,
    )

    class Server(uvicorn.Server):
        # uvicorn re-raises the signal once drained, so the process would die
        # "killed by SIGTERM" (143). A drained shutdown is the success path.
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            with super().capture_signals():
                yield
                captured: list[int] = getattr(self, "_captured_signals", [])
                captured[:] = [s for s in captured if s != signal.SIGTERM]

    server = Server(config)
    server.run()
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
