"""mlstack's policy pack: ``pulumi preview --policy-pack policy``.

Each resource rule of ``policy/rules.py`` becomes one ResourceValidationPolicy,
each stack rule one StackValidationPolicy, with its enforcement level. The rules
are pure functions over plain data; this file only turns what the engine sends
into plain data and reports what the rules find.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyPack,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError

try:  # from the repository (the tests; the CLI when the repository root is on sys.path)
    from policy import rules
except ModuleNotFoundError:  # the pack on its own: its directory is sys.path[0]
    import rules  # type: ignore[import-not-found,no-redef]

PACK_NAME = "mlstack"
LEVELS = {"mandatory": EnforcementLevel.MANDATORY, "advisory": EnforcementLevel.ADVISORY}


def plain(value: Any) -> Any:
    """The engine's props (proxies that raise on an unknown value) as dicts and lists.

    An unknown becomes ``rules.UNKNOWN``, so that a rule judges everything that is
    known and skips only what is not (the SDK would skip the whole policy).
    """
    if isinstance(value, Mapping):
        result: dict[str, Any] = {}
        for key in value:
            try:
                result[key] = plain(value[key])
            except UnknownValueError:
                result[key] = rules.UNKNOWN
        return result
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        items: list[Any] = []
        for index in range(len(value)):
            try:
                items.append(plain(value[index]))
            except UnknownValueError:
                items.append(rules.UNKNOWN)
        return items
    return value


def validation(rule: rules.Rule) -> Any:
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        for message in rule(args.resource_type, plain(args.props)):
            report_violation(message, None)

    return validate


def stack_validation(rule: rules.StackRule) -> Any:
    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        # The stack's resources as plain data; each message names the resource it is about.
        resources = [(resource.resource_type, plain(resource.props)) for resource in args.resources]
        for message in rule(resources):
            report_violation(message, None)

    return validate


def policies() -> list[ResourceValidationPolicy | StackValidationPolicy]:
    resource_policies: list[ResourceValidationPolicy | StackValidationPolicy] = [
        ResourceValidationPolicy(
            name=rule.name,
            description=rule.description,
            validate=validation(rule),
            enforcement_level=LEVELS[rule.level],
        )
        for rule in rules.RULES
    ]
    stack_policies = [
        StackValidationPolicy(
            name=rule.name,
            description=rule.description,
            validate=stack_validation(rule),
            enforcement_level=LEVELS[rule.level],
        )
        for rule in rules.STACK_RULES
    ]
    return [*resource_policies, *stack_policies]


if __name__ == "__main__":
    # Serves the policies to the engine until it stops the pack; never returns.
    PolicyPack(name=PACK_NAME, policies=list(policies()), enforcement_level=EnforcementLevel.MANDATORY)
