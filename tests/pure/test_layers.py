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


# What every cloud provides, and the registry of them: shared by the clouds' modules, not one cloud's.
CLOUDS_SHARED = {"mlstack/clouds/__init__.py", "mlstack/clouds/cloud.py"}


def _cloud_of(path: Path) -> str:
    """The cloud a module of mlstack/clouds/ belongs to: ``<cloud>.py`` and ``<cloud>_*.py`` are its."""
    return path.stem.split("_", 1)[0]


def _cloud_modules() -> list[Path]:
    return [p for p in _modules("mlstack/clouds") if p.relative_to(ROOT).as_posix() not in CLOUDS_SHARED]


def test_the_clouds_modules_are_in_the_pure_layer() -> None:
    """The rule above holds for mlstack/clouds/ too (it walks mlstack/ whole): named here, so that a move of the
    clouds out of mlstack/ does not take them out of the rule unnoticed."""
    clouds = _modules("mlstack/clouds")
    assert {"mlstack/clouds/azure.py", "mlstack/clouds/gcp.py", "mlstack/clouds/local.py"} <= {
        p.relative_to(ROOT).as_posix() for p in clouds
    }
    assert set(clouds) <= set(_modules("mlstack"))


@pytest.mark.parametrize("path", [*_cloud_modules(), ROOT / "mlstack/clouds/cloud.py"], ids=lambda p: p.name)
def test_a_cloud_module_imports_no_other_clouds(path: Path) -> None:
    """A cloud's modules import their own cloud's, the shared ``Cloud`` type and the generic modules, never
    another cloud's nor the registry (which imports every cloud): a cloud can be added, changed or removed alone.
    The shared type imports no cloud's at all."""
    own = {p.stem for p in _cloud_modules() if _cloud_of(p) == _cloud_of(path)} if path.stem != "cloud" else set()
    allowed = {"mlstack.clouds", "mlstack.clouds.cloud", *(f"mlstack.clouds.{stem}" for stem in own)}
    found = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for line, module in _imports(path)
        if module.startswith("mlstack.clouds")
        and module not in allowed
        and not module.startswith("mlstack.clouds.cloud.")  # a name of the shared type's module
        and not any(module.startswith(f"mlstack.clouds.{stem}.") for stem in own)  # a name of its own module
    ]
    assert found == []


@pytest.mark.parametrize("path", sorted((ROOT / "mlstack").glob("*.py")), ids=lambda p: p.name)
def test_generic_code_is_handed_a_cloud_and_imports_none(path: Path) -> None:
    """A generic module of mlstack/ imports no cloud's module, nor the registry: the clouds' modules import the
    generic ones (their shapes, their rules), so a generic module is handed a ``Cloud`` (whose type alone it may
    name, mlstack.clouds.cloud) and never looks one up itself."""
    cloud_modules = tuple(f"mlstack.clouds.{p.stem}" for p in _cloud_modules())
    found = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for line, module in _imports(path)
        if module == "mlstack.clouds" or any(module == m or module.startswith(m + ".") for m in cloud_modules)
    ]
    assert found == []


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
