"""Project files: Pulumi.yaml declares every key the program reads, the stack files use them, the README mirrors it."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from tests.support import STACKS
from tools import config_doc, harness, pulumi_internals

ROOT = harness.ROOT
SIMPLE_TYPES = {"string", "integer", "boolean", "array"}


def keys_read_by_the_program(stack: str) -> set[str]:
    """Every key the whole program asks the runtime for, recorded while it runs (a fresh run, not a shared one)."""
    with pulumi_internals.recording_config_reads("stack.config") as read:
        harness.run_stack(stack)
    return {k for k in read if k.startswith("mlstack:")}


def test_every_key_read_is_declared_and_every_declared_key_is_read(kubeconfig: Path) -> None:
    declared = set(harness.project_declarations())
    read_by_any: set[str] = set()
    for stack in STACKS:
        read = keys_read_by_the_program(stack)
        assert read - declared == set(), f"{stack} reads keys Pulumi.yaml does not declare: {sorted(read - declared)}"
        read_by_any |= read
    assert declared - read_by_any == set(), f"declared but no stack reads them: {sorted(declared - read_by_any)}"


def test_every_declaration_has_type_description_and_default() -> None:
    for key, decl in harness.project_declarations().items():
        assert decl.get("type") in SIMPLE_TYPES, f"{key}: type {decl.get('type')!r}"
        assert decl.get("description"), f"{key}: no description"
        assert "default" in decl, f"{key}: no default (the CLI would then demand a value in every stack)"
        assert "secret" not in decl, f"{key}: a declared secret with a default breaks `pulumi up` (pulumi#21865)"
        if decl["type"] == "array":
            assert decl.get("items", {}).get("type") in SIMPLE_TYPES, f"{key}: array without item type"


@pytest.mark.parametrize("stack", STACKS)
def test_stack_files_use_only_declared_keys_of_the_right_type(stack: str) -> None:
    data = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text(encoding="utf-8"))
    declared = harness.project_declarations()
    for key in data["config"]:
        if key.startswith("mlstack:"):
            assert key in declared, f"Pulumi.{stack}.yaml sets {key}, which Pulumi.yaml does not declare (a typo?)"
    harness.load_stack_config(stack)  # raises on a type mismatch


def test_shipped_stack_list_matches_the_stack_files() -> None:
    files = {p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in ROOT.glob("Pulumi.*.yaml")}
    assert files == set(STACKS)


def test_readme_config_reference_is_identical_to_pulumi_yaml() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert config_doc.section(readme) == config_doc.render(), "README is stale: run `make docs`"


def test_runtime_uses_the_venv_the_makefile_creates() -> None:
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text(encoding="utf-8"))
    assert project["name"] == "mlstack"
    assert project["runtime"] == {"name": "python", "options": {"toolchain": "pip", "virtualenv": "venv"}}
    assert re.search(r"^VENV \?= venv$", (ROOT / "Makefile").read_text(encoding="utf-8"), re.MULTILINE)


def test_ci_runs_the_readmes_test_command() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "make test" in readme
    assert ci.strip().splitlines()[-1] == "make test"


def test_requirements_are_pinned() -> None:
    for name in ("requirements.txt", "requirements-dev.txt"):
        for raw in Path(ROOT / name).read_text(encoding="utf-8").splitlines():
            line = raw.split("#")[0].strip()
            if line and not line.startswith("-r "):
                assert re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[\w.]+", line), f"{name}: {line!r} is not pinned"


# An internal tracker's number ("issue N") means nothing to a reader, who cannot look it up. A public one keeps
# its repository: kubernetes/kubernetes#67577, or a GitHub URL.
_TRACKER_NUMBER = re.compile(r"\b[Ii]ssues? #?[0-9]+\b")
_TEXT_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".txt", ".toml", ".cfg", ""}


def _tracked() -> list[str]:
    """Every file git tracks here, by its path from the repository's root."""
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True)
    return listed.stdout.splitlines()


def _tracked_lines(keep: Callable[[str], bool]) -> Iterator[tuple[str, int, str]]:
    """(path, line number, line) of every tracked file ``keep`` accepts; the vendored CRDs are someone else's."""
    for name in _tracked():
        path = ROOT / name
        if not keep(name) or not path.is_file() or name.startswith("deploy/crds/"):
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            yield name, number, line


def _is_text(name: str) -> bool:
    return Path(name).suffix in _TEXT_SUFFIXES


def test_no_internal_tracker_number_in_code_or_docs() -> None:
    found = [
        f"{name}:{number}: {line.strip()[:100]}"
        for name, number, line in _tracked_lines(_is_text)
        if _TRACKER_NUMBER.search(line) and "github.com" not in line
    ]
    assert found == [], "say what is meant instead of an internal issue number:\n" + "\n".join(found)


# A document named the way a repository's top-level ones are (README.md, BENCHMARKS.md), not part of a path or
# URL: a pointer the reader follows into this repository. Another repository's is named with it, and is not
# one ("Azure/AKS CHANGELOG.md").
_DOC_POINTER = re.compile(r"(?<![\w./-])([A-Z][A-Z_-]*\.md)\b")
_OTHER_REPOSITORY = re.compile(r"[\w.-]+/[\w.-]+\s+$")


def test_no_pointer_to_a_document_the_repository_does_not_hold() -> None:
    """Bug: docs/gke.md and tests/__init__.py sent the reader to a design document (``DESIGN`` + ``.md``) that
    was never in the repository.
    Links are checked by tests/project/test_readme.py; this checks the names written in prose and comments."""
    held = {Path(name).name for name in _tracked()}
    found = [
        f"{name}:{number}: {match[1]}"
        for name, number, line in _tracked_lines(_is_text)
        for match in _DOC_POINTER.finditer(line)
        if match[1] not in held and not _OTHER_REPOSITORY.search(line[: match.start()])
    ]
    assert found == [], "pointers to documents the repository does not hold:\n" + "\n".join(found)


def test_the_venv_takes_torch_from_the_cpu_index_before_anything_else() -> None:
    """PyPI serves torch==2.13.0 on Linux x86_64 as the CUDA 13 build: several GB no test or laptop run uses. The
    Makefile installs the pinned torch from PyTorch's CPU-only index, without dependencies, before the rest."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    recipe = makefile[makefile.index("$(STAMP): $(RUNTIME_STAMP)") :].split("\n\n", 1)[0]
    torch = recipe.index("--index-url $(TORCH_CPU_INDEX)")
    assert torch < recipe.index("-r requirements-dev.txt"), recipe
    assert "TORCH_CPU_INDEX := https://download.pytorch.org/whl/cpu" in makefile
    assert "grep -E '^torch==' examples/digits/requirements.txt" in recipe


# A path of the program's own Python code, as a document or a config description names it for the reader to open.
_CODE_PATH = re.compile(r"(?<![\w./-])((?:mlstack|components|stack|tools|bench|policy|app/mlapp)/[\w/]*\.py)\b")


def test_every_code_path_the_docs_name_exists() -> None:
    """Bug: after each cloud's facts moved to mlstack/clouds/, docs and Pulumi.yaml still sent the reader to
    mlstack/catalogue.py for the AKS GPU sizes and to mlstack/acr_token.py for a module that had moved."""
    names = set(_tracked())
    found = [
        f"{name}:{number}: {match[1]}"
        for name, number, line in _tracked_lines(lambda name: name.endswith(".md") or name == "Pulumi.yaml")
        for match in _CODE_PATH.finditer(line)
        if "<" not in match[1] and match[1] not in names and not (ROOT / match[1]).exists()
    ]
    assert found == [], "paths to code that is not there:\n" + "\n".join(found)
