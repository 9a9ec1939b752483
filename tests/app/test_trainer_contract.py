"""docs/trainer-contract.md (the trainer contract for people) and mlapp.contract (for programs) say the same.

A variable, file or exit code renamed or added on one side only fails here: the document is what a
team writes its trainer against, the module what the Job and the publisher are built from. The Job's
environment is held to the document's table by tests/pure/test_workloads.py.
"""

from __future__ import annotations

import re
from pathlib import Path

from mlapp import contract

DOC = (Path(__file__).resolve().parents[2] / "docs" / "trainer-contract.md").read_text(encoding="utf-8")
# The variables the trainer gets: every ENV_ name the module declares from the trainer contract's section on.
TRAINER_SECTION = Path(contract.__file__).read_text(encoding="utf-8").split("# --- the trainer contract")[1]
TRAINER_ENV = {
    value for name, value in vars(contract).items() if name.startswith("ENV_") and f"{name}: Final" in TRAINER_SECTION
}
# Given to the trainer as well (the contract's comment says so), though declared with the server's.
SHARED_ENV = {
    contract.ENV_MODEL_NAME,
    contract.ENV_MODEL_VERSION,
    contract.ENV_LOG_LEVEL,
    contract.ENV_METRICS_PORT,
    contract.ENV_METRICS_LINGER_SECONDS,
    contract.ENV_TRAINER_IMAGE,
}


def test_every_variable_the_module_gives_a_trainer_is_documented_and_no_other() -> None:
    documented = set(re.findall(r"`(MLAPP_[A-Z_]+)`", DOC))
    assert documented == TRAINER_ENV | SHARED_ENV


def test_torchruns_variables_are_the_ones_the_document_names() -> None:
    named = set(re.findall(r"`(PET_[A-Z_]+)(?:=\d+)?`", DOC))
    assert named == {*contract.TORCHRUN_ENV.values(), contract.TORCHRUN_MAX_RESTARTS[0]}
    assert f"`{contract.TORCHRUN_MAX_RESTARTS[0]}={contract.TORCHRUN_MAX_RESTARTS[1]}`" in DOC


def test_the_outputs_are_the_files_the_document_names() -> None:
    outputs = DOC.split("## Outputs")[1].split("###")[0]
    files = re.findall(r"^\| `([a-z.]+)` \| (yes|no) \|", outputs, flags=re.M)
    assert files == [
        (contract.TRAINER_MODEL_FILE, "yes"),
        (contract.TRAINER_METRICS_FILE, "yes"),
        (contract.TRAINER_LABELS_FILE, "no"),
        (contract.TRAINER_SERVING_FILE, "no"),
    ]


def test_the_exit_codes_table_is_the_modules() -> None:
    table = DOC.split("## Exit codes")[1].split("\n\n")[1]
    codes = [int(code) for code in re.findall(r"^\| (\d)", table, flags=re.M)]
    assert codes == [
        contract.EXIT_OK,
        contract.EXIT_ERROR,
        contract.EXIT_GATE,
        contract.EXIT_PEER,
        contract.EXIT_CONTRACT,
    ]
    assert (
        len({contract.EXIT_OK, contract.EXIT_ERROR, contract.EXIT_GATE, contract.EXIT_PEER, contract.EXIT_CONTRACT})
        == 5
    )


def test_the_store_layout_the_document_gives_is_the_modules() -> None:
    assert f"`<store>/<model>/{contract.RUNS_DIR}/<version>/`" in DOC
    assert contract.run_path("/models", "m", "v") == f"/models/m/{contract.RUNS_DIR}/v"
    assert contract.checkpoint_path("/models", "m", "v") == f"/models/m/{contract.CHECKPOINTS_DIR}/v"
    assert contract.record_path("/models", "m", "v") == f"/models/m/v/{contract.METADATA_FILE_NAME}"
    assert f"`{contract.MODEL_MOUNT}`" in DOC
    assert f"user and group {contract.APP_UID}" in DOC
