"""Checkov's in-manifest suppressions: a finding we accept, with its reason, on the object it is about.

Checkov reads every metadata annotation whose key contains ``checkov.io/skip`` as ``<check id>=<reason>``
and reports that check on that object as skipped, with the reason (checkov 3.3.30,
checkov/kubernetes/kubernetes_utils.py: SKIP_ANNOTATION_PREFIXES, and get_skipped_checks, which splits the
value on "="). So the reason travels with the manifest to whoever scans it; tests/stacks/test_checkov.py
fails on a finding without one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

SKIP_PREFIX: Final = "checkov.io/skip"
# Checkov's Kubernetes checks: CKV_K8S_<n>, and its graph checks CKV2_K8S_<n>.
CHECK_ID: Final = re.compile(r"^CKV2?_K8S_[0-9]+$")


def skip_annotations(reasons: Mapping[str, str]) -> dict[str, str]:
    """``{"CKV_K8S_11": "why"}`` as ``{"checkov.io/skip1": "CKV_K8S_11=why"}``, numbered in the order given.

    A reason must say something, and cannot hold "=": Checkov unpacks ``value.split("=")`` into two
    names, so a second "=" would break its parse of the whole object.
    """
    for check, reason in reasons.items():
        if not CHECK_ID.match(check):
            raise ValueError(f"{check!r} is not a Checkov Kubernetes check id (CKV_K8S_<n> or CKV2_K8S_<n>)")
        if not reason.strip():
            raise ValueError(f"{check}: a skipped check needs its reason")
        if "=" in reason:
            raise ValueError(f"{check}: a reason cannot hold '=' (Checkov splits the annotation on it)")
    return {f"{SKIP_PREFIX}{i}": f"{check}={reason}" for i, (check, reason) in enumerate(reasons.items(), start=1)}
