"""Smoke-test client of the image-classifier plug-in: send a picture to a running server's /predict.

Only a model that declares the plug-in has /predict (docs/trainer-contract.md, serving.json); any
model is asked over the Open Inference Protocol (curl, or NVIDIA's tritonclient).

    MLAPP_AUTH_USERNAME=... MLAPP_AUTH_PASSWORD=... python -m mlapp.client URL IMAGE

Prints the predicted label; exits 1 with a message on any failure. Standard
library only, so it runs anywhere Python does.
"""

from __future__ import annotations

import argparse
import base64
import json
import mimetypes
import os
import secrets
import ssl
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from mlapp import contract


class ClientError(Exception):
    pass


def encode_multipart(field: str, filename: str, data: bytes) -> tuple[bytes, str]:
    boundary = "mlapp-" + secrets.token_hex(16)
    ctype = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    head = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="{field}"; filename="{Path(filename).name}"\r\n'
        f"Content-Type: {ctype}\r\n\r\n"
    ).encode()
    body = head + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def predict(
    url: str, image: Path, credentials: tuple[str, str], timeout: float, *, cacert: Path | None = None
) -> dict[str, object]:
    if not url.startswith(("http://", "https://")):
        raise ClientError(f"URL must start with http:// or https://, got {url!r}")
    try:
        data = image.read_bytes()
    except OSError as e:
        raise ClientError(f"cannot read {image}: {e}") from e
    body, ctype = encode_multipart("image", image.name, data)
    token = base64.b64encode("{}:{}".format(*credentials).encode()).decode()
    request = urllib.request.Request(  # noqa: S310 - scheme checked above
        url.rstrip("/") + "/predict",
        data=body,
        method="POST",
        headers={"Content-Type": ctype, "Authorization": f"Basic {token}"},
    )
    try:
        # The server's certificate is verified: against cacert (a stack's caCertificate), else the system's CAs.
        context = ssl.create_default_context(cafile=str(cacert) if cacert else None)
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:  # noqa: S310
            answer = json.loads(response.read())
    except urllib.error.HTTPError as e:
        detail = e.read().decode("utf-8", "replace")[:500]
        raise ClientError(f"{url} answered {e.code} {e.reason}: {detail}") from e
    except (urllib.error.URLError, TimeoutError, OSError) as e:
        raise ClientError(f"cannot reach {url}: {e}") from e
    except ValueError as e:
        raise ClientError(f"{url} did not answer JSON: {e}") from e
    if not isinstance(answer, dict) or "label" not in answer:
        raise ClientError(f"unexpected answer from {url}: {answer!r}")
    return answer


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlapp.client", description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="server base URL, e.g. https://localhost:8080")
    parser.add_argument("image", type=Path, help="a PNG or JPEG picture")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds")
    parser.add_argument("--cacert", type=Path, help="CA certificate (PEM) to verify the server with")
    args = parser.parse_args(argv)
    username = os.environ.get(contract.ENV_AUTH_USERNAME, "")
    password = os.environ.get(contract.ENV_AUTH_PASSWORD, "")
    if not username or not password:
        print(f"mlapp.client: set {contract.ENV_AUTH_USERNAME} and {contract.ENV_AUTH_PASSWORD}", file=sys.stderr)
        return 1
    try:
        answer = predict(args.url, args.image, (username, password), args.timeout, cacert=args.cacert)
    except ClientError as e:
        print(f"mlapp.client: {e}", file=sys.stderr)
        return 1
    probabilities = answer.get("probabilities")
    cls = answer.get("class")
    confidence = (
        probabilities[cls]
        if isinstance(probabilities, list) and isinstance(cls, int) and 0 <= cls < len(probabilities)
        else None
    )
    suffix = f" (class {cls}, p={confidence:.3f})" if isinstance(confidence, float) else ""
    print(f"{answer['label']}{suffix}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
