"""The model server: ONNX Runtime behind a small hand-written ASGI app, on its own bounded HTTP/1.1 layer.

    python -m mlapp.serve        (settings from MLAPP_* variables, see settings.py)

``http`` speaks HTTP/1.1 (TLS by default) with every resource a client can hold
bounded; ``server`` runs the public and the internal listener and drains on SIGTERM.

The Open Inference Protocol v2 REST API for any ONNX model (``protocol``, ``tensors``), plus the
routes a model's plug-in adds (``mlapp.plugins``); ``routes.table`` lists every endpoint and which
need basic auth. No framework: every request walks one short path (route, auth, parse, batch,
answer), which is what makes one worker process fast enough. Concurrent requests of a batchable
model are coalesced into one ONNX Runtime call (``batching``).

Nothing is imported here, so a module of the package (``errors``, ``multipart``) can be imported
without the whole server.
"""
