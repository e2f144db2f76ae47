"""The LibriSpeech-100 configs: parameter counts stated in their headers, ESPnet's published settings."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from bench.train_throughput import build_model
from echo_plugin.recipe.overlay import load_config

CONF = Path(__file__).resolve().parents[2] / "egs" / "librispeech_100" / "asr1" / "conf"
TUNING = sorted((CONF / "tuning").glob("*.yaml"))


@pytest.mark.parametrize("config", TUNING, ids=lambda p: p.name)
def test_stated_parameter_count_is_the_built_models(config: Path) -> None:
    stated = re.search(r"measured here\): ([\d,]+)", config.read_text())
    assert stated, f"{config.name}: no parameter count in the header"
    model = build_model(config, vocab=5000)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == int(stated.group(1).replace(",", ""))


@pytest.mark.parametrize("config", TUNING, ids=lambda p: p.name)
def test_gpu_and_averaging_settings(config: Path) -> None:
    conf = load_config(config)  # an overlay (base:) merged
    assert conf["use_amp"] is True and conf["batch_bins"] == 16000000 and conf["accum_grad"] == 4
    assert conf["keep_nbest_models"] == 10 and conf["best_model_criterion"] == [["valid", "acc", "max"]]
    assert conf["frontend_conf"] == {"n_fft": 512, "win_length": 400, "hop_length": 160}


def test_decode_config_is_ctc_weighted_beam_search() -> None:
    conf = yaml.safe_load((CONF / "decode_asr.yaml").read_text())
    assert conf["ctc_weight"] == 0.3 and conf["beam_size"] == 10 and conf["lm_weight"] == 0.0


def test_flop_count_of_a_linear_model_is_three_times_its_forward() -> None:
    import torch

    from bench.train_throughput import count_flops

    class Toy(torch.nn.Module):
        """speech (B, T) -> one linear layer over frames of 160 samples -> a scalar."""

        def __init__(self) -> None:
            super().__init__()
            self.proj = torch.nn.Linear(160, 64)

        def forward(self, speech, lengths, text, text_lengths):
            return (self.proj(speech.view(speech.size(0), -1, 160)).sum(),)

    batch = (torch.randn(3, 1600), torch.tensor([1600] * 3), torch.zeros(3, 2), torch.tensor([2] * 3))
    assert count_flops(Toy(), batch) == 3 * (2 * 3 * 10 * 160 * 64)
