"""Entra ID access tokens exchanged for an Azure Container Registry refresh token.

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
about three hours. Owner, Contributor and AcrPush on the registry may push with it.

Which access token: the program offers two, tried in the order given, the
ACR-audience one first and the ARM-audience one as the fallback.

- An ACR-audience token (scope https://containerregistry.azure.net/.default) is
  accepted whatever the registry's ``policies.azureADAuthenticationAsArmPolicy``.
- An ARM-audience token is accepted only while that policy is enabled, its
  default; disabled, the registry answers 401 (learn.microsoft.com/azure/
  container-registry/container-registry-disable-authentication-as-arm;
  MicrosoftDocs/azure-docs PR #113429). The built-in Azure Policy "Container
  registries should have ARM audience token authentication disabled"
  (42781ec6-6127-4c30-bdfa-fb423a0047d3, Audit or Deny) asks for disabled, and
  its Modify twin (785596ed-054f-41bc-aaec-7f3d0ba05725) writes it.
- `az acr login` now always asks for the ACR audience (Azure/azure-cli PR #31798,
  "Enforce using acr audience in aad token acquisition"), as Flux does
  (fluxcd/pkg PR #1130). The ARM-audience token stays as the fallback where an
  ACR-audience one cannot be obtained (the token request failed) or the
  registry refuses it for another reason.

The next token is tried only when the registry refuses one (HTTP 4xx) or it was
not obtained: an unreachable registry or a malformed answer would meet the next
token the same way. Each exchange is bounded in time, tries and answer size, and
no error carries a token. Repository-scoped ACR tokens were the alternative, but
pulumi-azure-native cannot generate their passwords (pulumi/pulumi-azure-native
#3099, #2500).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus

from mlstack import web

USERNAME = "00000000-0000-0000-0000-000000000000"
# The audience `az acr login` asks for (Azure/azure-cli PR #31798; its _constants.py
# ACR_AUDIENCE_RESOURCE_NAME = "containerregistry"), the same in every cloud
# (Azure/azure-sdk-for-net #34785). No trailing slash: pulumi-azure-native's
# getClientToken appends "/.default" to the endpoint it is given (provider/pkg/provider/provider.go).
ACR_AUDIENCE = "https://containerregistry.azure.net"
# What getClientToken asks for without an endpoint in the public cloud: "Defaults to the
# endpoint of Azure Resource Manager" (pulumi-azure-native authorization/get_client_token.py).
ARM_AUDIENCE = "https://management.azure.com"
TIMEOUT_SECONDS = 30.0
ATTEMPTS = 3  # a registry seconds old may not answer at once
MAX_ANSWER_BYTES = 64 * 1024  # a refresh token is a few KiB
MAX_DETAIL_CHARS = web.MAX_DETAIL_CHARS  # a reason shown is cut there (mlstack.web.blanked)

_AUDIENCE_NAMES = {ACR_AUDIENCE: "ACR-audience", ARM_AUDIENCE: "ARM-audience"}
_NO_DETAIL = "no detail"
_POLICY_ADVICE = (
    "An ARM-audience token is refused when the registry's azureADAuthenticationAsArmPolicy is disabled "
    '(Azure Policy "Container registries should have ARM audience token authentication disabled", '
    "42781ec6-6127-4c30-bdfa-fb423a0047d3, or its Modify policy 785596ed-054f-41bc-aaec-7f3d0ba05725, "
    "which writes disabled); the ACR-audience one is refused unless the account running `pulumi up` has "
    "Owner, Contributor or AcrPush on the registry. Grant it one of those roles, or set mlstack:acrAdminUser"
)


class AcrTokenError(Exception):
    """The registry would not give a refresh token; the message says why (never a token)."""


@dataclass(frozen=True)
class AudienceToken:
    """An Entra ID access token for ``audience``, offered to the exchange.

    ``token`` is empty when it could not be obtained, and ``unavailable`` then says
    why. The token is left out of the repr, so that no traceback or log shows it.
    """

    audience: str
    token: str = field(repr=False)
    unavailable: str = ""


class _Refused(Exception):
    """The registry refused one token (HTTP 4xx); asking again with it would not change that."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(status, detail)
        self.status = status
        self.detail = detail


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
    tokens: Sequence[AudienceToken],
    *,
    scheme: str = "https",
    timeout: float = TIMEOUT_SECONDS,
    attempts: int = ATTEMPTS,
    backoff: float = 2.0,
) -> str:
    """A refresh token of ``login_server`` for the first of ``tokens`` (in order) that the registry takes.

    Each exchange is bounded in time, tries and answer size; the next token is tried
    only after a refusal (HTTP 4xx) or when this one was not obtained.
    """
    if not tokens:
        raise ValueError("the token exchange needs at least one access token")
    secrets = [offered.token for offered in tokens if offered.token]
    outcomes: list[str] = []
    for offered in tokens:
        label = _label(offered.audience)
        if not offered.token:
            why = web.blanked(offered.unavailable, *secrets) or _NO_DETAIL
            outcomes.append(f"{label}: not obtained ({why})")
            continue
        try:
            return _exchange_one(
                login_server, tenant, offered, secrets, scheme=scheme, timeout=timeout, attempts=attempts,
                backoff=backoff,
            )  # fmt: skip
        except _Refused as refused:
            outcomes.append(f"{label}: HTTP {refused.status}: {refused.detail or _NO_DETAIL}")
    raise AcrTokenError(
        f"the registry {login_server} refused the Entra ID token exchange; {'; '.join(outcomes)}. {_POLICY_ADVICE}"
    )


def _exchange_one(  # noqa: PLR0913 - as refresh_token
    login_server: str,
    tenant: str,
    offered: AudienceToken,
    secrets: Sequence[str],
    *,
    scheme: str,
    timeout: float,
    attempts: int,
    backoff: float,
) -> str:
    url = f"{scheme}://{login_server}/oauth2/exchange"
    body = urllib.parse.urlencode(
        {"grant_type": "access_token", "service": login_server, "tenant": tenant, "access_token": offered.token}
    ).encode()
    last = ""
    for attempt in range(attempts):
        try:
            raw = _post(url, body, timeout)
        except urllib.error.HTTPError as e:
            detail = _detail(e.read(MAX_ANSWER_BYTES), secrets)
            if e.code < HTTPStatus.INTERNAL_SERVER_ERROR:  # a refusal does not change by asking again
                raise _Refused(e.code, detail) from None
            last = f"HTTP {e.code}: {detail or _NO_DETAIL}"
        except (urllib.error.URLError, TimeoutError, OSError) as e:
            last = web.blanked(str(getattr(e, "reason", e)), *secrets)
        else:
            return _token_from(raw, login_server)
        if attempt + 1 < attempts:
            time.sleep(backoff * 2**attempt)
    raise AcrTokenError(
        f"cannot reach the registry {login_server} for the token exchange ({_label(offered.audience)}) "
        f"after {attempts} tries: {last}"
    )


def _label(audience: str) -> str:
    return f"{_AUDIENCE_NAMES.get(audience, 'the')} token ({audience})"


def _detail(raw: bytes, secrets: Sequence[str]) -> str:
    """The registry's reason, bounded and without a token: its ``errors[]`` code and message where
    the answer has that shape (the Docker registry error format), else its text."""
    text = raw.decode("utf-8", "replace")
    try:
        answer = json.loads(text)
    except ValueError:
        answer = None
    errors = answer.get("errors") if isinstance(answer, dict) else None
    if isinstance(errors, list):
        reasons = [
            ": ".join(str(entry[key]) for key in ("code", "message") if entry.get(key))
            for entry in errors
            if isinstance(entry, dict)
        ]
        text = "; ".join(reason for reason in reasons if reason) or text
    return web.blanked(text, *secrets)


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
exchange: Callable[[str, str, Sequence[AudienceToken]], str] = refresh_token
