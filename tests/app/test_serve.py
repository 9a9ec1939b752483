"""The model server as a real process on loopback, called over HTTP."""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import pytest

from mlapp import settings

from .helpers import (
    GCSFUSE_SIM,
    LABELS,
    MODEL_NAME,
    PASSWORD,
    SEED,
    TRAIN_ARGS,
    USER,
    VERSION,
    Direct,
    HeldOut,
    Server,
    TrainedModel,
    app_env,
    copy_model_into,
    png_of,
    run_trainer,
)

AUTH = (USER, PASSWORD)
GOOD = np.zeros((1, 1, 8, 8), dtype=np.float32)


def v2_request(images: npt.NDArray[np.float32], **extra: Any) -> dict[str, Any]:
    return {
        "inputs": [
            {
                "name": "input",
                "shape": list(images.shape),
                "datatype": "FP32",
                "data": images.ravel().tolist(),
            }
        ],
        **extra,
    }


def infer_url(server: Server, name: str = MODEL_NAME) -> str:
    return f"{server.url}/v2/models/{name}/infer"


# ---------------------------------------------------------------- health, auth


def test_health_needs_no_auth(server: Server) -> None:
    live = httpx.get(server.url + "/v2/health/live")
    ready = httpx.get(server.url + "/v2/health/ready")
    assert (live.status_code, live.json()) == (200, {"live": True})
    assert (ready.status_code, ready.json()) == (200, {"ready": True})


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"/v2/models/{MODEL_NAME}"),
        ("GET", f"/v2/models/{MODEL_NAME}/ready"),
        ("POST", f"/v2/models/{MODEL_NAME}/infer"),
        ("POST", "/predict"),
        ("GET", "/v2"),
    ],
)
@pytest.mark.parametrize(
    "auth",
    [None, (USER, "wrong"), ("someone", PASSWORD), (USER, PASSWORD + "x"), (USER, "")],
    ids=["none", "wrong-password", "wrong-user", "longer-password", "empty-password"],
)
def test_protected_endpoints_refuse_bad_credentials(
    server: Server, method: str, path: str, auth: tuple[str, str] | None
) -> None:
    response = httpx.request(method, server.url + path, auth=auth, json={})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith('Basic realm="mlapp"')
    assert response.json() == {"error": "authentication required"}


def test_malformed_authorization_header_is_401(server: Server) -> None:
    for header in ["Basic !!!notbase64", "Bearer abc", "Basic", f"basic {'x' * 10}"]:
        response = httpx.get(f"{server.url}/v2/models/{MODEL_NAME}", headers={"Authorization": header})
        assert response.status_code == 401, header


def test_model_metadata(server: Server) -> None:
    response = httpx.get(f"{server.url}/v2/models/{MODEL_NAME}", auth=AUTH)
    assert response.status_code == 200
    meta = response.json()
    assert meta["name"] == MODEL_NAME
    assert meta["versions"] == [VERSION]
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 1, 8, 8]}]
    assert meta["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]}]
    assert meta["platform"] == "onnxruntime_onnx"
    parameters = meta["parameters"]
    assert parameters["labels"] == LABELS
    assert parameters["metrics"]["accuracy"] >= 0.9
    assert parameters["gate"] == {**parameters["gate"], "metric": "accuracy", "direction": "maximize", "threshold": 0.9}
    assert parameters["gate"]["value"] == parameters["metrics"]["accuracy"]
    assert parameters["batchable"] is True
    assert parameters["plugin"]["name"] == "image-classifier"
    ready = httpx.get(f"{server.url}/v2/models/{MODEL_NAME}/versions/{VERSION}/ready", auth=AUTH)
    assert (ready.status_code, ready.json()) == (200, {"name": MODEL_NAME, "ready": True})


def test_unknown_model_or_version_is_404(server: Server) -> None:
    for path in ["/v2/models/other", "/v2/models/other/infer", "/v2/models/other/ready",
                 f"/v2/models/{MODEL_NAME}/versions/nope/infer"]:  # fmt: skip
        method = "POST" if path.endswith("infer") else "GET"
        response = httpx.request(method, server.url + path, auth=AUTH, json=v2_request(GOOD))
        assert response.status_code == 404, path
        assert "unknown" in response.json()["error"]


def test_unknown_path_404_and_wrong_method_405(server: Server) -> None:
    assert httpx.get(server.url + "/nope", auth=AUTH).status_code == 404
    response = httpx.get(infer_url(server), auth=AUTH)
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


# ---------------------------------------------------------------- inference


def test_v2_infer_is_correct_on_held_out_digits(server: Server, held_out: HeldOut, direct: Direct) -> None:
    images = held_out.images[:120]
    response = httpx.post(infer_url(server), auth=AUTH, json=v2_request(images, id="req-1"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_name"] == MODEL_NAME
    assert body["model_version"] == VERSION
    assert body["id"] == "req-1"
    (out,) = body["outputs"]
    assert (out["name"], out["datatype"], out["shape"]) == ("probabilities", "FP32", [120, 10])
    probs = np.asarray(out["data"], dtype=np.float32).reshape(120, 10)
    accuracy = float((probs.argmax(1) == held_out.labels[:120]).mean())
    assert accuracy >= 0.9
    np.testing.assert_allclose(probs, direct(images), atol=1e-5)


def test_concurrent_requests_each_get_their_own_answer(server: Server, held_out: HeldOut, direct: Direct) -> None:
    """Requests batched into one ORT run must be split back to the right callers."""
    images = held_out.images[:64]
    expected = direct(images)

    def one(i: int) -> npt.NDArray[np.float32]:
        n = 1 + i % 3  # mixed batch sizes inside one coalesced run
        rows = images[[(i + k) % 64 for k in range(n)]]
        r = httpx.post(infer_url(server), auth=AUTH, json=v2_request(rows), timeout=30)
        assert r.status_code == 200, r.text
        return np.asarray(r.json()["outputs"][0]["data"], dtype=np.float32).reshape(n, 10)

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(64)))
    for i, got in enumerate(results):
        want = expected[[(i + k) % 64 for k in range(len(got))]]
        np.testing.assert_allclose(got, want, atol=1e-5, err_msg=f"request {i}")


def test_predict_png_uploads_of_held_out_digits(server: Server, held_out: HeldOut) -> None:
    correct = 0
    n = 60
    for i in range(n):
        png = png_of(held_out.images[i], scale=5, dark_on_light=i % 2 == 1)
        response = httpx.post(server.url + "/predict", auth=AUTH, files={"image": ("digit.png", png, "image/png")})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["label"] == LABELS[body["class"]]
        assert len(body["probabilities"]) == 10
        assert abs(sum(body["probabilities"]) - 1) < 1e-4
        correct += body["class"] == held_out.labels[i]
    assert correct / n >= 0.9


def test_predict_jpeg_and_json_pixels(server: Server, held_out: HeldOut) -> None:
    from PIL import Image

    image = held_out.images[3]
    label = int(held_out.labels[3])
    buf = __import__("io").BytesIO()
    big = np.kron(np.rint(255 - image[0] * 255), np.ones((16, 16))).astype(np.uint8)
    Image.fromarray(big).convert("RGB").save(buf, format="JPEG", quality=95)
    jpeg = httpx.post(server.url + "/predict", auth=AUTH, files={"image": ("d.jpg", buf.getvalue())})
    assert jpeg.status_code == 200, jpeg.text
    assert jpeg.json()["class"] == label

    pixels = np.rint(image[0] * 255).astype(int).tolist()
    response = httpx.post(server.url + "/predict", auth=AUTH, json={"pixels": pixels})
    assert response.status_code == 200, response.text
    assert response.json()["class"] == label
    assert response.json()["label"] == LABELS[label]


def _post_raw(server: Server, path: str, body: bytes, content_type: str) -> httpx.Response:
    return httpx.post(server.url + path, auth=AUTH, content=body, headers={"content-type": content_type})


def _v2(**change: Any) -> bytes:
    tensor = v2_request(GOOD)["inputs"][0]
    tensor.update(change)
    return json.dumps({"inputs": [tensor]}).encode()


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8", None,
                                          "application/octet-stream"])  # fmt: skip
def test_infer_reads_json_and_what_protocol_clients_send(server: Server, content_type: str | None) -> None:
    """tritonclient sends no Content-Type; its asyncio client's aiohttp says application/octet-stream."""
    headers = {"content-type": content_type} if content_type else {}
    response = httpx.post(infer_url(server), auth=AUTH, content=_v2(), headers=headers)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("content_type", ["text/plain", "multipart/form-data; boundary=x",
                                          "application/x-www-form-urlencoded"])  # fmt: skip
def test_infer_refuses_other_content_types_415(server: Server, content_type: str) -> None:
    response = _post_raw(server, f"/v2/models/{MODEL_NAME}/infer", _v2(), content_type)
    assert response.status_code == 415
    assert "application/json" in response.json()["error"]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"{not json", 400, "malformed JSON"),
        (b"[1, 2]", 400, "JSON object"),
        (b"{}", 400, "'inputs' must be"),
        (b'{"inputs": []}', 400, "'inputs' must be"),
        (b'{"inputs": [1]}', 400, "each input must be an object"),
        (json.dumps({"inputs": [v2_request(GOOD)["inputs"][0]] * 2}).encode(), 400,
         "input 'input' is given twice"),
        (json.dumps({"inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32"}]})
         .encode(), 400, "missing 'data'"),
        (_v2(name="pixels"), 400, "unknown input 'pixels'"),
        (_v2(datatype="INT32"), 400,
         "input 'input' is sent as 'INT32', but the model takes 'input' (FP32 [batch, 1, 8, 8])"),
        (_v2(datatype="BYTES"), 400, "is sent as 'BYTES', but the model takes"),
        (_v2(shape=[1, 64]), 400, "shape [1, 64], which does not fit the model's 'input' (FP32 [batch, 1, 8, 8])"),
        (_v2(shape=[1, 1, 8, 9]), 400, "shape [1, 1, 8, 9], which does not fit"),
        (_v2(shape=[0, 1, 8, 8]), 400, "holds 64 values but its shape [0, 1, 8, 8] needs 0"),
        (_v2(shape="1,1,8,8"), 400, "shape '1,1,8,8', which does not fit"),
        (_v2(shape=[2, 1, 8, 8]), 400, "holds 64 values but its shape [2, 1, 8, 8] needs 128"),
        (_v2(shape=[1.0, 1, 8, 8]), 400, "which does not fit"),
        (_v2(shape=[True, 1, 8, 8]), 400, "which does not fit"),
        (_v2(data=["a"] * 64), 400, "must be numbers"),
        (_v2(data=[[1, 2], [3]]), 400, "must be numbers"),
        (_v2(data="zeros"), 400, "must be a list"),
        # Only finite JSON numbers FP32 can hold: the "nan", "inf", null and 1e39.
        (_v2(data=["nan"] * 64), 400, "numbers only (FP32); found str"),
        (_v2(data=["inf"] + [0] * 63), 400, "numbers only (FP32); found str"),
        (_v2(data=[None] + [0] * 63), 400, "numbers only (FP32); found null"),
        (_v2(data=[True] + [0.5] * 63), 400, "numbers only (FP32); found bool"),
        (_v2(data=[1e39] + [0] * 63), 400, "outside FP32's range"),
        (_v2(data=[-1e39] + [0] * 63), 400, "outside FP32's range"),
        (json.dumps({**v2_request(GOOD), "outputs": [{"name": "logits"}]}).encode(), 400,
         "unknown output 'logits'; the model gives 'probabilities' (FP32 [batch, 10])"),
        (json.dumps({**v2_request(GOOD), "outputs": [{"name": "probabilities"}] * 2}).encode(), 400,
         "output 'probabilities' is asked for twice"),
        (b"x" * (300 * 1024), 413, "over the limit"),
    ],
)  # fmt: skip
def test_bad_v2_input_is_4xx_with_a_message(server: Server, body: bytes, status: int, message: str) -> None:
    response = _post_raw(server, f"/v2/models/{MODEL_NAME}/infer", body, "application/json")
    assert response.status_code == status, response.text
    assert message in response.json()["error"]


# A real PNG header and half its pixel data: identifiable, but not decodable.
_NOISE = np.random.default_rng(0).random((1, 8, 8)).astype(np.float32)
TRUNCATED_PNG = png_of(_NOISE, scale=8)[: len(png_of(_NOISE, scale=8)) // 2]


def _multipart(field: str, data: bytes, boundary: str = "XyZ") -> tuple[bytes, str]:
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="f"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


@pytest.mark.parametrize(
    ("body", "content_type", "status", "message"),
    [
        (*_multipart("image", b"this is not a picture"), 400, "not an image"),
        (*_multipart("image", b""), 400, "empty"),
        (*_multipart("image", TRUNCATED_PNG), 400, "damaged"),
        (*_multipart("photo", b"..."), 400, "no 'image' field"),
        (b"--XyZ\r\nbroken", "multipart/form-data; boundary=XyZ", 400, "malformed multipart"),
        (b"", "multipart/form-data", 400, "without a boundary"),
        (b"hello", "text/plain", 415, "multipart/form-data"),
        (b"{bad", "application/json", 400, "malformed JSON"),
        (b'{"image": 1}', "application/json", 400, "'pixels'"),
        (b'{"pixels": [1, 2, 3]}', "application/json", 400, "2-D"),
        (b'{"pixels": [[1, 2], [3]]}', "application/json", 400, "rectangular"),
        (b'{"pixels": [[1, 2], [3, 999]]}', "application/json", 400, "0 to 255"),
        (b'{"pixels": [["a"]]}', "application/json", 400, "numbers"),
        (b"x" * (300 * 1024), "application/json", 413, "over the limit"),
    ],
)
def test_bad_predict_input_is_4xx_with_a_message(
    server: Server, body: bytes, content_type: str, status: int, message: str
) -> None:
    response = _post_raw(server, "/predict", body, content_type)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]


def test_metrics(server: Server) -> None:
    httpx.post(infer_url(server), auth=AUTH, json=v2_request(GOOD))
    httpx.get(f"{server.url}/v2/models/{MODEL_NAME}")  # a 401
    # Off the public port: only the internal one answers it.
    assert httpx.get(server.url + "/metrics").status_code == 404
    response = httpx.get(server.metrics_url + "/metrics")
    assert response.status_code == 200
    text = response.text

    def value(pattern: str) -> float:
        match = re.search("^" + re.escape(pattern) + r" (\S+)$", text, re.MULTILINE)
        assert match, f"{pattern} not in /metrics"
        return float(match.group(1))

    route = "/v2/models/{name}/infer"
    assert value(f'mlapp_requests_total{{method="POST",route="{route}",status="200"}}') >= 1
    assert value('mlapp_requests_total{method="GET",route="/v2/models/{name}",status="401"}') >= 1
    assert value(f'mlapp_request_duration_seconds_count{{route="{route}"}}') >= 1
    assert value("mlapp_inference_duration_seconds_count") >= 1
    assert value(f'mlapp_model_info{{name="{MODEL_NAME}",version="{VERSION}"}}') == 1
    assert value("mlapp_model_ready") == 1


def test_one_json_log_line_per_request_without_credentials(server: Server) -> None:
    marker = f"/v2/health/live?probe={time.monotonic_ns()}"
    httpx.get(server.url + marker)
    httpx.get(f"{server.url}/v2/models/{MODEL_NAME}", auth=AUTH)
    httpx.get(f"{server.url}/v2/models/{MODEL_NAME}", auth=(USER, "a-wrong-guess"))
    time.sleep(0.2)  # the log is written after the response
    entries = [json.loads(line) for line in server.log.splitlines() if line.startswith("{")]
    requests = [e for e in entries if e.get("message") == "request"]
    live = [e for e in requests if e["path"] == "/v2/health/live"]
    assert live
    assert {"method", "path", "status", "duration_ms"} <= live[-1].keys()
    assert live[-1]["status"] == 200
    assert any(e["path"] == f"/v2/models/{MODEL_NAME}" and e["status"] == 401 for e in requests)
    assert PASSWORD not in server.log
    assert "a-wrong-guess" not in server.log
    assert "authorization" not in server.log.lower()


def test_an_access_line_is_one_json_object_whatever_the_path_holds() -> None:
    from mlapp.serve.logs import AccessLog

    access = AccessLog()
    hostile = '/v2/"quoted"\\back\nnew\x00line\u00e9'
    access.request('PO"ST', hostile, 404, 0.002)
    (line,) = access._lines
    assert line.count(b"\n") == 1
    assert line.endswith(b"\n")
    entry = json.loads(line)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry.pop("time"))
    assert entry == {
        "level": "INFO",
        "logger": "mlapp.access",
        "message": "request",
        "method": 'PO"ST',
        "path": hostile,
        "status": 404,
        "duration_ms": 2.0,
    }


def test_each_access_line_names_its_own_request_when_requests_alternate() -> None:
    from mlapp.serve.logs import AccessLog

    access = AccessLog()
    sent = [("POST", "/a"), ("POST", "/a"), ("GET", "/a"), ("GET", "/b"), ("POST", "/a")]
    for method, path in sent:
        access.request(method, path, 200, 0.001)
    assert [(e["method"], e["path"]) for e in map(json.loads, access._lines)] == sent


# ---------------------------------------------------------------- lifecycle


def test_not_ready_until_the_model_arrives(tmp_path: Path, trained: TrainedModel, held_out: HeldOut) -> None:
    store = tmp_path / "store"
    store.mkdir()
    srv = Server(tmp_path, store)
    try:
        srv.wait_for("/v2/health/live")
        ready = httpx.get(srv.url + "/v2/health/ready")
        assert (ready.status_code, ready.json()) == (503, {"ready": False})
        infer = httpx.post(infer_url(srv), auth=AUTH, json=v2_request(held_out.images[:1]))
        assert infer.status_code == 503
        assert "not loaded" in infer.json()["error"]
        model_ready = httpx.get(f"{srv.url}/v2/models/{MODEL_NAME}/ready", auth=AUTH)
        assert model_ready.status_code == 503
        # Unauthenticated callers learn nothing about the model, ready or not.
        assert httpx.post(infer_url(srv), json={}).status_code == 401

        copy_model_into(store, trained.directory)
        srv.wait_for("/v2/health/ready", 200, timeout=20)
        infer = httpx.post(infer_url(srv), auth=AUTH, json=v2_request(held_out.images[:1]))
        assert infer.status_code == 200
        assert httpx.get(srv.url + "/v2/health/live").status_code == 200
        # No MLAPP_LABELS_FILE here: the label is the class index.
        predict = httpx.post(srv.url + "/predict", auth=AUTH,
                             files={"image": ("d.png", png_of(held_out.images[0]))})  # fmt: skip
        assert predict.status_code == 200
        assert predict.json()["label"] == str(predict.json()["class"])
    finally:
        assert srv.stop() == 0


def test_train_then_serve_on_a_store_that_refuses_directory_renames(tmp_path: Path, held_out: HeldOut) -> None:
    """Bug: on GKE (gcsfuse, flat bucket) the trainer could never publish, so nothing served."""
    store = tmp_path / "bucket"
    store.mkdir()
    srv = Server(tmp_path, store, wrapper=GCSFUSE_SIM)
    try:
        srv.wait_for("/v2/health/live")
        result = run_trainer(store, VERSION, *TRAIN_ARGS, "--seed", str(SEED),
                             wrapper=GCSFUSE_SIM)  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        srv.wait_for("/v2/health/ready", 200, timeout=20)
        predict = httpx.post(srv.url + "/predict", auth=AUTH,
                             files={"image": ("d.png", png_of(held_out.images[0]))})  # fmt: skip
        assert predict.status_code == 200, predict.text
        assert predict.json()["class"] == int(held_out.labels[0])
    finally:
        assert srv.stop() == 0


def damage(model: bytes, how: str) -> bytes:
    if how == "truncated":  # half a copy landed
        return model[: len(model) // 2]
    middle = len(model) // 2
    return model[:middle] + bytes([model[middle] ^ 0x01]) + model[middle + 1 :]  # one bit flipped


@pytest.mark.parametrize("how", ["truncated", "one bit flipped"])
def test_a_model_not_matching_its_metadata_is_refused_with_a_warning(
    tmp_path: Path, trained: TrainedModel, held_out: HeldOut, how: str
) -> None:
    """Bug: a damaged model was logged at INFO as "waiting for the model", like one not published yet.

    metadata.json is valid and names the model's size and SHA-256; the file
    beside it is another: the server refuses it, says so, and is not ready
    until the file is the one metadata.json names.
    """
    store = tmp_path / "store"
    copy_model_into(store, trained.directory)
    model_file = store / MODEL_NAME / VERSION / "model.onnx"
    model = model_file.read_bytes()
    damaged = damage(model, how)
    model_file.write_bytes(damaged)
    srv = Server(tmp_path, store)
    try:
        srv.wait_for("/v2/health/live")
        srv.wait_for_log("refusing to load the model")
        ready = httpx.get(srv.url + "/v2/health/ready")
        assert (ready.status_code, ready.json()) == (503, {"ready": False})
        infer = httpx.post(infer_url(srv), auth=AUTH, json=v2_request(held_out.images[:1]))
        assert infer.status_code == 503, infer.text
        predict = httpx.post(srv.url + "/predict", auth=AUTH, files={"image": ("d.png", png_of(held_out.images[0]))})
        assert predict.status_code == 503, predict.text

        entries = [json.loads(line) for line in srv.log.splitlines() if line.startswith("{")]
        refusals = [e for e in entries if "refusing to load the model" in e["message"]]
        assert len(refusals) == 1, refusals  # once, though every retry finds the same file
        assert refusals[0]["level"] == "WARNING"
        message = refusals[0]["message"]
        assert str(model_file) in message
        if len(damaged) != len(model):  # told by the size alone, before a byte is read
            assert f"is {len(damaged)} bytes but metadata.json names {len(model)}" in message
        else:
            assert f"({len(damaged)} bytes, sha256 {hashlib.sha256(damaged).hexdigest()[:12]}…)" in message
            assert f"({len(model)} bytes, sha256 {hashlib.sha256(model).hexdigest()[:12]}…)" in message
        assert not [e for e in entries if "waiting for the model" in e["message"]]

        model_file.write_bytes(model)  # repaired: the file metadata.json names
        srv.wait_for("/v2/health/ready", 200, timeout=20)
        infer = httpx.post(infer_url(srv), auth=AUTH, json=v2_request(held_out.images[:1]))
        assert infer.status_code == 200, infer.text
    finally:
        assert srv.stop() == 0


def test_sigterm_drains_in_flight_requests(tmp_path: Path, trained: TrainedModel) -> None:
    srv = Server(tmp_path, trained.store)
    srv.wait_for("/v2/health/ready")
    body = json.dumps(v2_request(GOOD)).encode()
    token = __import__("base64").b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    head = (
        f"POST /v2/models/{MODEL_NAME}/infer HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Basic {token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", srv.port), timeout=20) as conn:
        conn.sendall(head + body[:10])  # the request is now in flight, body half sent
        time.sleep(0.3)
        srv.proc.send_signal(__import__("signal").SIGTERM)
        time.sleep(0.5)
        assert srv.proc.poll() is None, "exited with a request in flight"
        conn.sendall(body[10:])
        response = b""
        while chunk := conn.recv(65536):
            response += chunk
    status_line, _, rest = response.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 200 OK", response
    assert b'"probabilities"' in rest
    assert srv.proc.wait(timeout=30) == 0
    srv.stop()
    assert "drained in" in srv.log


CREDS = {"MLAPP_AUTH_USERNAME": "u", "MLAPP_AUTH_PASSWORD": "p4ss", "MLAPP_PLAIN_HTTP": "1"}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MLAPP_AUTH_USERNAME": "u"}, "MLAPP_AUTH_PASSWORD_FILE (or MLAPP_AUTH_PASSWORD) must be set"),
        ({"MLAPP_AUTH_PASSWORD": "p4ss"}, "MLAPP_AUTH_USERNAME must be set"),
        ({}, "MLAPP_AUTH_USERNAME and MLAPP_AUTH_PASSWORD_FILE (or MLAPP_AUTH_PASSWORD) must be set"),
        ({**CREDS, "MLAPP_AUTH_PASSWORD_FILE": "/etc/hostname"}, "MLAPP_AUTH_PASSWORD are both set: choose one"),
        (
            {**CREDS, "MLAPP_AUTH_PASSWORD": "", "MLAPP_AUTH_PASSWORD_FILE": "/nonexistent"},
            "MLAPP_AUTH_PASSWORD_FILE: cannot read /nonexistent",
        ),
        ({**CREDS, "MLAPP_AUTH_USERNAME": "a:b"}, "MLAPP_AUTH_USERNAME must not contain ':'"),
        ({**CREDS, "MLAPP_PORT": "h"}, "MLAPP_PORT must be an integer from 1 to 65535, got 'h'"),
        ({**CREDS, "MLAPP_PORT": "0"}, "MLAPP_PORT must be an integer from 1 to 65535, got 0"),
        ({**CREDS, "MLAPP_LOG_LEVEL": "LOUD"}, "MLAPP_LOG_LEVEL must be one of DEBUG, INFO"),
        ({**CREDS, "MLAPP_MODEL_VERSION": "../x"}, "MLAPP_MODEL_VERSION must be"),
        ({**CREDS, "MLAPP_LABELS_FILE": "/nonexistent"}, "MLAPP_LABELS_FILE: cannot read"),
        ({**CREDS, "MLAPP_PLAIN_HTTP": ""}, "MLAPP_TLS_CERT_FILE and MLAPP_TLS_KEY_FILE must be set"),
        ({**CREDS, "MLAPP_PLAIN_HTTP": "yes"}, "MLAPP_PLAIN_HTTP must be 1 (serve plain HTTP) or 0, got 'yes'"),
        ({**CREDS, "MLAPP_TLS_CERT_FILE": "/etc/hostname"}, "MLAPP_PLAIN_HTTP=1 and a TLS certificate or key"),
        (
            {**CREDS, "MLAPP_PLAIN_HTTP": "0", "MLAPP_TLS_CERT_FILE": "/nonexistent", "MLAPP_TLS_KEY_FILE": "/x"},
            "MLAPP_TLS_CERT_FILE: /nonexistent is not a readable file",
        ),
        ({**CREDS, "MLAPP_HEADER_TIMEOUT": "0"}, "MLAPP_HEADER_TIMEOUT must be a number of seconds from 0.1 to 300"),
    ],
)  # fmt: skip
def test_refuses_to_start_on_bad_settings(env: dict[str, str], message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mlapp.serve"],
        env=app_env(**env), capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert message in result.stderr
    assert "p4ss" not in result.stdout + result.stderr


# --- the password from a file, as the pods mount it (contract.AUTH_DIR)

SETTINGS_ENV = {"MLAPP_AUTH_USERNAME": "u", "MLAPP_PLAIN_HTTP": "1"}


@pytest.mark.parametrize(
    ("written", "password"),
    [
        (b"p4ss-from-a-file", "p4ss-from-a-file"),
        (b"p4ss-from-a-file\n", "p4ss-from-a-file"),  # echo, kubectl create secret --from-file
        (b"p4ss-from-a-file\r\n", "p4ss-from-a-file"),
        (b" spaced p4ss \n", " spaced p4ss "),  # only the line's end goes
        ("pässwörd\n".encode(), "pässwörd"),
    ],
)
def test_the_password_is_read_from_its_file_without_the_lines_end(
    tmp_path: Path, written: bytes, password: str
) -> None:
    path = tmp_path / "password"
    path.write_bytes(written)
    read = settings.from_env({**SETTINGS_ENV, "MLAPP_AUTH_PASSWORD_FILE": str(path)})
    assert read.password == password
    assert password not in repr(read)


@pytest.mark.parametrize(
    ("written", "message"),
    [
        (None, "MLAPP_AUTH_PASSWORD_FILE: cannot read {path}: No such file or directory"),
        (b"", "MLAPP_AUTH_PASSWORD_FILE: {path} is empty"),
        (b"\n", "MLAPP_AUTH_PASSWORD_FILE: {path} is empty"),
        (b"p4ss\nsecond-line\n", "MLAPP_AUTH_PASSWORD_FILE: {path} must hold the password on one line"),
        (b"p4ss\xff\n", "MLAPP_AUTH_PASSWORD_FILE: {path} is not UTF-8 text"),
        (b"p4ss" * 1025, "MLAPP_AUTH_PASSWORD_FILE: {path} is over 4096 bytes"),
    ],
    ids=["missing", "empty", "blank", "two-lines", "not-utf8", "too-large"],
)
def test_a_password_file_the_server_cannot_use_is_refused_naming_it(
    tmp_path: Path, written: bytes | None, message: str
) -> None:
    path = tmp_path / "password"
    if written is not None:
        path.write_bytes(written)
    with pytest.raises(settings.SettingsError) as refused:
        settings.from_env({**SETTINGS_ENV, "MLAPP_AUTH_PASSWORD_FILE": str(path)})
    assert message.format(path=path) in str(refused.value)
    assert "p4ss" not in str(refused.value), "the message echoes the file"


def test_the_password_file_is_read_at_most_to_its_bound(tmp_path: Path) -> None:
    # A wrong path to something endless is refused after its bound, never read whole.
    with pytest.raises(settings.SettingsError, match="is over 4096 bytes"):
        settings.read_password_file(Path("/dev/zero"))
    assert settings.MAX_PASSWORD_FILE_BYTES == 4096


def test_a_server_given_the_password_file_answers_to_it_and_holds_no_password_in_its_environment(
    tmp_path: Path, trained: TrainedModel
) -> None:
    from_file = "s3cret-from-the-mounted-file"
    path = tmp_path / "password"
    path.write_text(from_file + "\n", encoding="utf-8")
    srv = Server(tmp_path, trained.store, MLAPP_AUTH_PASSWORD="", MLAPP_AUTH_PASSWORD_FILE=str(path))
    try:
        srv.wait_for("/v2/health/ready")
        metadata = f"{srv.url}/v2/models/{MODEL_NAME}"
        assert httpx.get(metadata, auth=(USER, from_file), timeout=10).status_code == 200
        assert httpx.get(metadata, auth=(USER, from_file + "\n"), timeout=10).status_code == 401
        assert httpx.get(metadata, auth=AUTH, timeout=10).status_code == 401, "the test's usual password"
        environ = Path(f"/proc/{srv.proc.pid}/environ").read_bytes()
        assert from_file.encode() not in environ, "the password is in the server's environment"
    finally:
        srv.stop()
    assert from_file not in srv.log


def test_labels_not_matching_the_model_keep_it_not_ready(tmp_path: Path, trained: TrainedModel) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\n", encoding="utf-8")
    srv = Server(tmp_path, trained.store, MLAPP_LABELS_FILE=str(labels))
    try:
        srv.wait_for("/v2/health/live")
        srv.wait_for_log("image-classifier: 2 labels for an output of 10 classes")
        assert httpx.get(srv.url + "/v2/health/ready").status_code == 503
    finally:
        srv.stop()


# ---------------------------------------------------------------- client


def test_client_prints_the_prediction(server: Server, held_out: HeldOut, tmp_path: Path) -> None:
    image = tmp_path / "digit.png"
    image.write_bytes(png_of(held_out.images[0], scale=8, dark_on_light=True))
    env = app_env(MLAPP_AUTH_USERNAME=USER, MLAPP_AUTH_PASSWORD=PASSWORD)
    cmd = [sys.executable, "-m", "mlapp.client", server.url, str(image)]
    ok = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=30, check=False)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith(LABELS[int(held_out.labels[0])] + " (class ")

    env["MLAPP_AUTH_PASSWORD"] = "wrong"
    bad = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=30, check=False)
    assert bad.returncode == 1
    assert "401" in bad.stderr

    missing = subprocess.run(
        [*cmd[:-1], str(tmp_path / "nope.png")], env=env, capture_output=True, text=True,
        timeout=30, check=False,
    )  # fmt: skip
    assert missing.returncode == 1
    assert "cannot read" in missing.stderr
