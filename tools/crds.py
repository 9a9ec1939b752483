"""Strict validation of custom objects against the CustomResourceDefinitions vendored in deploy/crds/.

kubernetes-validate knows the built-in kinds only; a PodMonitoring or an azmonitoring PodMonitor
is checked here instead, against the schema the cluster's own CRD declares (deploy/crds/README.md
names each file's source and version). Strict as the built-in kinds are: a CRD's structural schema
leaves ``additionalProperties`` unset, and the API server prunes a field it does not declare
without a word ("pruning": https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/
custom-resource-definitions/#field-pruning), so a typo would be silently dropped. Here every object
schema that declares ``properties`` refuses any other field, unless it says
``x-kubernetes-preserve-unknown-fields``, as ``kubectl apply --validate=strict`` reports them.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

CRD_DIR = Path(__file__).resolve().parent.parent / "deploy" / "crds"
# What the API server checks of metadata for every kind (the CRD schema says only "type: object").
_METADATA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63},
        "namespace": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "required": ["name", "namespace"],
    "additionalProperties": False,
}


def strict(schema: Any) -> Any:
    """``schema`` with every declared object closed to undeclared fields (see the module's docstring)."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    closed = {key: strict(value) for key, value in schema.items()}
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        closed["additionalProperties"] = False
    return closed


@functools.cache
def schemas() -> dict[tuple[str, str], dict[str, dict[str, Any]]]:
    """(apiVersion, kind) -> {release: the strict JSON schema of that version}, for every served version vendored.

    A kind vendored once (deploy/crds/*.yaml) has one release, "". A controller whose release differs by
    cluster has one directory per release (deploy/crds/keda-2.17.3/ ...): an object of its kinds must
    satisfy every one, since the same object goes to every cluster (AKS's KEDA add-on runs the release the
    cluster's minor brings; the GKE and local stacks install another).
    """
    found: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for path in sorted(CRD_DIR.glob("*.yaml")) + sorted(CRD_DIR.glob("*/*.yaml")):
        release = "" if path.parent == CRD_DIR else path.parent.name
        crd = yaml.safe_load(path.read_text(encoding="utf-8"))
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if not version.get("served"):
                continue
            schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])
            schema["properties"]["metadata"] = _METADATA
            schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata", "spec"})
            schema["properties"]["apiVersion"] = {"const": f"{group}/{version['name']}"}
            schema["properties"]["kind"] = {"const": kind}
            found.setdefault((f"{group}/{version['name']}", kind), {})[release] = strict(schema)
    return found


def is_custom(obj: Mapping[str, Any]) -> bool:
    """Whether ``obj`` is of a kind a vendored CRD defines."""
    return (obj.get("apiVersion"), obj.get("kind")) in schemas()


def validate(obj: Mapping[str, Any]) -> list[str]:
    """Every problem of a custom object against its vendored CRDs, each release's (strict); empty when valid."""
    releases = schemas().get((str(obj.get("apiVersion")), str(obj.get("kind"))))
    name = f"{obj.get('kind')} {(obj.get('metadata') or {}).get('name')}"
    if releases is None:
        return [f"{name}: no CRD for {obj.get('apiVersion')} {obj.get('kind')} in {CRD_DIR}"]
    problems = []
    for release, schema in sorted(releases.items()):
        validator = jsonschema.Draft7Validator(schema)
        where = f" (CRD of {release})" if release else ""
        problems += [
            f"{name}{where}: {'.'.join(str(p) for p in error.absolute_path) or '(root)'}: {error.message}"
            for error in sorted(validator.iter_errors(dict(obj)), key=lambda e: list(map(str, e.absolute_path)))
        ]
    return problems
