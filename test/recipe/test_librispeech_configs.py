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


def test_decode_config_is_espnets_published_setting() -> None:
    """ESPnet's egs2/librispeech_100/asr1/conf/decode_asr.yaml, as its published rows ran it (no LM):
    the E-Branchformer rows decode_asr_asr_model_valid.acc.ave and the Conformer rows beam20_ctc0.3."""
    conf = yaml.safe_load((CONF / "decode_asr.yaml").read_text())
    assert conf == {"beam_size": 20, "ctc_weight": 0.3, "lm_weight": 0.0, "penalty": 0.0,
                    "maxlenratio": 0.0, "minlenratio": 0.0, "nbest": 1}


def test_run_sh_decodes_with_the_published_setting() -> None:
    run_sh = (CONF.parent / "run.sh").read_text()
    assert re.search(r"^inference_config=conf/decode_asr\.yaml$", run_sh, re.M)
    assert '--inference_config "${inference_config}"' in run_sh


def test_nolm_decode_config_is_espnets_faster_search() -> None:
    """ESPnet's decode_asr_nolm.yaml: a smaller beam, a length penalty and a length cap."""
    conf = yaml.safe_load((CONF / "decode_asr_nolm.yaml").read_text())
    assert conf == {"beam_size": 10, "ctc_weight": 0.3, "lm_weight": 0.0, "penalty": 0.1,
                    "maxlenratio": 0.3, "minlenratio": 0.0, "nbest": 1}


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
