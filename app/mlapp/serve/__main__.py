"""``python -m mlapp.serve``: read the settings, log as JSON, serve until SIGTERM has drained it.

Exit codes: 0 after a drained shutdown, 1 on bad settings or if the server
never started (a port taken, a certificate that does not load).
"""

from __future__ import annotations

import logging
import os
import ssl
import sys
import warnings

import uvloop

from mlapp.serve.app import App
from mlapp.serve.logs import configure_logging
from mlapp.serve.server import serve
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
    # Pillow warns with the upload's own details in the text ("Corrupt EXIF data ... N bytes");
    # each distinct text would be kept in a __warningregistry__ for good and logged once,
    # so a caller could grow both. A damaged picture is answered 400 anyway.
    warnings.filterwarnings("ignore", category=UserWarning, module="PIL")
    log.info(
        "serving model %s version %s from %s as user %r",
        settings.model_name,
        settings.model_version,
        settings.model_dir,
        settings.username,
    )
    try:
        # uvloop is the image's event loop (requirements-server.txt).
        uvloop.run(serve(settings, App(settings, labels)))
    except (OSError, ssl.SSLError) as e:
        log.error("cannot serve: %s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
