"""TLS in whole stacks: the stack's own CA by default, a certificate the user brings in secret config, the
certificate naming the address clients use, no private key outside a secret, and the outputs that let a
client verify the server.

One component's objects and their order: tests/components/test_workloads.py; the names, lifetimes and
PEM checks alone: tests/pure/test_tls.py.
"""

from __future__ import annotations

import importlib.metadata
from typing import Any

import pytest

from stack import config
from tests.support import DEPLOYMENT, SECRET, SERVICE, STACKS, CountingMocks, RunStack, SharedRun, plain_strings
from tools import harness

CERT_REQUEST = "tls:index/certRequest:CertRequest"
CA = "tls:index/selfSignedCert:SelfSignedCert"
CLOUD_STACKS = ("dev", "gke")  # their load balancers get an address: the mocks give one, as the clouds do


@pytest.fixture(scope="module")
def own() -> dict[str, str]:
    """A certificate and key as a user brings them (secret config), the same for every test of the module."""
    from tests.support import certificate_and_key

    certificate, key = certificate_and_key("ml.example.com")
    return {"tlsCertificate": certificate, "tlsPrivateKey": key}


def _version(package: str) -> tuple[int, ...]:
    return tuple(int(part) for part in importlib.metadata.version(package).split(".")[:3])


# --- by default: the stack's own CA -----------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_the_ca_is_exported_in_the_clear_and_the_curl_trusts_it(
    shipped: dict[str, harness.StackRun], stack: str
) -> None:
    result = shipped[stack]
    ca = result.one(CA)
    assert result.exports["caCertificate"] == ca.outputs["certPem"]
    assert "caCertificate" not in result.secret_exports, "the CA certificate is public: clients need it"
    assert result.exports["url"].startswith("https://")
    curl = result.exports["curl"]
    assert "pulumi stack output caCertificate > mlstack-ca.pem" in curl
    assert "curl --cacert mlstack-ca.pem " in curl
    assert curl.endswith(f"{result.exports['url']}/v2/models/digits")
    assert "--insecure" not in curl, "the curl must verify the server"
    assert "-k " not in curl, "the curl must verify the server"


@pytest.mark.parametrize("stack", CLOUD_STACKS)
def test_on_a_cloud_the_certificate_names_the_load_balancers_address(
    shipped: dict[str, harness.StackRun], stack: str
) -> None:
    result = shipped[stack]
    request = result.one(CERT_REQUEST)
    assert result.exports["url"] == f"https://{harness.MOCK_LB_IP}", "a URL on the default port 443 has no port"
    assert harness.MOCK_LB_IP in request.inputs["ipAddresses"], "the URL's address is not on the certificate"
    assert "127.0.0.1" in request.inputs["ipAddresses"]
    assert "localhost" in request.inputs["dnsNames"]
    assert "mlstack.mlstack.svc.cluster.local" in request.inputs["dnsNames"]
    assert result.one(SERVICE, "-service").urn in request.dependencies


def test_on_kind_the_certificate_names_localhost_for_the_port_forward(shipped: dict[str, harness.StackRun]) -> None:
    result = shipped["local"]
    request = result.one(CERT_REQUEST)
    assert request.inputs["ipAddresses"] == ["127.0.0.1"]
    assert request.inputs["dnsNames"][0] == "localhost"
    assert result.exports["url"] == "https://localhost:8443"
    assert result.exports["portForward"].endswith("port-forward service/mlstack 8443:443")


@pytest.mark.parametrize("stack", STACKS)
def test_no_private_key_is_in_plain_text_in_any_input_output_or_export(
    shipped: dict[str, harness.StackRun], stack: str
) -> None:
    result = shipped[stack]
    keys = [harness.plain(r.outputs["privateKeyPem"]) for r in result.of_type("tls:index/privateKey:PrivateKey")]
    assert len(keys) == 2
    for registration in result.registrations.values():
        for text in plain_strings(registration.inputs) + plain_strings(registration.outputs):
            assert "PRIVATE KEY" not in text, f"{registration.name} ({registration.type}) holds a key in plain text"
    for name, value in result.exports.items():
        if name not in result.secret_exports:
            assert "PRIVATE KEY" not in str(value), f"output {name} holds a private key"
            assert not any(key in str(value) for key in keys), f"output {name} holds a private key"


@pytest.mark.parametrize("stack", STACKS)
def test_the_serving_pods_get_the_tls_secret(shipped: dict[str, harness.StackRun], stack: str) -> None:
    result = shipped[stack]
    secret = harness.manifest(result.one(SECRET, "-tls"))
    assert secret["type"] == "kubernetes.io/tls"
    assert (
        secret["stringData"]["tls.crt"]
        == result.one("tls:index/locallySignedCert:LocallySignedCert").outputs["certPem"]
    )
    volumes = harness.manifest(result.one(DEPLOYMENT))["spec"]["template"]["spec"]["volumes"]
    assert secret["metadata"]["name"] in {(v.get("secret") or {}).get("secretName") for v in volumes}


# --- a certificate the user brings ---------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_a_certificate_from_secret_config_is_served_and_no_ca_is_made(
    shared_run: SharedRun, own: dict[str, str], stack: str
) -> None:
    result = shared_run(stack, secrets=own)
    assert [r.name for r in result.registrations.values() if r.type.startswith("tls:")] == []
    assert "caCertificate" not in result.exports, "no CA of the stack's own to export"
    assert "--cacert" not in result.exports["curl"], "curl trusts the user's certificate as the system does"
    secret = result.one(SECRET, "-tls")
    assert harness.is_secret_value(secret.inputs["stringData"]), "the key must reach the Secret as a secret"
    assert harness.plain(secret.inputs["stringData"]) == {
        "tls.crt": own["tlsCertificate"],
        "tls.key": own["tlsPrivateKey"],
    }
    for registration in result.registrations.values():
        for text in plain_strings(registration.inputs) + plain_strings(registration.outputs):
            assert "PRIVATE KEY" not in text, f"{registration.name} holds the key in plain text"
    for name, value in result.exports.items():
        if name not in result.secret_exports:
            assert own["tlsPrivateKey"] not in str(value), f"output {name} holds the key"


def _config_problems(overrides: dict[str, Any], secrets: dict[str, str]) -> list[str]:
    """config.load's problems for the local stack with ``secrets`` set as `pulumi config set --secret` sets them."""
    values, secret_keys = harness.load_stack_config("local", overrides, secrets)
    mocks = CountingMocks()
    with pytest.raises(config.ConfigError) as caught:
        harness.run(config.load, values, secret_keys, mocks=mocks)
    assert mocks.created == []
    return caught.value.problems


@pytest.mark.parametrize(
    ("given", "missing"), [("tlsCertificate", "tlsPrivateKey"), ("tlsPrivateKey", "tlsCertificate")]
)
def test_a_certificate_without_its_key_or_a_key_without_its_certificate_is_refused(
    own: dict[str, str], given: str, missing: str
) -> None:
    found = _config_problems({}, {given: own[given]})
    (line,) = [p for p in found if p.startswith(f"mlstack:{missing} ")]
    assert f"mlstack:{missing} must be set when mlstack:{given} is" in line, line
    assert "come as a pair" in line
    assert all(own[given] not in p for p in found), "a secret value is echoed"


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("tlsCertificate", "this is not a certificate", "must hold at least one PEM certificate"),
        (
            "tlsPrivateKey",
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
            "exactly one PEM private key",
        ),
    ],
)
def test_a_value_that_is_not_pem_is_refused_without_echoing_it(
    own: dict[str, str], key: str, value: str, message: str
) -> None:
    found = _config_problems({}, {**own, key: value})
    (line,) = [p for p in found if p.startswith(f"mlstack:{key} ")]
    assert message in line, line
    assert "(the value is not shown here)" in line
    assert value not in line


def test_a_private_key_stored_in_plain_text_is_refused(own: dict[str, str]) -> None:
    found = _config_problems({"tlsPrivateKey": own["tlsPrivateKey"]}, {"tlsCertificate": own["tlsCertificate"]})
    (line,) = [p for p in found if p.startswith("mlstack:tlsPrivateKey ")]
    assert "stored in plain text" in line
    assert "pulumi config set --secret tlsPrivateKey" in line
    assert all("PRIVATE KEY" not in p for p in found)


def test_a_bad_pair_fails_the_whole_stack_before_any_resource(run_stack: RunStack, own: dict[str, str]) -> None:
    mocks = CountingMocks()
    with pytest.raises(config.ConfigError, match=r"mlstack:tlsPrivateKey must be set when mlstack:tlsCertificate"):
        run_stack("gke", secrets={"tlsCertificate": own["tlsCertificate"]}, mocks=mocks)
    assert mocks.created == []


# --- what the order and the renewal rely on ---------------------------------------------------------


def test_the_providers_are_the_versions_the_order_and_the_renewal_rely_on() -> None:
    # Service -> certificate -> Secret -> Deployment needs a Service that is ready before any pod exists:
    # pulumi-kubernetes waits on one whose selector targets no pod only since 4.17.0 ("Services with
    # selectors targeting 0 Pods will no longer hang indefinitely", CHANGELOG). Before, `pulumi up` hangs.
    assert _version("pulumi_kubernetes") >= (4, 17, 0)
    # Renewal on `pulumi up` inside early_renewal_hours needs the provider's plan in pulumi's diff:
    # pulumi-tls 5.x bridges terraform-provider-tls through the Plugin Framework (provider/resources.go),
    # whose diff keeps the plan's RequiresReplace (pulumi-terraform-bridge pkg/pf/tfbridge/provider_diff.go);
    # pulumi/pulumi-tls#39 reported no renewal on the older bridge.
    assert _version("pulumi_tls") >= (5, 0, 0)
