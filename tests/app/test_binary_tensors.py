"""The binary tensor data extension, on the real server: raw FP32 inputs after a JSON header, raw outputs on request.

As Triton defines it (docs/protocol/extension_binary_data.md) and tritonclient sends by default
(``InferInput.set_data_from_numpy``; with no outputs named, ``binary_data_output: true``), which got
"400 malformed JSON: str is not valid UTF-8" before. Every answer is compared with a direct ONNX
Runtime run; every bound (the header length, each declared size, the bytes that arrive) is broken.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import pytest

from .helpers import MODEL_NAME, PASSWORD, USER, Direct, HeldOut, Server

AUTH = (USER, PASSWORD)
HEADER = "Inference-Header-Content-Length"


def infer_url(server: Server) -> str:
    return f"{server.url}/v2/models/{MODEL_NAME}/infer"


def binary_request(
    images: npt.NDArray[np.float32], declared: int | None = None, extra: bytes = b"", **request: Any
) -> tuple[bytes, dict[str, str]]:
    """A request as tritonclient builds it: the JSON header, then the input's raw little-endian bytes."""
    raw = images.astype("<f4").tobytes()
    tensor = {
        "name": "input",
        "shape": list(images.shape),
        "datatype": "FP32",
        "parameters": {"binary_data_size": len(raw) if declared is None else declared},
    }
    head = json.dumps({"inputs": [tensor], **request}).encode()
    return head + raw + extra, {HEADER: str(len(head))}


def split_answer(response: httpx.Response) -> tuple[dict[str, Any], bytes]:
    length = int(response.headers[HEADER])
    return json.loads(response.content[:length]), response.content[length:]


def test_the_server_lists_the_binary_extension(server: Server) -> None:
    response = httpx.get(f"{server.url}/v2", auth=AUTH)
    assert response.status_code == 200
    assert response.json()["extensions"] == ["binary_tensor_data"]


def test_binary_inputs_with_a_json_answer(server: Server, held_out: HeldOut, direct: Direct) -> None:
    images = held_out.images[:7]
    body, headers = binary_request(images, outputs=[{"name": "probabilities", "parameters": {"binary_data": False}}])
    response = httpx.post(infer_url(server), auth=AUTH, content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert HEADER not in response.headers
    (out,) = response.json()["outputs"]
    probs = np.asarray(out["data"], dtype=np.float32).reshape(out["shape"])
    np.testing.assert_allclose(probs, direct(images), atol=1e-5)


@pytest.mark.parametrize(
    "ask",
    [
        {"parameters": {"binary_data_output": True}},  # tritonclient's default when no output is named
        {"outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}]},
    ],
)
def test_binary_inputs_and_outputs(server: Server, held_out: HeldOut, direct: Direct, ask: dict[str, Any]) -> None:
    images = held_out.images[:5]
    body, headers = binary_request(images, id="b-1", **ask)
    response = httpx.post(infer_url(server), auth=AUTH, content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    answer, raw = split_answer(response)
    (out,) = answer["outputs"]
    assert answer["id"] == "b-1"
    assert out["parameters"] == {"binary_data_size": 5 * 10 * 4}
    assert "data" not in out
    probs = np.frombuffer(raw, dtype="<f4").reshape(out["shape"])
    np.testing.assert_allclose(probs, direct(images), atol=1e-5)


def test_json_inputs_with_a_binary_answer(server: Server, held_out: HeldOut, direct: Direct) -> None:
    images = held_out.images[:3]
    request = {
        "inputs": [{"name": "input", "shape": [3, 1, 8, 8], "datatype": "FP32", "data": images.ravel().tolist()}],
        "parameters": {"binary_data_output": True},
    }
    response = httpx.post(infer_url(server), auth=AUTH, json=request)
    assert response.status_code == 200, response.text
    answer, raw = split_answer(response)
    np.testing.assert_allclose(
        np.frombuffer(raw, dtype="<f4").reshape(answer["outputs"][0]["shape"]), direct(images), atol=1e-5
    )


def test_json_stays_the_default_answer(server: Server, held_out: HeldOut) -> None:
    body, headers = binary_request(held_out.images[:2])
    response = httpx.post(infer_url(server), auth=AUTH, content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert len(response.json()["outputs"][0]["data"]) == 20


def test_raw_bytes_without_the_header_get_a_message_that_says_what_is_missing(
    server: Server, held_out: HeldOut
) -> None:
    """The bug: tritonclient's default request answered "malformed JSON: str is not valid UTF-8"."""
    body, _ = binary_request(np.full((1, 1, 8, 8), 0.7, dtype=np.float32))
    response = httpx.post(infer_url(server), auth=AUTH, content=body)
    assert response.status_code == 400
    assert "Inference-Header-Content-Length" in response.json()["error"]


GOOD = np.full((2, 1, 8, 8), 0.25, dtype=np.float32)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"declared": 2 * 64 * 4 - 4},
            "input 'input': binary_data_size is 508 bytes but its shape needs 512 (FP32, 4 bytes each)",
        ),
        ({"extra": b"\x00" * 4}, "516 bytes follow the JSON header but the inputs declare 512"),
        ({"header": "0"}, "Inference-Header-Content-Length 0 does not fit the body"),
        ({"header": "999999"}, "Inference-Header-Content-Length 999999 does not fit the body"),
        ({"header": "-5"}, "Inference-Header-Content-Length must be a byte count"),
        ({"header": "12abc"}, "Inference-Header-Content-Length must be a byte count"),
        ({"raw": np.full((2, 1, 8, 8), np.nan, dtype=np.float32)}, "NaN or infinity"),
    ],
)
def test_every_bound_of_a_binary_request_is_held(server: Server, change: dict[str, Any], message: str) -> None:
    images = change.get("raw", GOOD)
    body, headers = binary_request(images, declared=change.get("declared"), extra=change.get("extra", b""))
    if "header" in change:
        headers = {HEADER: change["header"]}
    response = httpx.post(infer_url(server), auth=AUTH, content=body, headers=headers)
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]


def test_a_short_body_is_refused_not_padded(server: Server) -> None:
    body, headers = binary_request(GOOD)
    response = httpx.post(infer_url(server), auth=AUTH, content=body[:-8], headers=headers)
    assert response.status_code == 400
    assert "binary_data_size declares 512 bytes but 504 follow for it after the JSON header" in response.json()["error"]


@pytest.mark.parametrize(
    ("where", "parameters", "extension"),
    [
        ("request", {"sequence_id": 7}, "sequence"),
        ("request", {"priority": 1}, "schedule_policy"),
        ("input", {"shared_memory_region": "r0"}, "system_shared_memory / cuda_shared_memory"),
        ("output", {"classification": 3}, "classification"),
    ],
)
def test_an_extension_the_server_lacks_is_refused_by_name(
    server: Server, where: str, parameters: dict[str, Any], extension: str
) -> None:
    request: dict[str, Any] = {
        "inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": [0.0] * 64}],
    }
    if where == "request":
        request["parameters"] = parameters
    elif where == "input":
        request["inputs"][0]["parameters"] = parameters
    else:
        request["outputs"] = [{"name": "probabilities", "parameters": parameters}]
    response = httpx.post(infer_url(server), auth=AUTH, json=request)
    assert response.status_code == 400
    error = response.json()["error"]
    assert f"belongs to the {extension} extension, which this server does not support" in error
    assert "binary_tensor_data" in error
