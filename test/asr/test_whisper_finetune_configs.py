"""The Whisper fine-tuning configs' decoders: Whisper's single one, the dual one, and the widened single one.

- A widened MLP (``extra_linear_units``) warm-started from a Whisper checkpoint computes the checkpoint's
  decoder (its new units start with zero output weights), the checkpoint's units in its first rows.
- At whisper-base's size, the three recipe decoders as their merged configs build them (with the
  config's ``freeze_param`` applied, as ESPnet does): single trains Whisper's decoder parameters, dual
  and single_wide each add the same number within one MLP unit per layer.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict

import pytest
import torch

from echo_plugin.asr.decoder.dual_decoder import DualCrossAttentionDecoder
from echo_plugin.asr.whisper_ckpt import decoder_arch
from echo_plugin.recipe.overlay import load_config
from test.asr.whisper_reference import TINY_DIMS, random_whisper, save_whisper

TUNING = Path(__file__).resolve().parents[2] / "egs" / "fsdd" / "asr1" / "conf" / "tuning"
WHISPER_BASE: Dict[str, int] = dict(n_vocab=51865, n_text_ctx=448, n_text_state=512, n_text_head=8, n_text_layer=6)


def test_widened_mlp_starts_as_the_checkpoints_decoder(tmp_path: Path) -> None:
    path = save_whisper(random_whisper(), TINY_DIMS, tmp_path / "tiny.pt")
    torch.manual_seed(0)
    plain = DualCrossAttentionDecoder.from_whisper(path, gate_override=1.0, dropout_rate=0.0).eval()
    wide = DualCrossAttentionDecoder.from_whisper(path, gate_override=1.0, dropout_rate=0.0,
                                                  extra_linear_units=7).eval()
    units = 4 * TINY_DIMS["n_text_state"]
    for a, b in zip(plain.blocks, wide.blocks):
        assert b.mlp[0].weight.shape == (units + 7, TINY_DIMS["n_text_state"])
        assert torch.equal(b.mlp[0].weight[:units], a.mlp[0].weight)
        assert torch.equal(b.mlp[0].bias[:units], a.mlp[0].bias)
        assert not b.mlp[2].weight[:, units:].any() and b.mlp[0].weight[units:].abs().sum() > 0
    memory = torch.randn(2, 5, TINY_DIMS["n_text_state"])
    tokens = torch.randint(0, TINY_DIMS["n_vocab"], (2, 4))
    args = (memory, torch.tensor([5, 3]), tokens, torch.tensor([4, 2]))
    with torch.no_grad():
        assert torch.allclose(plain(*args)[0], wide(*args)[0], atol=1e-6)


def trained_decoder_parameters(config_name: str) -> int:
    """Parameters of the config's decoder at whisper-base's size that train (its freeze_param applied)."""
    config = load_config(TUNING / config_name)
    conf = {k: v for k, v in config["decoder_conf"].items() if k != "whisper_checkpoint"}
    arch = decoder_arch({**WHISPER_BASE})
    decoder = DualCrossAttentionDecoder(WHISPER_BASE["n_vocab"], WHISPER_BASE["n_text_state"], **{**arch, **conf})
    frozen = [p[len("decoder."):] for p in config.get("freeze_param") or []]
    return sum(p.numel() for name, p in decoder.named_parameters()
               if not any(name == f or name.startswith(f"{f}.") for f in frozen))


@pytest.fixture(scope="module")
def trained() -> Dict[str, int]:
    names = ("single", "dual", "single_wide")
    return {name: trained_decoder_parameters(f"train_asr_whisper_{name}.yaml") for name in names}


def test_single_trains_whispers_decoder_parameters(trained) -> None:
    d, v, layers = WHISPER_BASE["n_text_state"], WHISPER_BASE["n_vocab"], WHISPER_BASE["n_text_layer"]
    attention = 4 * d * d + 3 * d  # query, key (no bias), value, out
    block = 2 * attention + 3 * 2 * d + (d * 4 * d + 4 * d) + (4 * d * d + d)  # self, cross, 3 norms, mlp
    assert trained["single"] == v * d + WHISPER_BASE["n_text_ctx"] * d + layers * block + 2 * d  # tied output


def test_dual_and_single_wide_add_the_same_number_of_parameters(trained) -> None:
    added_dual, added_wide = trained["dual"] - trained["single"], trained["single_wide"] - trained["single"]
    unit = 2 * WHISPER_BASE["n_text_state"] + 1  # one MLP unit: an input row with its bias, an output column
    assert added_dual > 10_000_000
    assert abs(added_wide - added_dual) <= unit * WHISPER_BASE["n_text_layer"]
