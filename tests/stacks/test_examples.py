"""Each shipped example trainer on the shipped stacks: its ``stack-config.yaml`` merged over a stack, as its
README tells a user to, makes a stack whose training Job runs that example's image, built from its own
context, with its command, and whose Job and publish step hold it to its gate.

The examples are found, not listed: every directory of ``examples/`` with a Dockerfile. One without a
``stack-config.yaml`` must be the trainer the stacks build by default (the digits example), so that the
default stacks cover it. Running the examples' trainers: tests/examples.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import pytest
import yaml

from mlapp import contract
from mlapp.gate import Gate
from mlstack import specs
from tests import pods
from tests.support import IMAGE, JOB, PUBLISH, TRAIN, SharedRun, container
from tools import harness

EXAMPLES: Final = sorted(p.parent for p in (harness.ROOT / "examples").glob("*/Dockerfile"))
# The local stack, and a cloud stack of each kind.
STACKS: Final = ("local", "dev", "gke")


def example_config(example: Path) -> dict[str, Any]:
    """The ``config:`` block of the example's stack-config.yaml; none: the stacks' own defaults."""
    path = example / "stack-config.yaml"
    if not path.exists():
        return {}
    config: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))["config"]
    return config


def setting(config: dict[str, Any], key: str) -> Any:
    """A key as the example sets it, else as Pulumi.yaml declares it (the stacks ship no trainer keys)."""
    full = f"mlstack:{key}"
    return config[full] if full in config else harness.project_declarations()[full]["default"]


def test_the_default_trainer_is_among_the_examples() -> None:
    contexts = {example.relative_to(harness.ROOT).as_posix() for example in EXAMPLES}
    assert specs.DIGITS_CONTEXT in contexts, f"the default trainer, {specs.DIGITS_CONTEXT}, has no Dockerfile"


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_an_example_sets_declared_keys_only_and_names_its_own_context(example: Path) -> None:
    config = example_config(example)
    if not config:
        assert example.relative_to(harness.ROOT).as_posix() == specs.DIGITS_CONTEXT, (
            f"{example.name} has no stack-config.yaml, and the stacks do not build it by default"
        )
        return
    declared = harness.project_declarations()
    assert [key for key in config if key not in declared] == [], f"{example.name}: keys Pulumi.yaml does not declare"
    assert config["mlstack:trainerContext"] == example.relative_to(harness.ROOT).as_posix()


@pytest.mark.parametrize("stack", STACKS)
@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_the_job_runs_the_examples_image_and_command_held_to_its_gate(
    shared_run: SharedRun, example: Path, stack: str
) -> None:
    config = example_config(example)
    result = shared_run(stack, config)
    context = example.relative_to(harness.ROOT).as_posix()

    # The trainer image, built from the example's own context and Dockerfile, as it stands.
    image = result.one(IMAGE, "-trainer")
    assert image.inputs["context"] == {"location": context}
    assert image.inputs["dockerfile"] == {"location": f"{context}/Dockerfile"}
    assert "target" not in image.inputs
    trainer = container(result.one(JOB, TRAIN))
    assert trainer["image"] == image.outputs["ref"] == result.exports["trainerImage"]

    # Its command, or none: the image's ENTRYPOINT/CMD.
    command = setting(config, "trainerCommand")
    assert trainer.get("command") == (command or None), f"{example.name} on {stack}"
    assert "args" not in trainer
    if not command:
        assert pods.image_command(example), f"{example.name}'s image runs nothing of its own"

    # Its gate, told to the trainer and held by the publish step; its model's name.
    threshold = setting(config, "gateThreshold") or setting(config, "minAccuracy")
    gate = Gate(setting(config, "gateMetric"), setting(config, "gateDirection"), float(threshold))
    env = {var["name"]: var.get("value") for var in trainer["env"]}
    assert Gate.from_env(env) == gate
    name = setting(config, "modelName")
    assert env[contract.ENV_MODEL_NAME] == name
    publish = container(result.one(JOB, PUBLISH))["command"]
    options = dict(zip(publish[3::2], publish[4::2], strict=True))
    assert Gate.parse(options["--gate"]) == gate
    assert (options["--model-name"], options["--version"]) == (name, result.exports["modelVersion"])
    assert options["--run"] == env[contract.ENV_OUTPUT_DIR]
    assert result.exports["curl"].endswith(f"/v2/models/{name}")
    assert result.exports["modelName"] == name, f"{example.name} on {stack}: `make smoke` would call another model"

    problems = [p for _, obj in harness.kubernetes_manifests(result) for p in harness.validate_manifest(obj, "1.33")]
    assert problems == [], f"{example.name} on {stack}:\n" + "\n".join(problems)
