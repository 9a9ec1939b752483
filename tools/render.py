"""Render a stack offline for review: ``make render STACK=local`` (or ``python -m tools.render --stack local``).

Runs the program under the mock harness (no CLI, no credentials, no cluster;
the local stack gets a throw-away kubeconfig) and writes, under
``render/<stack>/``:

- ``summary.md``: what the stack would run on, read from its resources: clusters, node pools
  (machine or VM size, GPUs, node bounds, Spot), region or zone, registry, model store,
  endpoint, images and Kubernetes version (``tools/summary.py``);
- ``resources/<package>.<Type>.<name>.yaml``: every resource of every provider as the engine
  would see it: type, name, URN, parent, provider, dependencies, resource options and inputs
  (secret values redacted; a Kubernetes object names its file in ``k8s/`` instead), so that
  a diff of two renders shows every input a preview would diff;
- ``k8s/<kind>-<namespace>-<name>.yaml``: every Kubernetes object, one a file,
  secret values redacted;
- ``graph.md`` and ``graph.dot``: every resource with its type, parent,
  provider and dependencies.

Every object is validated strictly against the schema of the minor the stack
runs (its ``kubernetesVersion`` output: the pinned minor, or offline the
catalogue's default for its cloud). Exit status: 0 when everything rendered and is valid,
1 when an object is invalid, 2 when the program itself fails (bad config, say).
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from tools import harness, summary

EXIT_INVALID = 1
EXIT_PROGRAM_ERROR = 2


def manifest_filename(obj: Mapping[str, Any]) -> str:
    """``deployment-mlstack-mlstack-server.yaml``; cluster-scoped objects have no namespace part."""
    metadata = obj.get("metadata") or {}
    parts = [str(obj.get("kind", "object")), metadata.get("namespace"), metadata.get("name")]
    return "-".join(str(p).lower() for p in parts if p) + ".yaml"


def _ordered(run: harness.StackRun) -> list[harness.Registration]:
    """Resources by URN, not registration order: that varies run to run, and renders are diffed."""
    return [run.registrations[urn] for urn in sorted(run.registrations)]


def _label(run: harness.StackRun, urn: str) -> str:
    registration = run.registrations.get(urn)
    return registration.name if registration else "(stack)"


def graph_markdown(stack: str, run: harness.StackRun) -> str:
    lines = [
        f"# Resource graph of stack `{stack}`",
        "",
        f"{len(run.registrations)} resources, sorted by URN. Rendered offline under mocks by `tools/render.py`.",
        "",
        "| resource | type | parent | provider | depends on |",
        "| --- | --- | --- | --- | --- |",
    ]
    for registration in _ordered(run):
        provider = _label(run, registration.provider_urn) if registration.provider_urn else ""
        depends = ", ".join(f"`{_label(run, d)}`" for d in sorted(registration.dependencies))
        lines.append(
            f"| `{registration.name}` | `{registration.type}` | `{_label(run, registration.parent)}` | "
            f"{f'`{provider}`' if provider else ''} | {depends} |"
        )
    return "\n".join(lines) + "\n"


def _dot_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def graph_dot(stack: str, run: harness.StackRun) -> str:
    """Solid edges: parent to child. Dashed: a resource to what it depends on."""
    lines = [
        f"digraph {_dot_string(stack)} {{",
        "  rankdir=LR;",
        '  node [shape=box, fontname="Helvetica"];',
    ]
    for registration in _ordered(run):
        shape = "component" if not registration.custom else "box"
        label = f"{registration.name}\\n{registration.type}"
        lines.append(f'  {_dot_string(registration.urn)} [label="{label}", shape={shape}];')
    for registration in _ordered(run):
        if registration.parent in run.registrations:
            lines.append(f"  {_dot_string(registration.parent)} -> {_dot_string(registration.urn)};")
        for dependency in sorted(registration.dependencies):
            lines.append(f"  {_dot_string(registration.urn)} -> {_dot_string(dependency)} [style=dashed];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _key_sorted(value: Any) -> Any:
    """Every mapping's keys in order, lists as they are: the engine hands over maps in no stable
    order, and a render is diffed run against run."""
    if isinstance(value, dict):
        return {k: _key_sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_key_sorted(v) for v in value]
    return value


RESOURCES = "resources"
K8S = "k8s"


def record_stem(registration: harness.Registration) -> str:
    """``gcp.NodePool.gke-gpu``: the provider package, the type's own name and the resource's name."""
    package, *_, kind = registration.type.split(":")
    return re.sub(r"[^A-Za-z0-9._-]", "_", f"{package}.{kind}.{registration.name}")


def record_filenames(run: harness.StackRun) -> dict[str, str]:
    """Each resource's file in ``resources/``, by URN; where two would share a name, both carry a hash of their URN."""
    stems = {urn: record_stem(registration) for urn, registration in run.registrations.items()}
    shared = Counter(stems.values())
    return {
        urn: (f"{stem}.{hashlib.sha256(urn.encode()).hexdigest()[:8]}" if shared[stem] > 1 else stem) + ".yaml"
        for urn, stem in stems.items()
    }


def _options(registration: harness.Registration) -> dict[str, Any]:
    """The resource options the engine acts on in a diff, those set only."""
    options: dict[str, Any] = {
        "customTimeouts": dict(sorted(registration.custom_timeouts.items())),
        "deleteBeforeReplace": registration.delete_before_replace,
        "ignoreChanges": sorted(registration.ignore_changes),
        "replaceOnChanges": sorted(registration.replace_on_changes),
    }
    return {key: value for key, value in options.items() if value}


def resource_record(registration: harness.Registration, manifest_file: str | None = None) -> dict[str, Any]:
    """A resource as the engine would see it, for ``resources/``: a Kubernetes object names its manifest in
    ``k8s/`` (``manifest_file``) instead of repeating its inputs there."""
    record: dict[str, Any] = {
        "type": registration.type,
        "name": registration.name,
        "urn": registration.urn,
        "kind": "component" if not registration.custom else "resource",
        "parent": registration.parent,
        "provider": registration.provider_urn or "(default)",
        "dependsOn": sorted(registration.dependencies),
    }
    options = _options(registration)
    if options:
        record["options"] = options
    if manifest_file is not None:
        record["manifest"] = f"{K8S}/{manifest_file}"
    elif registration.custom:
        record["inputs"] = _key_sorted(harness.plain(registration.inputs, redact=True))
    return record


def write_render(stack: str, run: harness.StackRun, out: Path) -> list[str]:
    """Write ``out/<stack>/``; return the schema problems of its Kubernetes objects (empty: all valid)."""
    target = out / stack
    if target.exists():
        shutil.rmtree(target)  # only our own output: no stale object survives a rename
    k8s_dir = target / K8S
    k8s_dir.mkdir(parents=True)
    version = run.kubernetes_version or ""
    problems: list[str] = []
    manifest_files: dict[str, str] = {}
    for registration, obj in harness.kubernetes_manifests(run):
        # Validate the object as applied; write it with its secrets redacted.
        problems += [f"{registration.name}: {p}" for p in harness.validate_manifest(obj, version)]
        path = k8s_dir / manifest_filename(obj)
        if path.exists():
            problems.append(f"{registration.name}: a second object renders to {path.name}")
        manifest_files[registration.urn] = path.name
        redacted = _key_sorted(harness.manifest(registration, redact=True))
        first: dict[str, Any] = {k: redacted.pop(k) for k in ("apiVersion", "kind", "metadata") if k in redacted}
        path.write_text(yaml.safe_dump({**first, **redacted}, sort_keys=False), encoding="utf-8")
    resources_dir = target / RESOURCES
    resources_dir.mkdir()
    for urn, filename in record_filenames(run).items():
        record = resource_record(run.registrations[urn], manifest_files.get(urn))
        (resources_dir / filename).write_text(yaml.safe_dump(record, sort_keys=False), encoding="utf-8")
    (target / "summary.md").write_text(summary.summary_markdown(stack, run), encoding="utf-8")
    (target / "graph.md").write_text(graph_markdown(stack, run), encoding="utf-8")
    (target / "graph.dot").write_text(graph_dot(stack, run), encoding="utf-8")
    return problems


def render_stack(stack: str, out: Path, overrides: Mapping[str, Any] | None = None) -> list[str]:
    """Run ``stack`` offline and write its render; the schema problems found (raises if the program fails)."""
    with harness.offline_kubeconfig():
        run = harness.run_stack(stack, overrides=overrides)
    return write_render(stack, run, out)


def _override(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r}: expected KEY=VALUE")
    # YAML, as in a stack file: replicas=3 is an integer, allowedSourceRanges=[...] a list.
    return key, yaml.safe_load(value) if value else ""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.render", description=__doc__.splitlines()[0])
    parser.add_argument("--stack", required=True, help="a shipped stack: Pulumi.<stack>.yaml")
    parser.add_argument("--out", type=Path, default=harness.ROOT / "render", help="output folder (default: render/)")
    parser.add_argument(
        "--set", dest="overrides", type=_override, action="append", default=[], metavar="KEY=VALUE",
        help="override a config key for this render (a YAML value), e.g. --set replicas=3",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if not (harness.ROOT / f"Pulumi.{args.stack}.yaml").exists():
        print(f"render: no stack {args.stack!r}: Pulumi.{args.stack}.yaml does not exist", file=sys.stderr)
        return EXIT_PROGRAM_ERROR
    try:
        problems = render_stack(args.stack, args.out, dict(args.overrides))
    except Exception as e:  # any program failure is reported, not a traceback
        print(f"render: stack {args.stack}: the program failed: {e}", file=sys.stderr)
        return EXIT_PROGRAM_ERROR
    where = args.out / args.stack
    if problems:
        print(f"render: stack {args.stack}: {len(problems)} invalid Kubernetes object(s):", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        print(f"render: wrote {where} anyway, for inspection", file=sys.stderr)
        return EXIT_INVALID
    count = len(list((where / K8S).iterdir()))
    total = len(list((where / RESOURCES).iterdir()))
    print(f"render: stack {args.stack}: {total} resources, {count} Kubernetes objects, all valid; wrote {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
