"""ESPnet's quantize_asr_model / quantize_modules / quantize_dtype with Echo's strict loading: the weights are
loaded first, then every Linear of the model is quantized in place, the beam search's scorers included."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from echo_plugin.inference.quantize import quantize_model
from test.asr.espnet_build import build_asr

ENCODER_CONF = "{output_size: 16, attention_heads: 2, linear_units: 32, num_blocks: 2, input_layer: conv2d}"
DECODER_CONF = "{attention_heads: 2, linear_units: 32, num_blocks: 1}"
QLINEAR = torch.ao.nn.quantized.dynamic.Linear


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> tuple[Path, Path]:
    """(config.yaml, model.pth) of a tiny Echo model whose weights are not the initial ones."""
    work = tmp_path_factory.mktemp("quantize")
    _, args, model = build_asr(work, ENCODER_CONF, DECODER_CONF)
    (work / "config.yaml").write_text(yaml.safe_dump(vars(args)))
    torch.manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    torch.save(model.state_dict(), work / "model.pth")
    return work / "config.yaml", work / "model.pth"


def test_the_loaded_weights_are_quantized_and_the_scorers_use_them(saved) -> None:
    from echo_plugin.inference.speaker_speech2text import EchoSpeech2Text

    config, model_file = saved
    plain = EchoSpeech2Text(config, model_file, beam_size=1)
    linear = sum(type(m) is torch.nn.Linear for m in plain.asr_model.modules())
    int8 = EchoSpeech2Text(config, model_file, beam_size=1, quantize_asr_model=True, quantize_modules=["Linear"],
                           quantize_dtype="qint8")
    assert linear > 10 and not any(type(m) is torch.nn.Linear for m in int8.asr_model.modules())
    assert sum(isinstance(m, QLINEAR) for m in int8.asr_model.modules()) == linear
    scorer = int8.beam_search.full_scorers["decoder"]  # the beam search decodes with the quantized decoder
    assert scorer is int8.asr_model.decoder and any(isinstance(m, QLINEAR) for m in scorer.modules())
    # the quantized weights are the loaded ones (not the initial ones): the outputs follow float32's closely
    feats = torch.randn(1, 60, 20)  # (B, T, input_size 20): this model takes features, no frontend
    with torch.no_grad():
        want, _ = plain.asr_model.encode(feats, torch.tensor([60]))
        got, _ = int8.asr_model.encode(feats, torch.tensor([60]))
    cosine = torch.nn.functional.cosine_similarity(got[0], want[0], dim=-1)
    assert cosine.min() > 0.98 and not torch.equal(got, want), cosine


def test_unknown_modules_or_dtypes_are_refused() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 4))
    with pytest.raises(ValueError, match="Linearr"):
        quantize_model(model, ["Linearr"])
    with pytest.raises(ValueError, match="quint4"):
        quantize_model(model, ["Linear"], "quint4")
    assert quantize_model(model, ["Linear"], "float16") == 1
