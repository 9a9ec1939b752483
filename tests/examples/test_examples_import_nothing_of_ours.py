"""Every example trainer keeps the trainer contract without importing anything of mlstack's
(docs/trainer-contract.md): it is environment variables, files and an exit code, so a user's trainer
built from an example needs nothing of this repository. Every .py file under examples/ is read, so a
new example is covered the day it lands."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from .trainers import EXAMPLES

# This repository's top-level packages and the directories a test run puts on sys.path.
OURS = frozenset({"mlapp", "mlstack", "components", "stack", "tools", "tests"})
# A virtualenv or cache inside an example is not the example's code.
SKIPPED_DIRS = frozenset({"__pycache__", "venv", ".venv"})


def example_sources() -> list[Path]:
    return sorted(p for p in EXAMPLES.rglob("*.py") if not SKIPPED_DIRS & set(p.relative_to(EXAMPLES).parts))


def imports_of_ours(source: str) -> list[str]:
    """The modules of ours that ``source`` imports: ``import x``, ``from x import y``, and
    ``importlib.import_module("x")`` / ``__import__("x")`` with a literal name. A relative import
    (``from . import x``) stays inside the example."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            called = ast.unparse(node.func)
            if called in {"importlib.import_module", "import_module", "__import__"} and isinstance(
                node.args[0].value, str
            ):
                names = [node.args[0].value]
        found += [name for name in names if name.split(".")[0] in OURS]
    return found


def test_every_example_trainer_is_read() -> None:
    """Not vacuous: the examples this repository documents are among the files read."""
    read = {p.relative_to(EXAMPLES).as_posix() for p in example_sources()}
    assert {"iris-forest/train.py", "tabular-text/train.py"} <= read, sorted(read)


@pytest.mark.parametrize("path", example_sources(), ids=lambda p: p.relative_to(EXAMPLES).as_posix())
def test_the_example_imports_nothing_of_ours(path: Path) -> None:
    ours = imports_of_ours(path.read_text(encoding="utf-8"))
    assert not ours, f"{path.relative_to(EXAMPLES.parent)} imports {ours}: an example must run without mlstack"


@pytest.mark.parametrize(
    ("source", "found"),
    [
        ("import mlapp.contract", ["mlapp.contract"]),
        ("import numpy, stack.config as c", ["stack.config"]),
        ("from mlstack.rules import Problem", ["mlstack.rules"]),
        ("from tests import support", ["tests"]),
        ("def f():\n    from components import image", ["components"]),
        ("import importlib\nimportlib.import_module('tools.harness')", ["tools.harness"]),
        ("__import__('mlapp')", ["mlapp"]),
        ("import stackprinter\nfrom .stack import x\nfrom . import tools", []),
        ("import torch\nfrom sklearn.datasets import load_iris", []),
    ],
)
def test_the_check_finds_each_form_of_import(source: str, found: list[str]) -> None:
    assert imports_of_ours(source) == found
