"""Review a change offline: ``make review BASE=main`` (or ``python -m tools.review --base main``).

Renders every shipped stack twice, at ``BASE`` (a temporary ``git worktree`` of it, run with
this virtualenv) and at the working tree (committed or not; ``--head REF``: another commit,
in a worktree too), and prints, per stack, a unified
diff of the two renders and then what a ``pulumi preview`` would mark ``replace``:

- a changed input the resource's provider cannot update in place, by the sourced table in
  ``tools/replacements.py`` (plus the inputs the program lists in ``replaceOnChanges``; the
  inputs it lists in ``ignoreChanges`` are left out, as the engine leaves them);
- a resource whose URN changed (its name, type or parent), which the engine deletes and creates
  again unless the new one declares an alias to the old URN (the render cannot see aliases);

and which resources the change creates and deletes. The base is rendered with this tree's
renderer (``tools/render.py``, ``tools/summary.py`` copied into the worktree), so that both
renders have one layout; where the base's harness cannot run it, with the base's own.

Exit status: 0 whatever the diff, 2 when a render fails (the program fails at one side, or
``BASE`` is not a commit). Both renders stay in ``build/review/{base,head}/<stack>/``.
"""

from __future__ import annotations

import argparse
import difflib
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

from tools import harness, render, replacements

STACKS: Final = ("local", "dev", "gke")  # every shipped Pulumi.<stack>.yaml
EXIT_RENDER_FAILED: Final = 2
# The renderer the base is rendered with, copied from this tree into its worktree.
RENDERER_FILES: Final = ("tools/render.py", "tools/summary.py")
# The files a reviewer reads first; graph.dot repeats graph.md, for Graphviz, and is not printed.
NOT_PRINTED: Final = frozenset({"graph.dot"})
PROGRAM_OPTION: Final = "the program's replaceOnChanges resource option"
URN_SOURCE: Final = (
    "Pulumi engine: a resource is identified by its URN (name, type, parent); a new URN is a new "
    "resource unless it declares an alias to the old one (pulumi.com/docs/iac/concepts/options/aliases)"
)


class ReviewError(Exception):
    """A side could not be rendered."""


# --- reading a render -------------------------------------------------------------------------


@dataclass(frozen=True)
class Resource:
    """One record of ``resources/``, its inputs resolved (a Kubernetes object's from its manifest)."""

    type: str
    name: str
    urn: str
    parent: str
    inputs: dict[str, Any]
    options: dict[str, Any]


def read_resources(where: Path) -> dict[str, Resource]:
    """The resources of one stack's render (``render/<stack>``), by URN."""
    found: dict[str, Resource] = {}
    for path in sorted((where / render.RESOURCES).glob("*.yaml")):
        record = yaml.safe_load(path.read_text(encoding="utf-8"))
        inputs = record.get("inputs") or {}
        if "manifest" in record:
            inputs = yaml.safe_load((where / record["manifest"]).read_text(encoding="utf-8")) or {}
        found[record["urn"]] = Resource(
            type=record["type"],
            name=record["name"],
            urn=record["urn"],
            parent=record.get("parent") or "",
            inputs=inputs,
            options=record.get("options") or {},
        )
    return found


# --- what a preview would replace -------------------------------------------------------------


@dataclass(frozen=True)
class Replacement:
    """A resource the change would replace, why, and on whose word."""

    type: str
    name: str
    reason: str
    source: str

    def message(self) -> str:
        return f"this change replaces {self.type} {self.name} ({self.reason})"


@dataclass
class Verdict:
    """What the change does to one stack's resources, beyond updates in place."""

    replaced: list[Replacement] = field(default_factory=list)
    created: list[Resource] = field(default_factory=list)
    deleted: list[Resource] = field(default_factory=list)


def _without(value: Any, keys: Sequence[str]) -> Any:
    """``value`` less the path ``keys`` (through lists): an input the program tells the engine to ignore."""
    if not keys:
        return replacements.UNSET
    if isinstance(value, list):
        return [_without(item, keys) for item in value]
    if isinstance(value, dict) and keys[0] in value:
        rest = _without(value[keys[0]], keys[1:])
        trimmed = {k: v for k, v in value.items() if k != keys[0]}
        if rest is not replacements.UNSET:
            trimmed[keys[0]] = rest
        return trimmed
    return value


def _ignoring(inputs: dict[str, Any], ignored: Sequence[str]) -> dict[str, Any]:
    for path in ignored:
        inputs = _without(inputs, path.replace("[*]", "").split("."))
    return inputs


def _forced(old: Resource, new: Resource) -> list[replacements.Forced]:
    ignored = list(new.options.get("ignoreChanges") or [])
    before, after = _ignoring(old.inputs, ignored), _ignoring(new.inputs, ignored)
    found = replacements.forced(new.type, before, after)
    tripped = {f.rule.path for f in found}
    for path in new.options.get("replaceOnChanges") or []:
        rule = replacements.Rule(path.replace("[*]", ""), PROGRAM_OPTION)
        if rule.path in tripped or replacements.values_at(before, rule.keys) == replacements.values_at(
            after, rule.keys
        ):
            continue
        changed = tuple(c for c in replacements.changes(before, after) if replacements.under(c, rule))
        found.append(replacements.Forced(rule, changed or (replacements.Change(rule.keys, "…", "…"),)))
    return found


def _moved(deleted: list[Resource], created: list[Resource]) -> list[tuple[Resource, Resource, str]]:
    """Deleted and created resources that are one resource under a new URN: the same type and name
    (a new parent), the same name (a new type), or the only one of their type and parent either side
    (a new name)."""
    pairs: list[tuple[Resource, Resource, str]] = []
    matchers: tuple[tuple[Callable[[Resource], tuple[str, str]], str], ...] = (
        (lambda r: (r.type, r.name), "its parent changed: {old.parent} -> {new.parent}"),
        (lambda r: (r.name, r.parent), "its type changed: {old.type} -> {new.type}"),
        (lambda r: (r.type, r.parent), "its name changed: {old.name} -> {new.name}"),
    )
    for key, reason in matchers:
        olds: dict[tuple[str, str], list[Resource]] = {}
        news: dict[tuple[str, str], list[Resource]] = {}
        for resource in deleted:
            olds.setdefault(key(resource), []).append(resource)
        for resource in created:
            news.setdefault(key(resource), []).append(resource)
        for common in olds.keys() & news.keys():
            if len(olds[common]) == 1 and len(news[common]) == 1:
                old, new = olds[common][0], news[common][0]
                pairs.append((old, new, reason.format(old=old, new=new)))
                deleted.remove(old)
                created.remove(new)
    return pairs


def compare(base: Path, head: Path) -> Verdict:
    """What the change from the render ``base`` to the render ``head`` (each ``<out>/<stack>``) replaces,
    creates and deletes."""
    before, after = read_resources(base), read_resources(head)
    verdict = Verdict()
    for urn in sorted(before.keys() & after.keys()):
        old, new = before[urn], after[urn]
        for found in _forced(old, new):
            verdict.replaced.append(Replacement(new.type, new.name, found.describe(), found.rule.source))
    deleted = [before[urn] for urn in sorted(before.keys() - after.keys())]
    created = [after[urn] for urn in sorted(after.keys() - before.keys())]
    for old, _new, reason in _moved(deleted, created):
        verdict.replaced.append(Replacement(old.type, old.name, f"{reason}; no alias", URN_SOURCE))
    verdict.created, verdict.deleted = created, deleted
    return verdict


# --- the diff ---------------------------------------------------------------------------------


def _render_files(where: Path) -> dict[str, str]:
    if not where.exists():
        return {}
    return {
        str(path.relative_to(where)): path.read_text(encoding="utf-8")
        for path in sorted(where.rglob("*"))
        if path.is_file() and path.name not in NOT_PRINTED
    }


def _order(name: str) -> tuple[int, str]:
    """summary.md first, then the resources, the Kubernetes objects and the graph."""
    for rank, prefix in enumerate(("summary.md", f"{render.RESOURCES}/", f"{render.K8S}/")):
        if name.startswith(prefix):
            return rank, name
    return 3, name


def unified_diff(stack: str, base: Path, head: Path) -> list[str]:
    """The unified diff of two renders of ``stack``, file by file (empty: identical)."""
    old, new = _render_files(base), _render_files(head)
    lines: list[str] = []
    for name in sorted(old.keys() | new.keys(), key=_order):
        if old.get(name) == new.get(name):
            continue
        lines += difflib.unified_diff(
            old.get(name, "").splitlines(keepends=True),
            new.get(name, "").splitlines(keepends=True),
            fromfile=f"a/{stack}/{name}" if name in old else "/dev/null",
            tofile=f"b/{stack}/{name}" if name in new else "/dev/null",
        )
    return [line if line.endswith("\n") else line + "\n" for line in lines]


# --- rendering both sides ---------------------------------------------------------------------


def _render(cwd: Path, stack: str, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
        [sys.executable, "-m", "tools.render", "--stack", stack, "--out", str(out)],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )


def _git(*args: str, cwd: Path = harness.ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - fixed git arguments, no shell
        ["git", *args],  # noqa: S607 - git from PATH, as a developer runs it
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def _render_side(cwd: Path, stack: str, out: Path, label: str) -> str:
    """Render one stack at one side; a note when its objects are invalid; raise when it cannot render."""
    done = _render(cwd, stack, out)
    # Python itself exits 1 on an uncaught exception (an import the copied renderer needs and the base lacks):
    # the renderer's own "invalid objects" status comes with the render written beside it.
    wrote = (out / stack).is_dir()
    if done.returncode == render.EXIT_PROGRAM_ERROR or (done.returncode != 0 and not wrote):
        raise ReviewError(f"{label}: stack {stack} did not render:\n{done.stderr.strip()}")
    if done.returncode == render.EXIT_INVALID:
        return f"{label}: stack {stack} has invalid Kubernetes objects (make render STACK={stack} says which)"
    return ""


def _restore(tree: Path) -> None:
    """Put the base's own renderer back in its worktree (removing what it did not have)."""
    for name in RENDERER_FILES:
        if _git("ls-files", "--error-unmatch", name, cwd=tree).returncode == 0:
            _git("checkout", "--", name, cwd=tree)
        else:
            (tree / name).unlink(missing_ok=True)


def _render_commit(ref: str, stacks: Sequence[str], out: Path) -> list[str]:
    """Render ``stacks`` at ``ref`` into ``out``, in a temporary worktree; the notes to print."""
    with tempfile.TemporaryDirectory(prefix="mlstack-review-") as directory:
        tree = Path(directory) / "base"
        added = _git("worktree", "add", "--detach", str(tree), ref)
        if added.returncode != 0:
            raise ReviewError(f"{ref}: git worktree add failed: {added.stderr.strip()}")
        try:
            for name in RENDERER_FILES:
                (tree / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(harness.ROOT / name, tree / name)
            notes = []
            for stack in stacks:
                try:
                    notes.append(_render_side(tree, stack, out, ref))
                except ReviewError:
                    # Its harness may not run this renderer: fall back to its own.
                    _restore(tree)
                    notes.append(f"{ref}: rendered with its own tools/render.py (this one's does not run there)")
                    notes.append(_render_side(tree, stack, out, ref))
            return [note for note in notes if note]
        finally:
            _git("worktree", "remove", "--force", str(tree))


def review(
    ref: str, stacks: Sequence[str], out: Path, head_ref: str | None = None
) -> tuple[list[str], dict[str, Verdict], list[str]]:
    """Render both sides (``head_ref`` None: the working tree); the diff lines, the verdict per stack and
    the notes."""
    if out.exists():
        shutil.rmtree(out)  # only our own output
    notes = _render_commit(ref, stacks, out / "base")
    if head_ref is not None:
        notes += _render_commit(head_ref, stacks, out / "head")
    else:
        for stack in stacks:
            note = _render_side(harness.ROOT, stack, out / "head", "working tree")
            notes += [note] if note else []
    lines: list[str] = []
    verdicts: dict[str, Verdict] = {}
    for stack in stacks:
        base, head = out / "base" / stack, out / "head" / stack
        diff = unified_diff(stack, base, head)
        lines += [f"=== stack {stack}: {'no change' if not diff else 'diff of the render'}\n", *diff]
        checked = (base / render.RESOURCES).exists() and (head / render.RESOURCES).exists()
        verdicts[stack] = compare(base, head) if checked else Verdict()
        if not checked:
            notes.append(f"stack {stack}: a render has no resources/ (its own renderer ran): replacements not checked")
    return lines, verdicts, notes


def verdict_lines(verdicts: Mapping[str, Verdict]) -> list[str]:
    lines = ["=== what `pulumi up` would replace, create and delete\n"]
    for stack, verdict in verdicts.items():
        if not (verdict.replaced or verdict.created or verdict.deleted):
            lines.append(f"stack {stack}: no replacement, nothing created or deleted\n")
            continue
        lines.append(f"stack {stack}:\n")
        for replacement in verdict.replaced:
            lines += [f"  ! {replacement.message()}\n", f"      source: {replacement.source}\n"]
        lines += [f"  + creates {r.type} {r.name}\n" for r in verdict.created]
        lines += [f"  - deletes {r.type} {r.name}\n" for r in verdict.deleted]
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.review", description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="HEAD", help="the git ref to compare with (default: HEAD)")
    parser.add_argument("--head", help="a git ref to review instead of the working tree")
    parser.add_argument(
        "--stack", dest="stacks", action="append", choices=STACKS, help="a stack to review (default: every one)"
    )
    parser.add_argument("--out", type=Path, default=harness.ROOT / "build" / "review", help="where both renders go")
    args = parser.parse_args(argv)
    stacks = args.stacks or list(STACKS)
    try:
        lines, verdicts, notes = review(args.base, stacks, args.out, args.head)
    except ReviewError as e:
        print(f"review: {e}", file=sys.stderr)
        return EXIT_RENDER_FAILED
    sys.stdout.writelines(lines)
    sys.stdout.writelines(verdict_lines(verdicts))
    sys.stdout.flush()  # the notes, on stderr, come after
    for note in notes:
        print(f"review: {note}", file=sys.stderr)
    print(f"review: both renders are in {args.out}/base and {args.out}/head", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
