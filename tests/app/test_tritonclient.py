"""NVIDIA's own Open Inference Protocol client against our server, the way users' code calls it.

``tritonclient[http]`` (pinned in app/requirements-test.txt) talks to the server
started as its image starts it in a pod (``tls_server``: ``python -m
mlapp.serve``, HTTPS with a certificate its CA signs, basic auth), verifying
that CA as a user verifies the stack's ``caCertificate``. Every tensor it gets
back is compared with a direct ONNX Runtime run of the same model file on the
same rows. The client's defaults are the point: ``set_data_from_numpy`` sends
raw bytes after a JSON header (the binary tensor data extension), and an
``infer`` that names no outputs asks for every output in binary
(tritonclient/http/_utils.py, ``_get_inference_request``: "no outputs specified
so set 'binary_data_output' True").

The calls that only Triton answers (its model configuration, repository,
statistics, trace, logging and shared-memory extensions) are recorded as what
they get from us: a 404 whose message names the extension.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import tritonclient.http as triton
import tritonclient.http.aio as triton_aio
from tritonclient.http.aio.auth import BasicAuth as AioBasicAuth
from tritonclient.http.auth import BasicAuth
from tritonclient.utils import InferenceServerException

from mlapp.serve import protocol
from tools.devcert import Certificates

from .helpers import MODEL_NAME, PASSWORD, USER, VERSION, Direct, HeldOut, Server

INPUT, OUTPUT = "input", "probabilities"


def _client(server: Server, certificates: Certificates, **kwargs: Any) -> Any:
    return triton.InferenceServerClient(
        f"127.0.0.1:{server.port}", ssl=True, ssl_options={"ca_certs": str(certificates.ca)}, **kwargs
    )


@pytest.fixture(scope="module")
def client(tls_server: Server, certificates: Certificates) -> Iterator[Any]:
    """tritonclient over HTTPS, trusting the test CA, with its basic-auth plugin."""
    c = _client(tls_server, certificates, concurrency=4)
    c.register_plugin(BasicAuth(USER, PASSWORD))
    try:
        yield c
    finally:
        c.close()


def rows(held_out: HeldOut, n: int) -> npt.NDArray[np.float32]:
    return np.ascontiguousarray(held_out.images[:n], dtype=np.float32)


def tensor(x: npt.NDArray[np.float32], binary: bool) -> Any:
    inp = triton.InferInput(INPUT, list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    return inp


def test_health_readiness_and_metadata(client: Any) -> None:
    assert client.is_server_live() is True
    assert client.is_server_ready() is True
    assert client.is_model_ready(MODEL_NAME) is True
    assert client.is_model_ready(MODEL_NAME, VERSION) is True
    assert client.is_model_ready(MODEL_NAME, "no-such-version") is False

    server = client.get_server_metadata()
    assert server["name"] == "mlapp"
    assert protocol.BINARY_EXTENSION in server["extensions"]

    for version in ("", VERSION):
        meta = client.get_model_metadata(MODEL_NAME, version)
        assert meta["name"] == MODEL_NAME
        assert meta["versions"] == [VERSION]
        assert meta["inputs"] == [{"name": INPUT, "datatype": "FP32", "shape": [-1, 1, 8, 8]}]
        assert meta["outputs"] == [{"name": OUTPUT, "datatype": "FP32", "shape": [-1, 10]}]


def test_the_clients_defaults_binary_in_and_every_output_binary(client: Any, held_out: HeldOut, direct: Direct) -> None:
    """The issue's reproduction: ``set_data_from_numpy(x)`` and ``infer`` with no outputs named."""
    x = rows(held_out, 1)
    inp = triton.InferInput(INPUT, list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    result = client.infer(MODEL_NAME, [inp], request_id="first")
    answer = result.get_response()
    assert (answer["model_name"], answer["model_version"], answer["id"]) == (MODEL_NAME, VERSION, "first")
    out = result.get_output(OUTPUT)
    assert out["parameters"] == {"binary_data_size": 4 * 10}, "the output came back as raw bytes"
    np.testing.assert_array_equal(result.as_numpy(OUTPUT), direct(x))
    assert int(result.as_numpy(OUTPUT).argmax()) == int(held_out.labels[0])


@pytest.mark.parametrize("binary_in", [False, True], ids=["json-in", "binary-in"])
@pytest.mark.parametrize("binary_out", [False, True], ids=["json-out", "binary-out"])
@pytest.mark.parametrize("n", [1, 7])
def test_inference_in_every_combination_equals_onnx_runtime(
    client: Any,
    held_out: HeldOut,
    direct: Direct,
    *,
    binary_in: bool,
    binary_out: bool,
    n: int,
) -> None:
    x = rows(held_out, n)
    wanted = [triton.InferRequestedOutput(OUTPUT, binary_data=binary_out)]
    result = client.infer(MODEL_NAME, [tensor(x, binary_in)], outputs=wanted)
    out = result.get_output(OUTPUT)
    assert out["shape"] == [n, 10]
    assert ("data" in out) is not binary_out
    got = result.as_numpy(OUTPUT)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, direct(x))
    assert list(got.argmax(axis=1)) == list(held_out.labels[:n])


def test_a_version_path_and_the_auth_header_given_per_call(
    tls_server: Server,
    certificates: Certificates,
    held_out: HeldOut,
    direct: Direct,
) -> None:
    """``/v2/models/<m>/versions/<v>/infer``, credentials in ``headers=`` instead of the plugin."""
    x = rows(held_out, 3)
    headers = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}
    with _client(tls_server, certificates) as c:
        result = c.infer(MODEL_NAME, [tensor(x, True)], model_version=VERSION, headers=headers)
        np.testing.assert_array_equal(result.as_numpy(OUTPUT), direct(x))
        with pytest.raises(InferenceServerException) as e:
            c.infer(MODEL_NAME, [tensor(x, True)], model_version="v-other", headers=headers)
        assert e.value.status() == "404"
        assert "unknown version 'v-other'" in e.value.message()


def test_concurrent_async_infer_each_gets_its_own_rows(client: Any, held_out: HeldOut, direct: Direct) -> None:
    """``async_infer`` on the client's greenlet pool: the server batches them, each answer is its own."""
    batches = [np.ascontiguousarray(held_out.images[i : i + 1 + i % 3]) for i in range(12)]
    pending = [client.async_infer(MODEL_NAME, [tensor(x, True)], request_id=str(i)) for i, x in enumerate(batches)]
    for i, (x, p) in enumerate(zip(batches, pending, strict=True)):
        result = p.get_result(timeout=30)
        assert result.get_response()["id"] == str(i)
        np.testing.assert_allclose(result.as_numpy(OUTPUT), direct(x), rtol=1e-5, atol=1e-7)


def test_the_asyncio_client(
    tls_server: Server,
    certificates: Certificates,
    held_out: HeldOut,
    direct: Direct,
) -> None:
    """tritonclient.http.aio (aiohttp), which labels its body application/octet-stream."""
    x = rows(held_out, 4)

    async def ask() -> tuple[bool, Any, Any]:
        context = ssl.create_default_context(cafile=str(certificates.ca))
        async with triton_aio.InferenceServerClient(f"127.0.0.1:{tls_server.port}", ssl=True, ssl_context=context) as c:
            c.register_plugin(AioBasicAuth(USER, PASSWORD))
            ready = await c.is_model_ready(MODEL_NAME)
            binary = await c.infer(MODEL_NAME, [tensor(x, True)])
            as_json = await c.infer(
                MODEL_NAME, [tensor(x, False)], outputs=[triton_aio.InferRequestedOutput(OUTPUT, binary_data=False)]
            )
            return ready, binary.as_numpy(OUTPUT), as_json.as_numpy(OUTPUT)

    ready, binary, as_json = asyncio.run(ask())
    assert ready is True
    np.testing.assert_array_equal(binary, direct(x))
    np.testing.assert_array_equal(as_json, direct(x))


def test_a_wrong_password_is_401_and_health_needs_none(
    tls_server: Server, certificates: Certificates, held_out: HeldOut
) -> None:
    with _client(tls_server, certificates) as c:
        assert (c.is_server_live(), c.is_server_ready()) == (True, True)  # the probes' endpoints are public
        c.register_plugin(BasicAuth(USER, "not-the-password"))
        with pytest.raises(InferenceServerException) as e:
            c.infer(MODEL_NAME, [tensor(rows(held_out, 1), True)])
        assert e.value.status() == "401"
        with pytest.raises(InferenceServerException) as e:
            c.get_model_metadata(MODEL_NAME)
        assert e.value.status() == "401"


def test_a_compressed_request_is_refused_naming_the_coding_and_compressed_answers_are_optional(
    client: Any, held_out: HeldOut, direct: Direct
) -> None:
    x = rows(held_out, 2)
    for coding in ("gzip", "deflate"):
        with pytest.raises(InferenceServerException) as e:
            client.infer(MODEL_NAME, [tensor(x, True)], request_compression_algorithm=coding)
        assert e.value.status() == "415"
        assert f"Content-Encoding {coding!r} is not supported" in e.value.message()
        # Asking for a compressed answer is a preference: the answer comes uncompressed, and reads.
        result = client.infer(MODEL_NAME, [tensor(x, True)], response_compression_algorithm=coding)
        np.testing.assert_array_equal(result.as_numpy(OUTPUT), direct(x))


def test_an_extension_parameter_we_lack_is_refused_naming_it(client: Any, held_out: HeldOut) -> None:
    """``class_count`` asks for Triton's classification extension, which we do not implement."""
    x = rows(held_out, 1)
    with pytest.raises(InferenceServerException) as e:
        client.infer(MODEL_NAME, [tensor(x, True)], outputs=[triton.InferRequestedOutput(OUTPUT, class_count=3)])
    assert e.value.status() == "400"
    assert "classification" in e.value.message()
    with pytest.raises(InferenceServerException) as e:
        client.infer(MODEL_NAME, [tensor(x, True)], priority=1)
    assert e.value.status() == "400"
    assert "schedule_policy" in e.value.message()


# (the call, the extension Triton names it by)
TRITON_ONLY: list[tuple[str, Callable[[Any], object], str]] = [
    ("get_model_config", lambda c: c.get_model_config(MODEL_NAME), "model_configuration"),
    ("get_model_config version", lambda c: c.get_model_config(MODEL_NAME, VERSION), "model_configuration"),
    ("get_model_repository_index", lambda c: c.get_model_repository_index(), "model_repository"),
    ("load_model", lambda c: c.load_model(MODEL_NAME), "model_repository"),
    ("unload_model", lambda c: c.unload_model(MODEL_NAME), "model_repository"),
    ("get_inference_statistics", lambda c: c.get_inference_statistics(MODEL_NAME), "statistics"),
    ("get_inference_statistics all", lambda c: c.get_inference_statistics(), "statistics"),
    ("get_trace_settings", lambda c: c.get_trace_settings(), "trace"),
    ("get_trace_settings model", lambda c: c.get_trace_settings(MODEL_NAME), "trace"),
    ("get_log_settings", lambda c: c.get_log_settings(), "logging"),
    ("get_system_shared_memory_status", lambda c: c.get_system_shared_memory_status(), "system_shared_memory"),
    ("get_cuda_shared_memory_status", lambda c: c.get_cuda_shared_memory_status(), "cuda_shared_memory"),
]


@pytest.mark.parametrize(("call", "extension"), [(c, e) for _, c, e in TRITON_ONLY], ids=[n for n, _, _ in TRITON_ONLY])
def test_triton_only_calls_get_404_naming_the_extension(
    client: Any, call: Callable[[Any], object], extension: str
) -> None:
    with pytest.raises(InferenceServerException) as e:
        call(client)
    assert e.value.status() == "404", e.value
    assert f"Triton's {extension} extension, which this server does not implement" in e.value.message()
    assert extension not in client.get_server_metadata()["extensions"]
