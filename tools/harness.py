"""Run mlstack, or one component, offline under Pulumi's mocks.

Shared by the tests and the offline render tool; never imported by the program.

- Config is loaded the way the CLI does it: ``Pulumi.yaml`` defaults, then
  ``Pulumi.<stack>.yaml``, then the caller's overrides, all as strings, with
  the declared types checked.
- A recording monitor keeps every registration: type, name, parent,
  dependencies, provider, options, inputs (secrets still marked) and the
  mocked outputs. A duplicate URN fails, as the engine would.
- The mocks answer the provider-computed outputs the program reads
  (auto-names, a LoadBalancer address, a generated password, keys and
  certificates); an invoke with no answer fails loudly instead of returning
  nothing.
- As the engine does, the outputs a resource is registered with as
  ``additional_secret_outputs`` (an SDK marks a generated key or password so)
  come back secret, so a key the program passes on stays secret in the next
  resource's inputs, and the recorded outputs carry the same marks.
- ``kubernetes_manifests`` turns the recorded Kubernetes objects into plain
  manifests, and ``validate_manifests`` checks each against the official
  schema of a Kubernetes version in strict mode.
- What it needs of the SDK beyond its public testing API (the secret marker,
  running a program to completion, the resets between runs) comes from
  ``tools/pulumi_internals.py`` alone, which names each and checks they exist.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import runpy
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pulumi
import yaml
from pulumi.runtime import mocks as pulumi_mocks

from mlstack.clouds import azure_acr_token, azure_api, azure_prices, gcp_api
from tools import crds, mocks_azure, mocks_gcp, mocks_image, mocks_tls, pulumi_internals

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "mlstack"
SECRET_SIG = pulumi_internals.SECRET_SIG_KEY
SECRET_VALUE_SIG = pulumi_internals.SECRET_SIG
REDACTED = "<redacted>"

# Answers for outputs that the provider computes and the program reads.
MOCK_LB_IP = "203.0.113.10"
MOCK_GENERATED_PASSWORD = "mock-generated-password-0123456789ab"  # noqa: S105 - a test fixture


class HarnessError(Exception):
    """The program did something the real engine would refuse."""


# --- config, loaded as the CLI loads it ----------------------------------------


def _to_config_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


_TYPE_CHECKS: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
}


def project_declarations(root: Path = ROOT) -> dict[str, dict[str, Any]]:
    """The config keys Pulumi.yaml declares, fully qualified, with their declarations."""
    project = yaml.safe_load((root / "Pulumi.yaml").read_text(encoding="utf-8"))
    declared: dict[str, dict[str, Any]] = {}
    for key, decl in (project.get("config") or {}).items():
        full = key if ":" in key else f"{project['name']}:{key}"
        declared[full] = decl if isinstance(decl, dict) else {"default": decl}
    return declared


def load_stack_config(
    stack: str,
    overrides: Mapping[str, Any] | None = None,
    secrets: Mapping[str, str] | None = None,
    root: Path = ROOT,
) -> tuple[dict[str, str], list[str]]:
    """Config values (strings) and secret keys for ``stack``, as the CLI would pass them."""
    declared = project_declarations(root)
    values: dict[str, Any] = {k: d["default"] for k, d in declared.items() if "default" in d}
    stack_file = root / f"Pulumi.{stack}.yaml"
    stack_values: dict[str, Any] = {}
    if stack_file.exists():
        stack_values = (yaml.safe_load(stack_file.read_text(encoding="utf-8")) or {}).get("config") or {}
    for key, value in {**stack_values, **(overrides or {})}.items():
        full = key if ":" in key else f"{PROJECT}:{key}"
        if isinstance(value, dict) and "secure" in value:
            raise HarnessError(f"{stack_file.name}: {full} is encrypted; pass it to the harness as a secret")
        decl = declared.get(full)
        if decl and "type" in decl and not _TYPE_CHECKS[decl["type"]](value):
            hint = ""
            if decl["type"] == "string" and isinstance(value, (int, float)) and not isinstance(value, bool):
                # YAML reads an unquoted 1.30 as the number 1.3: the digits the user wrote may be lost.
                hint = (
                    f"; YAML read it as the number {value!r}, which may have lost digits (an unquoted 1.30 "
                    'reads as 1.3): quote the value as you meant it, e.g. "1.30"'
                )
            raise HarnessError(f"{full} = {value!r} is not of the type Pulumi.yaml declares ({decl['type']}){hint}")
        values[full] = value
    secret_keys = []
    for key, value in (secrets or {}).items():
        full = key if ":" in key else f"{PROJECT}:{key}"
        values[full] = value
        secret_keys.append(full)
    return {k: _to_config_string(v) for k, v in values.items()}, secret_keys


FAKE_KUBECONFIG_TOKEN = "fake-token-for-offline-runs"  # noqa: S105 - a test fixture


def fake_kubeconfig(path: Path, context: str = "kind-mlstack") -> Path:
    """A kubeconfig for a kind-like cluster, so the local target can be built offline."""
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": context,
                "contexts": [{"name": context, "context": {"cluster": context, "user": context}}],
                "clusters": [{"name": context, "cluster": {"server": "https://127.0.0.1:6443"}}],
                "users": [{"name": context, "user": {"token": FAKE_KUBECONFIG_TOKEN}}],
            }
        ),
        encoding="utf-8",
    )
    return path


@contextmanager
def offline_kubeconfig(context: str = "kind-mlstack") -> Iterator[Path]:
    """A fake kubeconfig in ``KUBECONFIG`` for the duration, for the local target outside pytest."""
    previous = os.environ.get("KUBECONFIG")
    with tempfile.TemporaryDirectory(prefix="mlstack-kube-") as directory:
        path = fake_kubeconfig(Path(directory) / "config", context)
        os.environ["KUBECONFIG"] = str(path)
        try:
            yield path
        finally:
            if previous is None:
                os.environ.pop("KUBECONFIG", None)
            else:
                os.environ["KUBECONFIG"] = previous


# --- recording -----------------------------------------------------------------


@dataclass
class Registration:
    urn: str
    type: str
    name: str
    custom: bool
    parent: str
    dependencies: list[str]
    provider: str  # "<provider urn>::<id>" for custom resources, "" otherwise
    inputs: dict[str, Any]  # wire (camelCase) names; secrets still marked
    outputs: dict[str, Any] = field(default_factory=dict)
    custom_timeouts: dict[str, str] = field(default_factory=dict)
    ignore_changes: list[str] = field(default_factory=list)
    replace_on_changes: list[str] = field(default_factory=list)
    delete_before_replace: bool = False
    secret_outputs: list[str] = field(default_factory=list)  # additional_secret_outputs, wire names

    @property
    def provider_urn(self) -> str:
        return self.provider.rsplit("::", 1)[0] if self.provider else ""

    @property
    def is_kubernetes_object(self) -> bool:
        """An object of the Kubernetes API the provider applies whole: not a Helm release (the chart's own
        objects are Helm's to render), not a patch of an object something else owns."""
        return (
            self.type.startswith("kubernetes:")
            and not self.type.startswith("kubernetes:helm.sh/")
            and not self.type.endswith("Patch")
        )


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """A MockMonitor that records what the engine would see and refuses duplicate URNs."""

    def __init__(self, mocks: pulumi_mocks.Mocks) -> None:
        super().__init__(mocks)
        self.registrations: dict[str, Registration] = {}
        # Raised after the run, never inside the monitor: an exception there reaches the
        # program only through the resource's output futures, which nothing awaits once
        # the run has failed, so asyncio logged each one as "never retrieved" when it was
        # collected, after pytest's summary and into its closed capture streams.
        self.problems: list[str] = []
        # Registrations arrive on several threads at once: claim each URN under a lock.
        self._claimed: set[str] = set()
        self._lock = threading.Lock()

    def RegisterResource(self, request: Any) -> Any:
        urn = pulumi_internals.make_urn(self, request.parent, request.type, request.name)
        with self._lock:
            duplicate = urn in self._claimed
            self._claimed.add(urn)
            if duplicate:
                self.problems.append(f"duplicate resource URN {urn}: the engine refuses two resources with one name")
        response = super().RegisterResource(request)  # type: ignore[no-untyped-call]
        if duplicate:  # answered as the mocks would, not recorded: ``run`` raises the problem
            return response
        if request.type == "pulumi:pulumi:Stack":
            return response
        secret_outputs = list(request.additionalSecretOutputs)
        _mark_secret(response.object, secret_outputs)
        timeouts = request.customTimeouts
        phases = {"create": timeouts.create, "update": timeouts.update, "delete": timeouts.delete}
        self.registrations[urn] = Registration(
            urn=urn,
            type=request.type,
            name=request.name,
            custom=bool(request.custom),
            parent=request.parent,
            dependencies=list(request.dependencies),
            provider=request.provider,
            inputs=pulumi_internals.deserialize_properties(request.object),
            outputs=secret_marked(pulumi_internals.mocked_state(self, urn) or {}, secret_outputs),
            custom_timeouts={phase: value for phase, value in phases.items() if value},
            ignore_changes=list(request.ignoreChanges),
            replace_on_changes=list(request.replaceOnChanges),
            delete_before_replace=bool(request.deleteBeforeReplace),
            secret_outputs=secret_outputs,
        )
        return response


def _mark_secret(state: Any, keys: list[str]) -> None:
    """Wrap ``keys`` of a response's outputs (a protobuf Struct) in the wire's secret marker, as the
    engine does for a resource's additional_secret_outputs (a value already marked is left as it is)."""
    for key in keys:
        if key not in state.fields or _is_marked(state.fields[key]):
            continue
        marker = type(state)()
        marker.fields[SECRET_SIG].string_value = SECRET_VALUE_SIG
        marker.fields["value"].CopyFrom(state.fields[key])
        state.fields[key].struct_value.CopyFrom(marker)


def _is_marked(value: Any) -> bool:
    """Whether a protobuf Value already holds the secret marker."""
    return bool(value.WhichOneof("kind") == "struct_value" and SECRET_SIG in value.struct_value.fields)


def secret_marked(state: Mapping[str, Any], keys: list[str]) -> dict[str, Any]:
    """Recorded outputs as the engine stores them: ``keys`` (additional_secret_outputs) wrapped as secrets."""
    marked = dict(state)
    for key in keys:
        if key in marked and not is_secret_value(marked[key]):
            marked[key] = {SECRET_SIG: SECRET_VALUE_SIG, "value": marked[key]}
    return marked


# --- mocks ---------------------------------------------------------------------

OutputsFn = Callable[[pulumi_mocks.MockResourceArgs], dict[str, Any]]
CallFn = Callable[[pulumi_mocks.MockCallArgs], dict[str, Any]]


def _short_hash(*parts: str) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:8]


class StackMocks(pulumi_mocks.Mocks):
    """Provider answers for what the program reads; extend with ``outputs`` and ``calls``."""

    def __init__(
        self,
        outputs: Mapping[str, OutputsFn] | None = None,
        calls: Mapping[str, CallFn] | None = None,
        load_balancer_ip: str | None = MOCK_LB_IP,
        aks_versions: mocks_azure.AksVersions | None = None,
    ) -> None:
        self.outputs: dict[str, OutputsFn] = {
            "random:index/randomPassword:RandomPassword": lambda _a: {"result": MOCK_GENERATED_PASSWORD},
            **(outputs or {}),
        }
        self.calls: dict[str, CallFn] = dict(calls or {})
        self.load_balancer_ip = load_balancer_ip
        # The one read outside the providers besides the ACR exchange: AKS's list of versions
        # (mlstack.clouds.azure_api); by default the catalogue's answer for today.
        self.aks_versions = aks_versions or mocks_azure.AksVersions()
        # The clouds' quotas (mlstack.clouds.azure_api, mlstack.clouds.gcp_api): offline by default, checked by
        # nothing; a test gives recorded answers (tests/fixtures/quota/).
        self.azure_quotas = mocks_azure.AzureQuotas()
        self.gcp_quotas = mocks_gcp.GcpQuotas()
        # Azure's live retail prices (mlstack.clouds.azure_prices): none offline, so the price table decides.
        self.azure_prices = mocks_azure.AzurePrices()
        self.unanswered: list[str] = []

    def new_resource(self, args: pulumi_mocks.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        state = dict(args.inputs)
        if args.typ.startswith("kubernetes:") and "metadata" in state:
            metadata = dict(state.get("metadata") or {})
            if not metadata.get("name"):
                # pulumi-kubernetes auto-names from the resource name plus a random suffix.
                metadata["name"] = f"{args.name}-{_short_hash(args.typ, args.name)}"
            state["metadata"] = metadata
            if args.typ == "kubernetes:core/v1:Service":
                annotations = metadata.get("annotations") or {}
                if self.load_balancer_ip and annotations.get("pulumi.com/skipAwait") != "true":
                    state["status"] = {"loadBalancer": {"ingress": [{"ip": self.load_balancer_ip}]}}
        if args.typ in self.outputs:
            state.update(self.outputs[args.typ](args))
        # A cloud's answers may give the provider's id (an Azure resource id, say):
        # other resources take it as an input, e.g. a role assignment's scope.
        return str(state.pop("id", None) or f"{args.name}-id"), state

    def call(self, args: pulumi_mocks.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        if args.token not in self.calls:
            self.unanswered.append(f"the program invoked {args.token}, which the mocks do not answer")
            raise HarnessError(self.unanswered[-1])
        # An empty failure list, not None: pulumi's MockMonitor iterates it.
        return self.calls[args.token](args), []


def default_mocks() -> StackMocks:
    """Mocks that answer every target's provider-computed outputs and invokes."""
    outputs: dict[str, OutputsFn] = {}
    calls: dict[str, CallFn] = {}
    # Each cloud target (tools/mocks_<cloud>.py) and the image build add their answers here.
    for provider in (mocks_azure, mocks_gcp, mocks_image, mocks_tls):
        outputs.update(provider.OUTPUTS)
        calls.update(provider.CALLS)
    return StackMocks(outputs=outputs, calls=calls)


# --- running -------------------------------------------------------------------


@dataclass
class StackRun:
    """Everything one offline run of a program registered and exported."""

    registrations: dict[str, Registration]
    exports: dict[str, Any]
    secret_exports: set[str]
    kubernetes_version: str | None = None
    # (login server, tenant, the access tokens offered, in the order offered)
    acr_exchanges: list[tuple[str, str, tuple[azure_acr_token.AudienceToken, ...]]] = field(default_factory=list)
    aks_version_asks: list[tuple[str, str, str]] = field(default_factory=list)  # (subscription, location, token)

    def of_type(self, type_: str) -> list[Registration]:
        return [r for r in self.registrations.values() if r.type == type_]

    def one(self, type_: str, name_suffix: str = "") -> Registration:
        found = [r for r in self.of_type(type_) if r.name.endswith(name_suffix)]
        if len(found) != 1:
            names = [r.name for r in self.of_type(type_)]
            raise AssertionError(f"expected one {type_} named *{name_suffix}, found {names}")
        return found[0]

    def kubernetes_objects(self) -> list[Registration]:
        return [r for r in self.registrations.values() if r.is_kubernetes_object]

    def by_urn(self, urn: str) -> Registration:
        return self.registrations[urn]


T = TypeVar("T")


def resolve(output: pulumi.Output[T]) -> T:
    """The value of an Output after a run (outputs are known: the harness never previews)."""
    value: T = pulumi_internals.sync_await(output.future())  # type: ignore[assignment]
    return value


def is_secret(output: pulumi.Output[Any]) -> bool:
    return bool(pulumi_internals.sync_await(output.is_secret()))


def _main_thread_event_loop() -> None:
    """An open event loop for this thread, which the SDK schedules every registration on.

    ``asyncio.run()`` elsewhere in the process (an app test, say) ends by unsetting the
    thread's loop, after which the SDK's first ``asyncio.Future()`` would fail.
    """
    try:
        loop = asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:  # none set, and none may be made implicitly any more
        loop = None
    if loop is None or loop.is_closed():
        asyncio.set_event_loop(asyncio.new_event_loop())


def run(
    program: Callable[[], Any],
    config: Mapping[str, str],
    secret_keys: list[str] | None = None,
    stack: str = "test",
    mocks: StackMocks | None = None,
) -> StackRun:
    """Run ``program`` under mocks with ``config`` (as ``load_stack_config`` returns it)."""
    pulumi_internals.check_once()  # a moved SDK internal fails here, by name, not deep in the run
    _main_thread_event_loop()
    monitor = RecordingMonitor(mocks or default_mocks())
    # The one call the program makes outside the providers (the ACR token exchange)
    # is answered here too: offline runs reach no network.
    exchange = mocks_azure.AcrExchange()
    previous_exchange, azure_acr_token.exchange = azure_acr_token.exchange, exchange
    answers = monitor.mocks if isinstance(monitor.mocks, StackMocks) else StackMocks()
    versions = answers.aks_versions
    previous_versions, azure_api.aks_versions = azure_api.aks_versions, versions
    previous_azure_quotas, azure_api.azure_quotas = azure_api.azure_quotas, answers.azure_quotas
    previous_gcp_quotas, gcp_api.region_quotas = gcp_api.region_quotas, answers.gcp_quotas
    previous_prices, azure_prices.vm_price = azure_prices.vm_price, answers.azure_prices
    pulumi_internals.reset_runtime()
    pulumi.runtime.set_mocks(monitor.mocks, project=PROJECT, stack=stack, preview=False, monitor=monitor)
    pulumi_internals.set_config(config, secret_keys or [])
    pulumi_internals.clear_pending()
    used = monitor.mocks
    try:
        pulumi_internals.run_program(program)
    finally:
        azure_acr_token.exchange = previous_exchange
        azure_api.aks_versions = previous_versions
        azure_api.azure_quotas = previous_azure_quotas
        gcp_api.region_quotas = previous_gcp_quotas
        azure_prices.vm_price = previous_prices
        problems = monitor.problems + (used.unanswered if isinstance(used, StackMocks) else [])
        if problems:
            raise HarnessError("; ".join(problems))

    exports: dict[str, Any] = {}
    secret_exports: set[str] = set()
    for name, value in pulumi_internals.root_outputs().items():
        output = pulumi.Output.from_input(value)
        exports[name] = resolve(output)
        if is_secret(output):
            secret_exports.add(name)
    # Registrations made before their outputs were known: refresh from the monitor.
    for urn, registration in monitor.registrations.items():
        state = pulumi_internals.mocked_state(monitor, urn)
        if state is not None:
            registration.outputs = secret_marked(state, registration.secret_outputs)
    return StackRun(
        monitor.registrations, exports, secret_exports, acr_exchanges=exchange.calls, aks_version_asks=versions.calls
    )


def run_stack(
    stack: str,
    overrides: Mapping[str, Any] | None = None,
    secrets: Mapping[str, str] | None = None,
    mocks: StackMocks | None = None,
    root: Path = ROOT,
) -> StackRun:
    """Run the whole program (``__main__.py``) for ``stack`` as ``pulumi up`` would."""
    config, secret_keys = load_stack_config(stack, overrides, secrets, root)
    result = run(
        lambda: runpy.run_path(str(root / "__main__.py"), run_name="__main__"),
        config,
        secret_keys,
        stack=stack,
        mocks=mocks,
    )
    # The version the program resolved (pinned, or the cloud's default) and exported: what it runs.
    result.kubernetes_version = result.exports.get("kubernetesVersion")
    return result


# --- Kubernetes manifests --------------------------------------------------------


def is_secret_value(value: Any) -> bool:
    return isinstance(value, dict) and value.get(SECRET_SIG) == SECRET_VALUE_SIG


def _redacted(value: Any) -> Any:
    """A secret's shape without its values: a redacted Secret still shows which keys it has."""
    if isinstance(value, dict):
        return {k: _redacted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redacted(v) for v in value]
    return REDACTED


def plain(value: Any, redact: bool = False) -> Any:
    """Wire values as a manifest holds them: secrets unwrapped (or redacted), whole floats as ints."""
    if is_secret_value(value):
        return _redacted(plain(value["value"])) if redact else plain(value["value"])
    if isinstance(value, dict):
        return {k: plain(v, redact) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v, redact) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def manifest(registration: Registration, redact: bool = False) -> dict[str, Any]:
    """The Kubernetes object the provider would apply: inputs plus the auto-assigned name."""
    obj = plain(registration.inputs, redact)
    name = (registration.outputs.get("metadata") or {}).get("name")
    obj.setdefault("metadata", {})
    if name and not obj["metadata"].get("name"):
        obj["metadata"]["name"] = name
    obj.pop("status", None)
    return dict(obj)


def kubernetes_manifests(result: StackRun, redact: bool = False) -> Iterator[tuple[Registration, dict[str, Any]]]:
    for registration in result.kubernetes_objects():
        yield registration, manifest(registration, redact)


def validate_manifest(obj: Mapping[str, Any], kubernetes_version: str) -> list[str]:
    """Strict schema problems of one object for that Kubernetes version; empty when valid.

    A custom object (a kind deploy/crds/ defines) is held to its vendored CRD instead (tools/crds.py).
    """
    if crds.is_custom(obj):
        return crds.validate(obj)
    import kubernetes_validate  # noqa: PLC0415 - slow to import, only needed here

    try:
        kubernetes_validate.validate(dict(obj), kubernetes_version, strict=True)
    except kubernetes_validate.ValidationError as e:
        path = ".".join(str(p) for p in e.path)
        return [f"{obj.get('kind')} {obj.get('metadata', {}).get('name')}: {path}: {e.message}"]
    except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.VersionNotSupportedError) as e:
        return [f"{obj.get('kind')}: {e.message}"]
    return []
