"""One type for "this configuration cannot work" and one way to say it.

A rule (``mlstack.rules``) returns ``Problem``s; the config loader and every
component that refuses bad Args print them with ``format_problem`` and
``format_problems``, so a rule reads the same wherever it fires.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

NAMESPACE = "mlstack"  # the Pulumi project: config keys are mlstack:<key>


def config_key(key: str) -> str:
    """``mlstack:<key>``; a key already qualified (``other:key``) is kept."""
    return key if ":" in key else f"{NAMESPACE}:{key}"


@dataclass(frozen=True)
class Problem:
    """One reason a configuration cannot work: the key (without namespace), its value, why."""

    key: str
    value: object
    reason: str
    show_value: bool = True  # False for a secret: the message never echoes it

    def __str__(self) -> str:
        return format_problem(self)


def format_problem(problem: Problem) -> str:
    """``mlstack:key = 'value': reason`` (a secret: ``mlstack:key reason``, no value)."""
    if not problem.show_value:
        return f"{config_key(problem.key)} {problem.reason}"
    return f"{config_key(problem.key)} = {problem.value!r}: {problem.reason}"


def format_problems(title: str, problems: Sequence[Problem | str]) -> str:
    """A heading with the count, then one line per problem."""
    lines = "\n".join(f"  - {p}" for p in problems)
    return f"{title} ({len(problems)} problem{'s' if len(problems) != 1 else ''}):\n{lines}"
