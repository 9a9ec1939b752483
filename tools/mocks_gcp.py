"""Mock answers for what the GKE target reads from pulumi-gcp: computed outputs and invokes.

Registered in ``tools.harness.default_mocks``. Inputs arrive with wire
(camelCase) names; answers are given the same way.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from pulumi.runtime import mocks as pulumi_mocks

from mlstack import catalogue
from mlstack.clouds import gcp, gcp_api
from mlstack.quota import Quota

MOCK_PROJECT_NUMBER = "123456789012"
MOCK_ACCESS_TOKEN = "ya29.mock-access-token"  # noqa: S105 - a test fixture
MOCK_CLUSTER_ENDPOINT = "192.0.2.20"
MOCK_CLUSTER_CA = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nmock\n-----END CERTIFICATE-----\n").decode()


def _cluster(args: pulumi_mocks.MockResourceArgs) -> dict[str, Any]:
    # pulumi-gcp auto-names the cluster from the resource name plus a suffix.
    return {
        "name": args.inputs.get("name") or f"{args.name}-1a2b3c4",
        "endpoint": MOCK_CLUSTER_ENDPOINT,
        "masterAuth": {"clusterCaCertificate": MOCK_CLUSTER_CA},
    }


def _node_pool(args: pulumi_mocks.MockResourceArgs) -> dict[str, Any]:
    return {"name": args.inputs.get("name") or f"{args.name}-5d6e7f8"}


def _account(args: pulumi_mocks.MockResourceArgs) -> dict[str, Any]:
    email = f"{args.inputs['accountId']}@{args.inputs['project']}.iam.gserviceaccount.com"
    # name: "The fully-qualified name of the service account", what an IAM member on it takes as
    # service_account_id (pulumi_gcp serviceaccount/account.py, serviceaccount/iam_member.py).
    name = f"projects/{args.inputs['project']}/serviceAccounts/{email}"
    return {"email": email, "member": f"serviceAccount:{email}", "name": name}


def _repository(args: pulumi_mocks.MockResourceArgs) -> dict[str, Any]:
    inputs = args.inputs
    location, repository = inputs["location"], inputs["repositoryId"]
    return {
        "name": repository,
        "id": f"projects/{inputs['project']}/locations/{location}/repositories/{repository}",
    }


def _bucket(args: pulumi_mocks.MockResourceArgs) -> dict[str, Any]:
    name = args.inputs.get("name") or f"{args.name}-9a8b7c6"
    return {"name": name, "url": f"gs://{name}"}


OUTPUTS: dict[str, Callable[[pulumi_mocks.MockResourceArgs], dict[str, Any]]] = {
    "gcp:container/cluster:Cluster": _cluster,
    "gcp:container/nodePool:NodePool": _node_pool,
    "gcp:serviceaccount/account:Account": _account,
    "gcp:artifactregistry/repository:Repository": _repository,
    "gcp:storage/bucket:Bucket": _bucket,
}


def _client_config(_args: pulumi_mocks.MockCallArgs) -> dict[str, Any]:
    return {"accessToken": MOCK_ACCESS_TOKEN, "id": "mock", "project": "", "region": "", "zone": ""}


def _project(args: pulumi_mocks.MockCallArgs) -> dict[str, Any]:
    project_id = args.args.get("projectId") or "mock-project"
    return {
        "projectId": project_id,
        "number": MOCK_PROJECT_NUMBER,
        "name": project_id,
        "id": f"projects/{project_id}",
    }


class GcpQuotas:
    """Stands in for mlstack.clouds.gcp_api.compute_region_quotas: by default an offline run, which checks nothing and
    says so; given recorded quotas (or an exception), answers with them. Records the (project, region, token)."""

    def __init__(self, answer: list[Quota] | Exception | None = None) -> None:
        self.calls: list[tuple[str, str, str]] = []
        self.answer = answer

    def __call__(self, project: str, region: str, token: str) -> list[Quota]:
        self.calls.append((project, region, token))
        if self.answer is None:
            raise gcp_api.GoogleApiError("an offline run: no project to ask")
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def _engine_versions(_args: pulumi_mocks.MockCallArgs) -> dict[str, Any]:
    """The engine's serverConfig as the catalogue has it today: offline, the catalogue decides."""
    standard = gcp.CLOUD.offered_minors(catalogue.today())
    extended = gcp.CLOUD.offered_minors(catalogue.today(), extended=True)
    default = f"{gcp.GKE_DEFAULT_MINOR}.8-gke.1036000"
    newest = {"standard": f"{standard[-1]}.3-gke.1000000", "extended": f"{extended[-1]}.3-gke.1000000"}
    return {
        "validMasterVersions": [f"{minor}.3-gke.1000000" for minor in reversed(standard)],
        "releaseChannelDefaultVersion": dict.fromkeys(gcp.GKE_RELEASE_CHANNELS, default),
        "releaseChannelLatestVersion": {
            channel: newest["extended" if channel == gcp.GKE_EXTENDED_CHANNEL else "standard"]
            for channel in gcp.GKE_RELEASE_CHANNELS
        },
    }


CALLS: dict[str, Callable[[pulumi_mocks.MockCallArgs], dict[str, Any]]] = {
    "gcp:container/getEngineVersions:getEngineVersions": _engine_versions,
    "gcp:organizations/getClientConfig:getClientConfig": _client_config,
    "gcp:organizations/getProject:getProject": _project,
}
