"""The audio rate transcribe resamples to: the frontend's ``fs``, or without a frontend the encoder's."""
from __future__ import annotations

import pytest
import yaml

from echo_plugin.inference.transcriber import model_rate


@pytest.mark.parametrize("config, rate", [
    ({"frontend": "default", "frontend_conf": {"fs": 8000}, "encoder_conf": {"fs": 22050}}, 8000),
    ({"frontend": "default", "frontend_conf": {}}, 16000),
    ({"frontend": None, "frontend_conf": {}, "encoder": "whisper_style_audio", "encoder_conf": {"fs": 8000}}, 8000),
    ({"frontend": None, "frontend_conf": {}, "encoder_conf": {}}, 16000),
])  # fmt: skip
def test_model_rate(tmp_path, config, rate) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    assert model_rate(path) == rate
