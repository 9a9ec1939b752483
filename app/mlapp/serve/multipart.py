"""multipart/form-data bodies (RFC 7578) and Content-Type parameters: bytes in, fields out, no I/O.

The body is already bounded by the server's body limit when it gets here, so
the number of parts is bounded too.
"""

from __future__ import annotations

from typing import Final

# Split on the delimiter, a well-formed body is: a preamble, at least one part, then "--" and the epilogue.
_MIN_CHUNKS: Final = 3


class MultipartError(Exception):
    """The body does not frame as multipart/form-data."""


def parse_params(value: str) -> tuple[str, dict[str, str]]:
    """``"multipart/form-data; boundary=x"`` -> ``("multipart/form-data", {"boundary": "x"})``."""
    head, *rest = value.split(";")
    params: dict[str, str] = {}
    for item in rest:
        key, sep, val = item.strip().partition("=")
        if sep:
            params[key.strip().lower()] = val.strip().strip('"')
    return head.strip().lower(), params


def parse_multipart(body: bytes, content_type: str) -> dict[str, bytes]:
    """Fields of a multipart/form-data body, name -> raw bytes."""
    _, params = parse_params(content_type)
    boundary = params.get("boundary")
    if not boundary:
        raise MultipartError("multipart/form-data without a boundary")
    delimiter = b"--" + boundary.encode("latin-1")
    chunks = body.split(delimiter)
    if len(chunks) < _MIN_CHUNKS or not chunks[-1].startswith(b"--"):
        raise MultipartError("malformed multipart body (no closing boundary)")
    fields: dict[str, bytes] = {}
    for chunk in chunks[1:-1]:
        head_end = chunk.find(b"\r\n\r\n")
        if not chunk.startswith(b"\r\n") or head_end < 0 or not chunk.endswith(b"\r\n"):
            raise MultipartError("malformed multipart body (bad part framing)")
        name = None
        for line in chunk[2:head_end].split(b"\r\n"):
            key, _, value = line.decode("latin-1").partition(":")
            if key.strip().lower() == "content-disposition":
                name = parse_params(value)[1].get("name")
        if name is not None:
            fields[name] = chunk[head_end + 4 : -2]
    return fields
