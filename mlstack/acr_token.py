"""An Entra ID access token exchanged for an Azure Container Registry refresh token.

Pure (no Pulumi SDK): the AKS target calls ``exchange`` inside an apply, once
the registry exists, so that the image build pushes with credentials the
program obtained, not the user's `az acr login` (which cannot have run against
a registry created a minute earlier).

Azure/acr ``docs/AAD-OAuth.md`` ("Authenticating to ACR with an AAD token"):
``POST https://<registry>/oauth2/exchange``, form-encoded ``grant_type=access_token``,
``service=<login server>``, ``tenant`` and ``access_token``; the answer's
``refresh_token`` is the password of `docker login` with the user name
00000000-0000-0000-0000-000000000000 (learn.microsoft.com/azure/container-registry/
container-registry-authentication, "az acr login with --expose-token"), valid for
about three hours. An ARM-audience token is accepted while the registry's
``azureADAuthenticationAsArmPolicy`` is enabled, its default. Owner, Contributor
and AcrPush on the registry may push with it. Repository-scoped ACR tokens were
the alternative, but pulumi-azure-native cannot generate their passwords
(pulumi/pulumi-azure-native#3099, #2500).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from http import HTTPStatus

USERNAME = "00000000-0000-0000-0000-000000000000"
TIMEOUT_SECONDS = 30.0
ATTEMPTS = 3  # a registry seconds old may not answer at once
MAX_ANSWER_BYTES = 64 * 1024  # a refresh token is a few KiB
MAX_DETAIL_BYTES = 512


class AcrTokenError(Exception):
    """The registry would not give a refresh token; the message says why (never the token)."""


def _post(url: str, body: bytes, timeout: float) -> bytes:
    request = urllib.request.Request(  # noqa: S310 - https to the registry, or a test's loopback
        url, data=body, method="POST", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - as above
        data: bytes = response.read(MAX_ANSWER_BYTES + 1)
    return data


def refresh_token(  # noqa: PLR0913 - the bounds are keyword-only, for the tests to turn
    login_server: str,
    tenant: str,
    access_token: str,
    *,
    scheme: str = "https",
    timeout: float = TIMEOUT_SECONDS,
    attempts: int = ATTEMPTS,
    backoff: float = 2.0,
) -> str:
    """Exchange ``access_token`` for a refresh token of ``login_server``; bounded in time, tries and size."""
    url = f"{scheme}://{login_server}/oauth2/exchange"
    body = urllib.parse.urlencode(
        {"grant_type": "access_token", "service": login_server, "tenant": tenant, "access_token": access_token}
    ).encode()
    last = ""
    for attempt in range(attempts):
        try:
            raw = _post(url, body, timeout)
        except urllib.error.HTTPError as e:
            detail = e.read(MAX_DETAIL_BYTES).decode("utf-8", "replace").strip()
            if e.code < HTTPStatus.INTERNAL_SERVER_ERROR:  # a refusal does not change by asking again
                raise AcrTokenError(
                    f"the registry {login_server} refused the Entra ID token exchange (HTTP {e.code}: {detail}); "
                    "the account running `pulumi up` needs Owner, Contributor or AcrPush on it, "
                    "or set mlstack:acrAdminUser"
                ) from None
            last = f"HTTP {e.code}: {detail}"
        except (urllib.error.URLError, TimeoutError, OSError) as e:
            last = str(getattr(e, "reason", e))
        else:
            return _token_from(raw, login_server)
        if attempt + 1 < attempts:
            time.sleep(backoff * 2**attempt)
    raise AcrTokenError(
        f"cannot reach the registry {login_server} for the token exchange after {attempts} tries: {last}"
    )


def _token_from(raw: bytes, login_server: str) -> str:
    if len(raw) > MAX_ANSWER_BYTES:
        raise AcrTokenError(
            f"the registry {login_server} answered the token exchange with over {MAX_ANSWER_BYTES} bytes"
        )
    try:
        answer = json.loads(raw)
    except ValueError:
        answer = None
    token = answer.get("refresh_token") if isinstance(answer, dict) else None
    if not isinstance(token, str) or not token:
        raise AcrTokenError(f"the registry {login_server} answered the token exchange without a refresh_token")
    return token


# What the program calls. The offline harness (tools/harness.py) puts its own
# answer here while it runs a stack, as it answers the providers' invokes.
exchange: Callable[[str, str, str], str] = refresh_token
