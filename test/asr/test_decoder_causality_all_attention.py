"""Every registered ATTENTION variant, as the EchoDecoder's self- or cross-attention: earlier
outputs never depend on later tokens (eval and train mode), and KV-cached incremental scoring
equals the full teacher-forced pass. Variants added to the catalog are picked up automatically.
The self-attention-only variants must refuse the cross-attention role with a clear error (asserted,
not skipped); a new variant that refuses it fails here until it is listed in SELF_ATTENTION_ONLY."""
from __future__ import annotations

import copy

import pytest
import torch

from echo_plugin.asr.decoder.echo_decoder import EchoDecoder
from echo_plugin.catalog import ATTENTION

VOCAB, D, L, CUT = 11, 16, 12, 6
SMALL_ADAPTIVE = {
    "type": "adaptive",
    "conf": {
        "span": {"init": 2},
        "focus": {"w_min": 1, "w_max": 3},
        "importance": {"fraction": 0.5, "cheap_window": 1},
    },
}
SPECS = [(name, name) for name in ATTENTION.names()] + [("adaptive-small-windows", SMALL_ADAPTIVE)]
ROLES = ["self_attention", "cross_attention"]
SELF_ATTENTION_ONLY = {"integrated", "myelinated"}  # refuse key_value (cross-attention) by design


def build(spec, role: str) -> EchoDecoder:
    torch.manual_seed(0)
    layers = [{"num": 2, role: spec}]
    return EchoDecoder(VOCAB, D, attention_heads=2, linear_units=32, num_blocks=2, dropout_rate=0.0, layers=layers)


def refuses(label: str, role: str) -> bool:
    return role == "cross_attention" and label in SELF_ATTENTION_ONLY


def assert_refusal(decoder: EchoDecoder, label: str, *args) -> None:
    """A self-attention-only variant as cross-attention refuses the forward pass with a named error."""
    with pytest.raises(ValueError, match=rf"^{label} attention is self-attention only \(key_value must be None\)$"):
        decoder(*args)


def inputs():
    torch.manual_seed(1)
    hs = torch.randn(2, 9, D)
    ys = torch.randint(0, VOCAB, (2, L))
    altered = ys.clone()
    altered[:, CUT:] = (ys[:, CUT:] + 1 + torch.randint(0, VOCAB - 1, (2, L - CUT))) % VOCAB
    return hs, torch.tensor([9, 6]), ys, altered, torch.full((2,), L)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("label, spec", SPECS, ids=[label for label, _ in SPECS])
def test_decoder_never_sees_future_tokens(label, spec, role, train):
    decoder = build(spec, role).train(train)
    twin = copy.deepcopy(decoder)  # the same state for both passes (training passes may update buffers)
    hs, hlens, ys, altered, lens = inputs()
    if refuses(label, role):
        assert_refusal(decoder, label, hs, hlens, ys, lens)
        return
    torch.manual_seed(2)
    logits, _ = decoder(hs, hlens, ys, lens)
    torch.manual_seed(2)
    changed, _ = twin(hs, hlens, altered, lens)
    torch.testing.assert_close(changed[:, :CUT], logits[:, :CUT], msg=f"{label} as {role} reads later tokens")
    assert not torch.allclose(changed[:, CUT:], logits[:, CUT:])


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("label, spec", SPECS, ids=[label for label, _ in SPECS])
def test_incremental_decoding_equals_the_full_pass(label, spec, role):
    decoder = build(spec, role).eval()
    hs, _, ys, _, _ = inputs()
    if refuses(label, role):
        assert_refusal(decoder, label, hs, torch.full((2,), hs.size(1)), ys, torch.full((2,), L))
        return
    logp, states = decoder.batch_score(ys[:, :1], [None, None], hs)
    for length in range(1, L + 1):
        if length > 1:
            logp, states = decoder.batch_score(ys[:, :length], states, hs)  # newest token only
        logits, _ = decoder(hs, torch.full((2,), hs.size(1)), ys[:, :length], torch.full((2,), length))
        torch.testing.assert_close(
            logp, logits[:, -1].log_softmax(-1), rtol=1e-4, atol=1e-5, msg=f"{label} as {role}, step {length}"
        )
