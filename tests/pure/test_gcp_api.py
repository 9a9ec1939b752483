"""Reads from Google APIs (a region's Compute Engine quotas), against a real HTTP server on loopback: the
request, the recorded answer, and every bound (time, tries, size), with the token never in a message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlstack import web
from mlstack.clouds import gcp_api
from tests.pure.test_azure_api import reply, resource_manager, stall

TOKEN = "ya29.gcp-token-secret-xyz"
REGION = Path(__file__).parents[1] / "fixtures" / "quota" / "gcp-region-us-central1.json"


def test_a_regions_quotas_are_asked_with_the_token_and_a_field_mask_and_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with resource_manager([reply(200, REGION.read_bytes())]) as (url, seen):
        monkeypatch.setattr(gcp_api, "ENDPOINT", url)
        quotas = gcp_api.compute_region_quotas("mlstack-example", "us-central1", TOKEN)
    ((path, headers),) = seen
    assert path == "/compute/v1/projects/mlstack-example/regions/us-central1?fields=quotas"
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    recorded = json.loads(REGION.read_text())["quotas"]
    assert [q.metric for q in quotas] == [entry["metric"] for entry in recorded], "every entry is read, in order"
    cpus = next(q for q in quotas if q.metric == "CPUS")
    assert (cpus.limit, cpus.usage, cpus.free, cpus.label) == (24.0, 0.0, 24.0, "CPUS")


def test_the_program_calls_the_hook_which_is_the_real_reader_by_default() -> None:
    assert gcp_api.region_quotas is gcp_api.compute_region_quotas


def test_throttling_and_server_errors_are_retried_then_answered() -> None:
    answers = [reply(429, b"slow down"), reply(503, b"busy"), reply(200, b'{"quotas": []}')]
    with resource_manager(answers) as (url, seen):
        assert gcp_api.get_json(url + "/x", TOKEN, backoff=0.0) == {"quotas": []}
    assert len(seen) == 3


def test_a_refusal_is_not_retried_and_its_message_has_googles_reason_but_no_token_or_query() -> None:
    # Google's error model (cloud.google.com/apis/design/errors); this one echoes the token back.
    body = json.dumps(
        {
            "error": {
                "code": 403,
                "message": f"Required 'compute.regions.get' permission ({TOKEN})",
                "status": "PERMISSION_DENIED",
            }
        }
    ).encode()
    with resource_manager([reply(403, body)]) as (url, seen), pytest.raises(gcp_api.GoogleApiError) as caught:
        gcp_api.get_json(url + "/compute/v1/projects/p/regions/r?fields=quotas", TOKEN, backoff=0.0)
    assert len(seen) == 1
    text = str(caught.value)
    assert "HTTP 403: PERMISSION_DENIED: Required 'compute.regions.get' permission ([token])" in text
    assert "fields=" not in text, "the query string is left out of messages"
    assert TOKEN not in text


def test_a_refusal_that_is_not_googles_json_is_shown_bounded_on_one_line() -> None:
    body = ("<html>\n" + "x" * 5000 + TOKEN).encode()
    with resource_manager([reply(400, body)]) as (url, _), pytest.raises(gcp_api.GoogleApiError) as caught:
        gcp_api.get_json(url, TOKEN)
    text = str(caught.value)
    assert "\n" not in text
    assert len(text) < web.MAX_DETAIL_CHARS + 200
    assert TOKEN not in text


def test_the_answer_size_is_bounded() -> None:
    big = b'{"quotas": [' + b"0," * 600 + b"0]}"
    with (
        resource_manager([reply(200, big)]) as (url, _),
        pytest.raises(gcp_api.GoogleApiError, match="over 1000 bytes"),
    ):
        gcp_api.get_json(url, TOKEN, max_bytes=1000)


def test_each_try_is_bounded_in_time_and_the_tries_in_number() -> None:
    with resource_manager([stall(2.0)]) as (url, seen), pytest.raises(gcp_api.GoogleApiError) as caught:
        gcp_api.get_json(url, TOKEN, timeout=0.2, attempts=2, backoff=0.0)
    assert "after 2 tries: timed out" in str(caught.value)
    assert len(seen) == 2


def test_an_answer_that_is_not_json_is_an_error() -> None:
    with resource_manager([reply(200, b"<html>")]) as (url, _), pytest.raises(gcp_api.GoogleApiError, match="not JSON"):
        gcp_api.get_json(url, TOKEN)


@pytest.mark.parametrize("body", [b"{}", b'{"quotas": []}', b"[]"])
def test_a_region_answered_without_quotas_is_an_error_not_an_empty_judgement(
    body: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """regions.get fails open when the quota information is unavailable: judging against nothing passes all."""
    with resource_manager([reply(200, body)]) as (url, _):
        monkeypatch.setattr(gcp_api, "ENDPOINT", url)
        with pytest.raises(gcp_api.GoogleApiError, match="without its quotas"):
            gcp_api.compute_region_quotas("p", "us-central1", TOKEN)


def test_malformed_quota_entries_are_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    entries = [
        {"metric": "CPUS", "limit": 24, "usage": 2.5},
        {"metric": "GPUS", "limit": "many", "usage": 0},
        {"limit": 1, "usage": 0},
        {"metric": "FLAG", "limit": True, "usage": 0},
        "CPUS",
        {"metric": "PREEMPTIBLE_CPUS"},  # zeros left out
    ]
    with resource_manager([reply(200, json.dumps({"quotas": entries}).encode())]) as (url, _):
        monkeypatch.setattr(gcp_api, "ENDPOINT", url)
        quotas = gcp_api.compute_region_quotas("p", "us-central1", TOKEN)
    assert [(q.metric, q.limit, q.usage) for q in quotas] == [("CPUS", 24.0, 2.5), ("PREEMPTIBLE_CPUS", 0.0, 0.0)]
