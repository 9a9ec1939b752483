"""The model server: ONNX Runtime behind a small hand-written ASGI app, on its own bounded HTTP/1.1 layer.

    python -m mlapp.serve        (settings from MLAPP_* variables, see settings.py)

``http`` speaks HTTP/1.1 (TLS by default) with every resource a client can hold
bounded; ``server`` runs the public and the internal listener and drains on SIGTERM.

Open Inference Protocol v2 REST plus /predict for people; ``routes.table`` lists
every endpoint and which need basic auth. No framework: every request walks one
short path (route, auth, parse, batch, answer), which is what makes one worker
process fast enough. Concurrent inference requests are coalesced into one ONNX
Runtime call (``batching``).
"""

from __future__ import annotations

from mlapp.serve.app import App
from mlapp.serve.batching import Batcher
from mlapp.serve.errors import HTTPError
from mlapp.serve.model import Model, ModelNotThere, load_model
from mlapp.serve.multipart import parse_multipart
from mlapp.serve.routes import Route

__all__ = ["App", "Batcher", "HTTPError", "Model", "ModelNotThere", "Route", "load_model", "parse_multipart"]
