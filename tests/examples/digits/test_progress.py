"""The trainer's progress: one JSON line per epoch, and metrics a collector scrapes while the Job runs."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from digits import contract, progress
from digits.contract import Gate

from .conftest import TrainedRun
from .helpers import MODEL_NAME, Run, trainer_env

ACCURACY_GATE = Gate("accuracy", "maximize", 0.5)


def _lines(log: str, event: str) -> list[dict[str, object]]:
    found = []
    for line in log.splitlines():
        start = line.find('{"event":')
        if start >= 0:
            record = json.loads(line[start:])
            if record["event"] == event:
                found.append(record)
    return found


def test_every_epoch_logs_one_json_line_and_the_gate_one_more(trained_run: TrainedRun) -> None:
    epochs = _lines(trained_run.log, "epoch")
    assert [e["epoch"] for e in epochs] == [1, 2, 3, 4, 5, 6], trained_run.log
    assert [e["step"] for e in epochs] == [45 * n for n in range(1, 7)]  # 45 steps an epoch (test_train)
    for record in epochs:
        assert record["model"] == MODEL_NAME  # MLAPP_MODEL_NAME and MLAPP_MODEL_VERSION label the run
        assert record["version"] == "t1"
        assert record["rank"] == 0
        assert isinstance(record["loss"], float)
        assert record["loss"] > 0
    # The logged accuracy is the one the human-readable line gives for the same step.
    last = epochs[-1]
    assert f"Accuracy at step {last['step']}: {last['heldout_accuracy']:.4f}" in trained_run.log
    (gate,) = _lines(trained_run.log, "gate")
    assert gate["passed"] is True
    assert (gate["metric"], gate["direction"], gate["threshold"]) == ("accuracy", "maximize", 0.9)
    assert gate["value"] == last["heldout_accuracy"]
    # The verdict is on the metrics the run wrote: the publisher judges the same numbers.
    metrics = json.loads((trained_run.run.output_dir / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["accuracy"] == gate["value"]
    assert metrics["loss"] == last["loss"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{contract.METRICS_PATH}", timeout=2) as answer:
        text = answer.read().decode()
    return {s.name: s.value for family in text_string_to_metric_families(text) for s in family.samples}


def test_a_running_trainer_serves_its_progress_and_keeps_the_verdict_up_for_a_last_scrape(tmp_path: Path) -> None:
    """The gate fails here (1.0 is out of reach), and the verdict 0 is still scraped after training ends."""
    port = _free_port()
    env = trainer_env(
        Run.under(tmp_path, "scraped"), "scraped", **{contract.ENV_METRICS_PORT: str(port), progress.ENV_LINGER: "20"}
    )
    cmd = [
        sys.executable, "-m", "digits.train", "--epochs", "2", "--batch-size", "256", "--learning-rate", "0.001",
        "--gate", "accuracy>=1.0",
    ]  # fmt: skip
    trainer = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, samples = time.monotonic() + 120, {}
        while time.monotonic() < deadline and "mlapp_train_gate_passed" not in samples:
            assert trainer.poll() is None, f"the trainer ended before its verdict was scraped: {trainer.stdout}"
            with contextlib.suppress(OSError):
                samples = _scrape(port)
            time.sleep(0.2)
        assert samples.get("mlapp_train_gate_passed") == 0.0, samples
        assert samples["mlapp_train_epoch"] == 2
        assert samples["mlapp_train_epochs"] == 2
        assert samples["mlapp_train_step"] == 2 * 6  # ceil(1347 / 256) steps an epoch
        assert samples["mlapp_train_min_accuracy"] == 1.0
        assert 0 < samples["mlapp_train_heldout_accuracy"] < 1.0
        assert samples["mlapp_train_loss"] > 0
    finally:
        trainer.terminate()  # ends the linger; the exit code was decided before it
        out, _ = trainer.communicate(timeout=30)
    assert trainer.returncode == contract.EXIT_GATE, out


def test_only_rank_0_records_the_verdict() -> None:
    other = progress.Reporter("m", "rank-test", epochs=3, gate=ACCURACY_GATE, rank=1)
    first = progress.Reporter("m", "rank-test", epochs=3, gate=ACCURACY_GATE, rank=0)
    labels = {"model": "m", "version": "rank-test"}
    assert other.verdict({"accuracy": 0.4}) is False
    assert progress.REGISTRY.get_sample_value("mlapp_train_gate_passed", labels) is None
    assert first.verdict({"accuracy": 0.6}) is True
    assert progress.REGISTRY.get_sample_value("mlapp_train_gate_passed", labels) == 1.0
    other.epoch_done(1, 10, 0.5, 0.7)
    assert progress.REGISTRY.get_sample_value("mlapp_train_step", {**labels, "rank": "1"}) == 10
    assert progress.REGISTRY.get_sample_value("mlapp_train_step", {**labels, "rank": "0"}) is None


def test_a_diverged_loss_is_logged_as_null_not_nan(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("INFO", logger="digits.progress"):
        progress.Reporter("m", "nan-test", epochs=1, gate=ACCURACY_GATE).epoch_done(1, 1, float("nan"), 0.1)
    (line,) = [r.getMessage() for r in caplog.records if '"event":"epoch"' in r.getMessage()]
    assert json.loads(line)["loss"] is None


@pytest.mark.parametrize(
    ("name", "value"),
    [(contract.ENV_METRICS_PORT, "http"), (contract.ENV_METRICS_PORT, "70000"), (progress.ENV_LINGER, "-1")],
)
def test_a_bad_setting_is_refused_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=name), progress.reporting("m", "v", 1, ACCURACY_GATE, env={name: value}):
        pass


def test_a_rank_that_does_not_evaluate_reports_its_epoch_and_loss_but_no_accuracy(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reporter = progress.Reporter("ranked-model", "v-ranks", epochs=3, gate=ACCURACY_GATE, rank=1)
    with caplog.at_level("INFO", logger="digits.progress"):
        reporter.epoch_done(1, 12, 0.5, None)
    (record,) = _lines(caplog.text, "epoch")
    assert record["rank"] == 1
    assert record["heldout_accuracy"] is None
    labels = {"model": "ranked-model", "version": "v-ranks", "rank": "1"}
    assert progress.REGISTRY.get_sample_value("mlapp_train_epoch", labels) == 1
    assert progress.REGISTRY.get_sample_value("mlapp_train_loss", labels) == 0.5
    # No accuracy series for this rank: a 0 would read as a measurement.
    assert progress.REGISTRY.get_sample_value("mlapp_train_heldout_accuracy", labels) is None


def test_the_trainers_metrics_port_bounds_its_connections_their_stalls_and_their_headers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(progress, "MAX_SCRAPERS", 2)
    monkeypatch.setattr(progress._MetricsHandler, "timeout", 2.0)
    server = progress.serve(0, "127.0.0.1")
    port = server.server_port
    try:
        idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(2)]
        time.sleep(0.1)  # both accepted and holding their slots, sending nothing
        with socket.create_connection(("127.0.0.1", port), timeout=5) as third:
            started = time.monotonic()
            assert third.recv(1) == b"", "a connection past MAX_SCRAPERS was served"
            assert time.monotonic() - started < 1.0, "a connection past MAX_SCRAPERS waited instead of closing"
        for conn in idle:  # a client that stalls is dropped after the timeout, freeing its slot
            started = time.monotonic()
            assert conn.recv(1) == b""
            assert time.monotonic() - started < 4
            conn.close()
        with socket.create_connection(("127.0.0.1", port), timeout=5) as flood:
            headers = b"".join(b"X-%d: y\r\n" % i for i in range(101))
            flood.sendall(b"GET /metrics HTTP/1.1\r\nHost: t\r\n" + headers + b"\r\n")
            assert flood.recv(64).startswith(b"HTTP/1.0 431"), "101 headers were accepted"
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/other", timeout=2)
        assert missing.value.code == 404
        progress.Reporter("bounded", "v1", epochs=1, gate=ACCURACY_GATE).epoch_done(1, 3, 0.25, 0.75)
        assert _scrape(port)["mlapp_train_epochs"] >= 1
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("gate", "threshold_shown"),
    [(Gate("accuracy", "maximize", 0.8), 0.8), (Gate("loss", "minimize", 0.3), None), (None, None)],
)
def test_the_gate_gauge_shows_an_accuracy_gate_and_the_verdict_any_gate_it_can_judge(
    gate: Gate | None, threshold_shown: float | None
) -> None:
    """mlapp_train_min_accuracy is the dashboard's line under the accuracy curve: an accuracy gate's
    threshold, and nothing for a gate on another metric, or none."""
    version = f"gauge-{gate}"
    labels = {"model": "m", "version": version}
    reporter = progress.Reporter("m", version, epochs=1, gate=gate)
    assert progress.REGISTRY.get_sample_value("mlapp_train_min_accuracy", labels) == threshold_shown
    passed = reporter.verdict({"accuracy": 0.9, "loss": 0.2, "steps": 10})
    assert passed is (None if gate is None else True)
    assert progress.REGISTRY.get_sample_value("mlapp_train_gate_passed", labels) == (None if gate is None else 1.0)
