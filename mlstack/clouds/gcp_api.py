"""Bounded reads from Google Cloud APIs that no pulumi-gcp function offers: a region's Compute Engine quotas.

Pure (no Pulumi SDK): the GKE target calls these during preview and up with the deployer's own OAuth access
token (pulumi-gcp's ``organizations.get_client_config().access_token``), before it creates anything. Each call
is bounded in time, tries and answer size; an error never carries the token, nor the URL's query string.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable
from typing import Any

from mlstack import web
from mlstack.quota import Quota

ENDPOINT = "https://compute.googleapis.com"
TIMEOUT_SECONDS = 20.0
ATTEMPTS = 3
# A region's quotas are about a hundred {metric, limit, usage} entries, a few KiB; the fields mask below keeps
# the rest of the Region resource out of the answer.
MAX_ANSWER_BYTES = 256 * 1024
# "To decrease latency for this method, you can optionally omit any unneeded information from the response by
# using a field mask ... set your request's fields query parameter to only include the fields you need"
# (Compute Engine API, regions.get: cloud.google.com/compute/docs/reference/rest/v1/regions/get).
REGION_FIELDS = "quotas"


class GoogleApiError(Exception):
    """A Google API did not answer what was asked; the message says why (never the token)."""


def get_json(  # noqa: PLR0913 - the bounds are keyword-only, for the tests to turn
    url: str,
    token: str,
    *,
    timeout: float = TIMEOUT_SECONDS,
    attempts: int = ATTEMPTS,
    backoff: float = 1.0,
    max_bytes: int = MAX_ANSWER_BYTES,
) -> Any:
    """GET ``url`` with an OAuth bearer token and parse its JSON, bounded (mlstack.web); retried on 429, 5xx and
    network errors only; GoogleApiError otherwise."""
    return web.get_json(url, token, GOOGLE, timeout=timeout, attempts=attempts, backoff=backoff, max_bytes=max_bytes)


def _detail(raw: bytes, token: str) -> str:
    """A refusal's reason: ``error.status: error.message`` where the answer has Google's shape, else its text.

    Google answers a refusal with ``{"error": {"code", "message", "status"}}`` (cloud.google.com/apis/design/
    errors, "Error model").
    """
    text = raw.decode("utf-8", "replace")
    try:
        answer = json.loads(text)
    except ValueError:
        answer = None
    error = answer.get("error") if isinstance(answer, dict) else None
    if isinstance(error, dict):
        text = ": ".join(str(error[key]) for key in ("status", "message") if error.get(key)) or text
    return web.blanked(text, token)


GOOGLE = web.Service("Google", GoogleApiError, _detail)


def compute_region_quotas(project: str, region: str, token: str) -> list[Quota]:
    """The Compute Engine quotas of ``region`` in ``project``: each metric's limit and current usage.

    regions.get, ``GET https://compute.googleapis.com/compute/v1/projects/{project}/regions/{region}``
    (cloud.google.com/compute/docs/reference/rest/v1/regions/get); the Region resource's ``quotas[]`` holds
    ``{metric, limit, usage, owner}``, limit and usage as doubles (cloud.google.com/compute/docs/reference/rest/
    v1/regions, and the client libraries' Quota class: "[Output Only] Quota limit for this metric", "[Output
    Only] Current usage of this metric"). Project-wide quotas (GPUS_ALL_REGIONS, CPUS_ALL_REGIONS) are not
    in a region's answer. regions.get "fails if the quota information is unavailable for the region" only
    when the organization policy compute.requireBasicQuotaInResponse is enforced; otherwise it answers
    without it (Google.Cloud.Compute.V1 RegionsClient.Get): that answer is an error here, since judging
    against nothing would pass everything.
    """
    path = f"/compute/v1/projects/{urllib.parse.quote(project, safe='')}/regions/{urllib.parse.quote(region, safe='')}"
    answer = get_json(f"{ENDPOINT}{path}?fields={REGION_FIELDS}", token)
    entries = answer.get("quotas") if isinstance(answer, dict) else None
    if not isinstance(entries, list) or not entries:
        raise GoogleApiError(
            f"Compute Engine answered region {region} of project {project} without its quotas "
            "(it leaves them out when the quota information is unavailable)"
        )
    return [quota for entry in entries if (quota := _quota(entry)) is not None]


def _quota(entry: object) -> Quota | None:
    """One ``quotas[]`` entry; None for one without a metric name or with a limit or usage that is not a number.

    An absent limit or usage is zero: the client libraries generate the Quota message from a proto, whose
    JSON form may leave a zero out.
    """
    if not isinstance(entry, dict):
        return None
    metric, limit, usage = entry.get("metric"), _number(entry.get("limit", 0)), _number(entry.get("usage", 0))
    if not isinstance(metric, str) or not metric or limit is None or usage is None:
        return None
    return Quota(metric, limit, usage, metric)


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


# What the program calls. The offline harness (tools/harness.py) puts its own answer here while it runs a
# stack, as it answers the providers' invokes.
region_quotas: Callable[[str, str, str], list[Quota]] = compute_region_quotas
