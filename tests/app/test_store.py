"""Damage in the store: whatever happened to a published version's files, or to a run's small files, the store
never raises past its readers and the publish Job's retry does the right thing.

A published version's model.onnx or metadata.json truncated, zeroed, bit-flipped, not UTF-8, nested past the
recursion limit, or naming another model's checksum is not complete (``is_complete`` is False, ``load`` raises
NotPublished, Damaged where the record itself is valid), and the next publish of the run writes it whole again,
removing the staging files killed writers left. Bug: a metadata.json that was not UTF-8 escaped ``is_complete`` as
UnicodeDecodeError, and every retry of the Job died on it; JSON nested deeper than the recursion limit escaped it as
RecursionError the same way.

A run whose metrics.json, serving.json or labels.txt is not UTF-8 is the trainer's fault: exit 4 naming the file,
nothing published, the outputs kept to look at.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from mlapp import contract, store
from mlapp.publish import publish

from . import models
from .test_publish import NAME, TWO_INPUTS_SIGNATURE, VERSION, cli, digest, into, names, write_run

GATE = ("--gate", "accuracy>=0.9")
MODEL, RECORD = "model.onnx", "metadata.json"
Apply = Callable[[Path, bytes], object]  # (the version's directory, the model's bytes)


@dataclass(frozen=True)
class Damage:
    """What happens to a published version's files, and whether its record still stands (then it is Damaged)."""

    apply: Apply
    record_valid: bool


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).hexdigest().encode()


def model_file(change: Callable[[bytes], bytes]) -> Apply:
    return lambda directory, _: (directory / MODEL).write_bytes(change((directory / MODEL).read_bytes()))


def record_file(change: Callable[[bytes], bytes]) -> Apply:
    return lambda directory, _: (directory / RECORD).write_bytes(change((directory / RECORD).read_bytes()))


def record_edit(old: Callable[[bytes], bytes], new: Callable[[bytes], bytes]) -> Apply:
    """metadata.json with its one occurrence of ``old(model)`` replaced by ``new(model)``."""

    def apply(directory: Path, model: bytes) -> None:
        record = (directory / RECORD).read_bytes()
        assert record.count(old(model)) == 1, old(model)
        (directory / RECORD).write_bytes(record.replace(old(model), new(model)))

    return apply


def flip(data: bytes, at: int, count: int) -> bytes:
    """``data`` with ``count`` bytes from ``at`` on inverted."""
    return data[:at] + bytes(b ^ 0xFF for b in data[at : at + count]) + data[at + count :]


def delete(file: str) -> Apply:
    return lambda directory, _: (directory / file).unlink()


def staging_beside_a_torn_model(directory: Path, model: bytes) -> None:
    """A publisher killed mid-write: its staging files of both files beside a model cut short, no record."""
    (directory / MODEL).write_bytes(model[: len(model) // 3])
    (directory / RECORD).unlink()
    for target in (MODEL, RECORD):
        (directory / f".{target}.{secrets.token_hex(8)}.tmp").write_bytes(b"half")


DAMAGES = {
    "model truncated": Damage(model_file(lambda b: b[: len(b) // 2]), True),
    "model 32 bytes flipped": Damage(model_file(lambda b: flip(b, len(b) // 2, 32)), True),
    "model zero bytes": Damage(model_file(lambda _: b""), True),
    # What a crash can leave where the size reached the disk before the data: the right length, all NUL.
    "model zero-filled": Damage(model_file(lambda b: bytes(len(b))), True),
    "model deleted": Damage(delete(MODEL), True),
    "metadata not UTF-8": Damage(
        record_edit(lambda _: f'"name": "{NAME}"'.encode(), lambda _: b'"name": "\xff"'), False
    ),
    "metadata UTF-16": Damage(record_file(lambda b: b.decode("utf-8").encode("utf-16")), False),
    "metadata truncated": Damage(record_file(lambda b: b[: len(b) // 2]), False),
    "metadata zero bytes": Damage(record_file(lambda _: b""), False),
    "metadata zero-filled": Damage(record_file(lambda b: bytes(len(b))), False),
    "metadata deleted": Damage(delete(RECORD), False),
    "metadata nested past the recursion limit": Damage(record_file(lambda _: b"[" * 100_000), False),
    "metadata a JSON list": Damage(record_file(lambda _: b"[1, 2]"), False),
    "metadata's checksum flipped": Damage(record_edit(lambda m: sha256(m)[:8], lambda _: b"deadbeef"), True),
    "metadata names another model's checksum": Damage(record_edit(sha256, lambda m: sha256(m + b"x")), True),
    "metadata's size off by one": Damage(
        record_edit(lambda m: f'"bytes": {len(m)}'.encode(), lambda m: f'"bytes": {len(m) + 1}'.encode()), True
    ),
    "staging files beside a torn model": Damage(staging_beside_a_torn_model, False),
}


@pytest.mark.parametrize("damage", DAMAGES.values(), ids=DAMAGES.keys())
def test_a_damaged_version_is_never_complete_and_the_jobs_retry_publishes_it_whole(
    tmp_path: Path, damage: Damage
) -> None:
    store_dir = tmp_path / "store"
    data = models.two_inputs()
    directory = store_dir / NAME / VERSION
    publish(models.write(tmp_path / "model.onnx", data), store_dir, NAME, VERSION)
    assert store.is_complete(directory)
    damage.apply(directory, data)

    assert not store.is_complete(directory)  # never raises, whatever the bytes
    with pytest.raises(store.NotPublished) as refused:
        store.load(directory)
    model_there = (directory / MODEL).exists()
    assert isinstance(refused.value, store.Damaged) == (damage.record_valid and model_there), refused.value

    run = write_run(store_dir, data)
    result = cli("--run", run, *into(store_dir), *GATE)
    assert result.returncode == contract.EXIT_OK, result.stderr
    assert f"INFO mlapp.publish published {directory}" in result.stderr
    meta, model = store.load(directory)
    with model:
        assert model.record == digest(data)
    assert (meta["format_version"], meta["signature"]) == (store.FORMAT_VERSION, TWO_INPUTS_SIGNATURE)
    assert names(directory) == ["metadata.json", "model.onnx"]  # the staging files are gone too
    assert not run.exists()


def test_staging_files_beside_a_complete_version_do_not_hide_it(tmp_path: Path) -> None:
    """A second publisher of a version killed mid-write leaves staging files beside a whole version: it stays
    published, and the retry says so without writing."""
    store_dir = tmp_path / "store"
    data = models.two_inputs()
    directory = store_dir / NAME / VERSION
    publish(models.write(tmp_path / "model.onnx", data), store_dir, NAME, VERSION)
    record = (directory / RECORD).read_bytes()
    for target in (MODEL, RECORD):
        (directory / f".{target}.{secrets.token_hex(8)}.tmp").write_bytes(b"half")
    assert store.is_complete(directory)
    result = cli("--run", write_run(store_dir, data), *into(store_dir), *GATE)
    assert result.returncode == contract.EXIT_OK, result.stderr
    assert f"already published: {directory}" in result.stderr
    assert (directory / RECORD).read_bytes() == record


# ---------------------------------------------------------------- a run's small files


RUN_FILES = {
    contract.TRAINER_METRICS_FILE: ("is not JSON text", b'{"accuracy": 0.95, "note": "\xff\xfe"}'),
    contract.TRAINER_SERVING_FILE: ("is not UTF-8 text", b'{"batchable": true, "x": "\xc3"}'),
    contract.TRAINER_LABELS_FILE: ("is not UTF-8 text", b"cat\nd\xf6g\nbird\n"),  # Latin-1, not UTF-8
}


@pytest.mark.parametrize("file", RUN_FILES)
def test_a_run_file_that_is_not_utf8_exits_4_naming_it_and_publishes_nothing(tmp_path: Path, file: str) -> None:
    store_dir = tmp_path / "store"
    run = write_run(store_dir, models.identity("FP32"))
    says, content = RUN_FILES[file]
    (run / file).write_bytes(content)
    result = cli("--run", run, *into(store_dir), *GATE)
    assert result.returncode == contract.EXIT_CONTRACT, result.stderr
    assert f"{run / file} {says}" in result.stderr
    assert "can't decode byte" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (store_dir / NAME / VERSION).exists()
    assert (run / file).read_bytes() == content  # kept to look at

    # Written again by a trainer that gets it right, the next run publishes.
    fixed = {
        contract.TRAINER_METRICS_FILE: '{"accuracy": 0.95}',
        contract.TRAINER_SERVING_FILE: '{"batchable": true}',
        contract.TRAINER_LABELS_FILE: None,
    }[file]
    if fixed is None:
        (run / file).unlink()
    else:
        (run / file).write_text(fixed, encoding="utf-8")
    again = cli("--run", run, *into(store_dir), *GATE)
    assert again.returncode == contract.EXIT_OK, again.stderr
    assert (
        json.loads((store_dir / NAME / VERSION / RECORD).read_text(encoding="utf-8"))["model"]
        == digest(models.identity("FP32")).as_dict()
    )


@pytest.mark.parametrize("file", [contract.TRAINER_METRICS_FILE, contract.TRAINER_SERVING_FILE])
def test_a_run_file_nested_past_the_parsers_depth_exits_4_not_a_traceback(tmp_path: Path, file: str) -> None:
    """A small file ("[" a hundred thousand times) that makes json.loads raise RecursionError: no JSON, exit 4."""
    store_dir = tmp_path / "store"
    run = write_run(store_dir, models.identity("FP32"))
    (run / file).write_text("[" * 100_000, encoding="utf-8")
    result = cli("--run", run, *into(store_dir), *GATE)
    assert result.returncode == contract.EXIT_CONTRACT, result.stderr
    assert f"{run / file} is not JSON" in result.stderr
    assert "Traceback" not in result.stderr
