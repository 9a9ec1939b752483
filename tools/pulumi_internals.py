"""The Pulumi SDK internals the offline harness needs, in one place, behind a version guard.

``tools/harness.py`` runs the program as the engine would, under the SDK's mocks
(``pulumi.runtime.set_mocks``, ``Mocks``, ``MockMonitor``: public testing API).
A few things it needs are not public: the marker the wire format puts on a
secret, the function that decodes a registration's inputs, the way to run a
program to completion and read the root stack's outputs, the resets between
runs, and what ``MockMonitor`` keeps per resource. They are named here once
(``INTERNALS``), each under a public name, and nowhere else.

They were verified with the SDK versions ``VERIFIED_MIN`` to ``VERIFIED_MAX``.
``check()`` looks every one of them up and raises one ``PulumiInternalsError``
naming each that is missing, with the installed version; the harness calls it
before its first run, and ``tests/pure/test_pulumi_internals.py`` calls it, so
an SDK upgrade that moves one fails with that message instead of an
AttributeError deep in a run. An installed version outside the range with
every internal present only warns: run the tests, then widen the range.

Importing this module never fails on a moved internal (it imports only the
public ``MockMonitor``): each is looked up when used, or by ``check()``.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import re
import warnings
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from typing import Any, Final, TypeVar, cast

from pulumi.runtime.mocks import MockMonitor

# The SDK versions every internal below was checked against (inclusive): the tests
# pass on them. Widen after an upgrade once the tests pass on the new version.
VERIFIED_MIN: Final = "3.272.0"
VERIFIED_MAX: Final = "3.272.0"

T = TypeVar("T")


class PulumiInternalsError(RuntimeError):
    """An SDK internal the harness relies on is gone: the SDK changed under it."""


class PulumiInternalsWarning(UserWarning):
    """The installed SDK is outside the verified range, though every internal is present."""


@dataclass(frozen=True)
class Internal:
    """One attribute of a module, looked up by a dotted path (``SETTINGS.rpc_manager.clear``).

    The last name may be an instance attribute the class only declares
    (``MockMonitor.resources``): it counts as present when annotated on the class.
    """

    module: str
    attribute: str
    used_for: str

    @property
    def path(self) -> str:
        return f"{self.module}.{self.attribute}"

    def lookup(self) -> tuple[bool, Any]:
        """(found, value); the value is None for a declared instance attribute."""
        try:
            value: Any = importlib.import_module(self.module)
        except ImportError:
            return False, None
        names = self.attribute.split(".")
        for index, name in enumerate(names):
            if hasattr(value, name):
                value = getattr(value, name)
                continue
            last = index == len(names) - 1
            declared = isinstance(value, type) and any(name in getattr(c, "__annotations__", {}) for c in value.__mro__)
            return (last and declared), None
        return True, value

    def get(self) -> Any:
        found, value = self.lookup()
        if not found:
            raise PulumiInternalsError(_message([self.path]))
        return value


_RPC = "pulumi.runtime.rpc"
_SETTINGS = "pulumi.runtime.settings"
_STACK = "pulumi.runtime.stack"
_CONFIG = "pulumi.runtime.config"
_MOCKS = "pulumi.runtime.mocks"  # public testing API, but what MockMonitor keeps per resource is not
SECRET_SIG_KEY_INTERNAL = Internal(_RPC, "_special_sig_key", "the key that marks a secret in a wire value")
SECRET_SIG_INTERNAL = Internal(_RPC, "_special_secret_sig", "the value of that key on a secret")
DESERIALIZE = Internal(_RPC, "deserialize_properties", "decoding a registration's inputs, secrets still marked")
SYNC_AWAIT = Internal("pulumi.runtime.sync_await", "_sync_await", "awaiting the program and outputs outside a loop")
RUN_PULUMI_FUNC = Internal(_STACK, "run_pulumi_func", "running a program to completion, as the language host does")
STACK_OUTPUTS = Internal(_STACK, "Stack.outputs", "the root stack's exports")
ROOT_RESOURCE = Internal(_SETTINGS, "get_root_resource", "finding the root stack after a run")
RESET_OPTIONS = Internal(_SETTINGS, "reset_options", "a fresh runtime before each run")
CLEAR_RPCS = Internal(_SETTINGS, "SETTINGS.rpc_manager.clear", "forgetting the previous run's pending RPCs")
CLEAR_OUTPUTS = Internal(_SETTINGS, "SETTINGS.outputs.clear", "forgetting the previous run's pending outputs")
SET_ALL_CONFIG = Internal(_CONFIG, "set_all_config", "the stack's config, as the CLI passes it")
# Not the harness's own: the program (stack/config.py) reads a secret's raw value and whether it is encrypted.
RUNTIME_GET_CONFIG = Internal(_CONFIG, "get_config", "stack/config.py: a key's raw value")
IS_CONFIG_SECRET = Internal(_CONFIG, "is_config_secret", "stack/config.py: refusing a plain-text secret")
CONFIG_VAR = Internal(_CONFIG, "CONFIG", "stack/config.py: every key the stack sets, to refuse one not declared")
CONFIG_GET_CONFIG = Internal("pulumi.config", "get_config", "the name pulumi.Config reads through (recording reads)")
MONITOR_RESOURCES = Internal(_MOCKS, "MockMonitor.resources", "a mocked resource's outputs, by URN")
MONITOR_STATE = Internal(_MOCKS, "MockMonitor.ResourceRegistration.state", "those outputs")
MONITOR_MAKE_URN = Internal(_MOCKS, "MockMonitor.make_urn", "a registration's URN, as the engine forms it")
MONITOR_REGISTER = Internal(_MOCKS, "MockMonitor.RegisterResource", "the call the recording monitor intercepts")

INTERNALS: Final = (
    SECRET_SIG_KEY_INTERNAL, SECRET_SIG_INTERNAL, DESERIALIZE, SYNC_AWAIT, RUN_PULUMI_FUNC, STACK_OUTPUTS,
    ROOT_RESOURCE, RESET_OPTIONS, CLEAR_RPCS, CLEAR_OUTPUTS, SET_ALL_CONFIG, RUNTIME_GET_CONFIG, IS_CONFIG_SECRET,
    CONFIG_VAR, CONFIG_GET_CONFIG, MONITOR_RESOURCES, MONITOR_STATE, MONITOR_MAKE_URN, MONITOR_REGISTER,
)  # fmt: skip

# The fields of the engine's RegisterResourceRequest the recording monitor reads.
REQUEST_MESSAGE: Final = ("pulumi.runtime.proto.resource_pb2", "RegisterResourceRequest")
REQUEST_FIELDS: Final = (
    "parent", "type", "name", "custom", "dependencies", "provider", "object",
    "customTimeouts", "ignoreChanges", "replaceOnChanges", "deleteBeforeReplace", "additionalSecretOutputs",
)  # fmt: skip
TIMEOUT_FIELDS: Final = ("create", "update", "delete")


# --- the guard -----------------------------------------------------------------------


def installed_version() -> str:
    try:
        return importlib.metadata.version("pulumi")
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"


def _release(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version)[:3])


def verified(version: str) -> bool:
    """Whether ``version`` lies in the range every internal was checked on."""
    return _release(VERIFIED_MIN) <= _release(version) <= _release(VERIFIED_MAX)


def _request_fields_missing() -> list[str]:
    module, message = REQUEST_MESSAGE
    where = f"{module}.{message}"
    try:
        descriptor = getattr(importlib.import_module(module), message).DESCRIPTOR
    except (ImportError, AttributeError):
        return [where]
    missing = [f"{where}.{f}" for f in REQUEST_FIELDS if f not in descriptor.fields_by_name]
    timeouts = descriptor.fields_by_name.get("customTimeouts")
    if timeouts is not None and timeouts.message_type is not None:
        fields = timeouts.message_type.fields_by_name
        missing += [f"{where}.customTimeouts.{f}" for f in TIMEOUT_FIELDS if f not in fields]
    return missing


def missing() -> list[str]:
    """The dotted path of every internal the installed SDK lacks; empty when all are there."""
    return [i.path for i in INTERNALS if not i.lookup()[0]] + _request_fields_missing()


def _message(paths: list[str]) -> str:
    uses = {i.path: i.used_for for i in INTERNALS}
    uses.update({f"{'.'.join(REQUEST_MESSAGE)}.{f}": "a registration, as the engine sends it" for f in REQUEST_FIELDS})
    listed = "\n".join(f"  - {p} ({uses[p]})" if p in uses else f"  - {p}" for p in paths)
    return (
        f"pulumi {installed_version()} lacks {len(paths)} internal(s) the offline harness relies on "
        f"(verified with pulumi {VERIFIED_MIN} to {VERIFIED_MAX}; see tools/pulumi_internals.py):\n{listed}"
    )


def check() -> None:
    """Raise one PulumiInternalsError naming every missing internal and the installed version.

    Warns (PulumiInternalsWarning) when all are present but the version is outside the verified range.
    """
    gone = missing()
    if gone:
        raise PulumiInternalsError(_message(gone))
    version = installed_version()
    if not verified(version):
        warnings.warn(
            f"pulumi {version} is outside the range tools/pulumi_internals.py was verified with "
            f"({VERIFIED_MIN} to {VERIFIED_MAX}); every internal is present: run the tests, then widen the range",
            PulumiInternalsWarning,
            stacklevel=2,
        )


@cache
def check_once() -> None:
    """``check()``, once per process: the harness calls it before every run."""
    check()


# --- the internals, under public names -------------------------------------------------


def _constant(internal: Internal) -> str:
    found, value = internal.lookup()
    # A moved constant never matches a real wire value; check() names it.
    return str(value) if found else f"<missing {internal.path}>"


# A secret in a wire value: {SECRET_SIG_KEY: SECRET_SIG, "value": ...}.
SECRET_SIG_KEY: Final = _constant(SECRET_SIG_KEY_INTERNAL)
SECRET_SIG: Final = _constant(SECRET_SIG_INTERNAL)


def sync_await(awaitable: Awaitable[T]) -> T:
    """The result of ``awaitable``, from outside the event loop (an Output's value after a run)."""
    run = cast(Callable[[Awaitable[T]], T], SYNC_AWAIT.get())
    return run(awaitable)


def run_program(program: Callable[[], Any]) -> None:
    """Run ``program`` as the language host does, until every registration and output settled."""
    run_pulumi_func = cast(Callable[[Callable[[], Any]], Awaitable[None]], RUN_PULUMI_FUNC.get())
    sync_await(run_pulumi_func(program))


def reset_runtime() -> None:
    """Forget the previous run's options and root stack (before ``set_mocks``)."""
    RESET_OPTIONS.get()()


def set_config(config: Mapping[str, str], secret_keys: list[str]) -> None:
    """The stack's config as the CLI passes it: every value a string, the secret keys named."""
    SET_ALL_CONFIG.get()(dict(config), secret_keys)


def clear_pending() -> None:
    """Forget RPCs and outputs a previous run left pending (after ``set_mocks``)."""
    CLEAR_RPCS.get()()
    CLEAR_OUTPUTS.get()()


def root_outputs() -> dict[str, Any]:
    """What the program exported on its root stack (``pulumi.export``)."""
    root = ROOT_RESOURCE.get()()
    STACK_OUTPUTS.get()  # the attribute read below: present, or a clear error
    outputs: dict[str, Any] = dict(getattr(root, "outputs", None) or {})
    return outputs


def deserialize_properties(struct: Any) -> dict[str, Any]:
    """A registration's inputs as plain values, secrets still marked."""
    properties: dict[str, Any] = DESERIALIZE.get()(struct)
    return properties


def make_urn(monitor: MockMonitor, parent: str, type_: str, name: str) -> str:
    """The URN the engine gives a resource (its parent's type chain, the stack and project)."""
    MONITOR_MAKE_URN.get()
    urn: str = monitor.make_urn(parent, type_, name)
    return urn


def mocked_state(monitor: MockMonitor, urn: str) -> dict[str, Any] | None:
    """The outputs the mocks gave resource ``urn``; None before it is registered."""
    MONITOR_RESOURCES.get()
    MONITOR_STATE.get()
    registered = monitor.resources.get(urn)
    return None if registered is None else dict(registered.state)


@contextmanager
def recording_config_reads(*importers: str) -> Iterator[set[str]]:
    """Every config key read while inside, through ``pulumi.Config`` or ``get_config`` itself.

    ``importers`` are modules that imported ``pulumi.runtime.config.get_config`` by
    name (``stack.config``): their copy is recorded too.
    """
    original = CONFIG_GET_CONFIG.get()
    read: set[str] = set()

    def get_config(key: str) -> Any:
        read.add(key)
        return original(key)

    attribute = CONFIG_GET_CONFIG.attribute
    modules = [importlib.import_module(m) for m in (CONFIG_GET_CONFIG.module, *importers)]
    previous = [getattr(m, attribute) for m in modules]
    for module in modules:
        setattr(module, attribute, get_config)
    try:
        yield read
    finally:
        for module, before in zip(modules, previous, strict=True):
            setattr(module, attribute, before)
