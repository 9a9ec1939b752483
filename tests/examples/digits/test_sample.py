"""The sample digit a newcomer sends: a real held-out digit, as dark ink on a light ground, that the model
``make train`` makes gets right."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from digits import sample
from digits.data import load_digits_dataset
from mlapp.plugins.image import Preprocessing, image_bytes_to_input

from .helpers import MAKE_TRAIN_ARGS, REPO, run_trainer


def test_sample_round_trips_through_the_servers_preprocessing(tmp_path: Path) -> None:
    out = tmp_path / "digit.png"
    label = sample.write_sample(out, index=3)
    data = load_digits_dataset(0)
    assert label == int(data.y_test[3])
    with Image.open(out) as img:
        assert img.size == (128, 128)
        assert np.asarray(img).mean() > 127, "a person's picture: dark ink on light paper"
    model_input = image_bytes_to_input(out.read_bytes(), Preprocessing(height=8, width=8))
    np.testing.assert_allclose(model_input[0, 0], data.x_test[3, 0], atol=1 / 255 + 1e-6)


def test_bad_index_is_refused_with_the_range(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert sample.main([str(tmp_path / "x.png"), "--index", "100000"]) == 1
    assert "--index must be between 0 and" in capsys.readouterr().err


def test_the_default_sample_is_one_the_model_make_train_makes_gets_right(tmp_path: Path) -> None:
    """Bug: the README's first answer was wrong. The default sample was held-out example 0, a 5, which the
    model `make train` makes called a 9 (p 0.50)."""
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    assert " ".join(MAKE_TRAIN_ARGS).replace("--gate accuracy>=0.9", "--gate 'accuracy>=0.9'") in makefile, (
        "make train's parameters changed: train here as it does"
    )
    output = tmp_path / "run"
    result = run_trainer(None, "--output-dir", str(output), *MAKE_TRAIN_ARGS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads((output / "metrics.json").read_text(encoding="utf-8"))["steps"] == 450

    picture = tmp_path / "digit.png"
    label = sample.write_sample(picture)  # the default index, as `python -m digits.sample` writes it
    scale = 16
    with Image.open(picture) as img:
        grey = np.asarray(img.convert("L"), dtype=np.float32)
    assert grey.shape == (8 * scale, 8 * scale)
    # Drawn 16x nearest-neighbour, dark ink on a light ground: every 16th pixel, inverted, is the 8x8 digit.
    digit = (255.0 - grey[::scale, ::scale]) / 255.0
    model = ort.InferenceSession(str(output / "model.onnx"), providers=["CPUExecutionProvider"])
    probabilities = model.run(None, {"input": digit.reshape(1, 1, 8, 8)})[0][0]
    assert int(probabilities.argmax()) == label, probabilities
    assert probabilities[label] > 0.9, probabilities


def test_without_a_path_the_sample_goes_under_build_which_git_ignores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bug: the picture was written as digit.png into the current directory, the repository's root, where
    `git status` showed it as a file to commit."""
    monkeypatch.chdir(tmp_path)
    assert sample.main([]) == 0
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == ["build", "build/digit.png"]
    assert capsys.readouterr().out.startswith("wrote build/digit.png: a ")
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", "--quiet", sample.DEFAULT_OUT.as_posix()], cwd=REPO, check=False
    )
    assert ignored.returncode == 0, f"{sample.DEFAULT_OUT} is not ignored by the repository's .gitignore"
