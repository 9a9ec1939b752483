"""Imports run one way: pure modules, then components, then the wiring, then ``__main__.py``.

Read from the source (no import runs), so a module that reaches upward or
sideways fails here with the line that does it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SDKS = (
    "pulumi", "pulumi_kubernetes", "pulumi_azure_native", "pulumi_gcp", "pulumi_docker_build", "pulumi_random",
    "pulumi_tls",
)  # fmt: skip
# Modules of components/ that are shared by every component rather than being one.
# Builders every cluster component may share: the contract, the DNS and metrics policies, KEDA's chart.
SHARED_COMPONENT_MODULES = {"components.target", "components.network", "components.keda"}


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, module) for every import in ``path``, relative imports resolved against its package."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            yield node.lineno, base
            for alias in node.names:  # `from components import aks` imports components.aks
                yield node.lineno, f"{base}.{alias.name}"


def _modules(folder: str) -> list[Path]:
    # Not the policy pack's own virtualenv (policy/venv): thousands of third-party files.
    return sorted(p for p in (ROOT / folder).rglob("*.py") if "venv" not in p.relative_to(ROOT).parts)


def _offences(paths: list[Path], forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in paths
        for line, module in _imports(path)
        if any(module == f or module.startswith(f + ".") for f in forbidden)
    ]


def test_the_pure_layer_imports_no_sdk_and_nothing_above_it() -> None:
    assert _offences(_modules("mlstack"), (*SDKS, "components", "stack", "tools", "tests")) == []


def test_the_app_imports_nothing_of_the_program() -> None:
    # app/ is the images' build context: nothing outside it exists there.
    assert _offences(_modules("app/mlapp"), (*SDKS, "components", "mlstack", "stack", "tools")) == []


@pytest.mark.parametrize("path", _modules("components"), ids=lambda p: p.name)
def test_a_component_imports_no_config_and_no_other_component(path: Path) -> None:
    own = f"components.{path.stem}"
    others = tuple(
        f"components.{p.stem}"
        for p in _modules("components")
        if p.stem != "__init__" and f"components.{p.stem}" not in {own, *SHARED_COMPONENT_MODULES}
    )
    assert _offences([path], ("stack", "tools", "tests", *others)) == []


def test_the_wiring_is_the_only_importer_of_the_config() -> None:
    importers = {
        path.relative_to(ROOT).as_posix()
        for folder in ("components", "mlstack", "stack", "tools", "policy", "app/mlapp")
        for path in _modules(folder)
        if _offences([path], ("stack.config",))
    }
    assert importers <= {"stack/wiring.py"}


def test_main_only_assembles() -> None:
    main = ROOT / "__main__.py"
    imported = {module for _, module in _imports(main)}
    assert imported <= {"__future__", "__future__.annotations", "pulumi", "stack", "stack.config", "stack.wiring"}
    assert len(main.read_text(encoding="utf-8").splitlines()) <= 20
