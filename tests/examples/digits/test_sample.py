"""The sample digit a newcomer sends: a real held-out digit, as dark ink on a light ground."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mlapp import sample
from mlapp.data import load_digits_dataset
from mlapp.preprocess import Preprocessing, image_bytes_to_input


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
