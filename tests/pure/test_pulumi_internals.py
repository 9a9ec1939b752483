"""The guard on the Pulumi SDK internals the harness relies on (tools/pulumi_internals.py).

After an SDK upgrade this is the test that fails first, naming every internal
that moved and the installed version, instead of an AttributeError deep in a run.
"""

from __future__ import annotations

import warnings

import pytest

from tools import harness, pulumi_internals
from tools.pulumi_internals import Internal, PulumiInternalsError


def test_every_internal_the_harness_uses_is_in_the_installed_sdk() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", pulumi_internals.PulumiInternalsWarning)
        pulumi_internals.check()  # raises naming each missing internal and the installed version


def test_the_installed_sdk_is_the_one_the_internals_were_verified_with() -> None:
    version = pulumi_internals.installed_version()
    assert pulumi_internals.verified(version), (
        f"pulumi {version}: tools/pulumi_internals.py was verified with {pulumi_internals.VERIFIED_MIN} to "
        f"{pulumi_internals.VERIFIED_MAX}; check() passed above, so widen the range"
    )


def test_a_moved_internal_is_named_with_the_installed_version(monkeypatch: pytest.MonkeyPatch) -> None:
    moved = Internal("pulumi.runtime.rpc", "_special_sig_key_v2", "the key that marks a secret")
    gone = Internal("pulumi.runtime.no_such_module", "thing", "something")
    monkeypatch.setattr(pulumi_internals, "INTERNALS", (*pulumi_internals.INTERNALS, moved, gone))
    with pytest.raises(PulumiInternalsError) as caught:
        pulumi_internals.check()
    message = str(caught.value)
    assert message.startswith(f"pulumi {pulumi_internals.installed_version()} lacks 2 internal(s)")
    assert "  - pulumi.runtime.rpc._special_sig_key_v2 (the key that marks a secret)" in message
    assert "  - pulumi.runtime.no_such_module.thing (something)" in message
    with pytest.raises(PulumiInternalsError, match=r"_special_sig_key_v2"):
        moved.get()


def test_instance_attributes_count_when_the_class_declares_them() -> None:
    assert pulumi_internals.MONITOR_RESOURCES.lookup()[0]
    assert not Internal("pulumi.runtime.mocks", "MockMonitor.no_such_thing", "").lookup()[0]
    assert not Internal("pulumi.runtime.mocks", "MockMonitor.resources.deeper", "").lookup()[0]


def test_an_sdk_outside_the_range_warns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pulumi_internals, "installed_version", lambda: "99.0.0")
    with pytest.warns(pulumi_internals.PulumiInternalsWarning, match=r"pulumi 99.0.0 is outside the range"):
        pulumi_internals.check()
    assert pulumi_internals.verified(pulumi_internals.VERIFIED_MIN)
    assert not pulumi_internals.verified("3.0.0")


def test_the_harness_reads_secrets_through_the_guarded_marker() -> None:
    marked = {pulumi_internals.SECRET_SIG_KEY: pulumi_internals.SECRET_SIG, "value": "s3cret"}
    assert harness.is_secret_value(marked)
    assert harness.plain(marked) == "s3cret"
    assert harness.plain(marked, redact=True) == harness.REDACTED
