"""Dual decoder warm-started from an ESPnet TransformerDecoder state dict reproduces it (gate forced to primary)."""
import pytest
import torch
from espnet2.asr.decoder.transformer_decoder import TransformerDecoder

from echo_plugin.asr.decoder.base import DecoderDims
from echo_plugin.asr.decoder.dual_decoder import DualCrossAttentionDecoder
from echo_plugin.asr.warm_start import WarmStartError

VOCAB, WIDTH, HEADS, UNITS, BLOCKS = 9, 16, 4, 24, 2


@pytest.fixture(scope="module")
def espnet(tmp_path_factory):
    """(TransformerDecoder with every parameter random, model state dict as ESPnet saves it, its path)."""
    torch.manual_seed(0)
    decoder = TransformerDecoder(VOCAB, WIDTH, attention_heads=HEADS, linear_units=UNITS, num_blocks=BLOCKS)
    with torch.no_grad():
        for name, p in decoder.named_parameters():
            p.copy_(torch.randn_like(p) * 0.3 + (1.0 if "norm" in name and name.endswith("weight") else 0.0))
    decoder.eval()
    state = {f"decoder.{k}": v for k, v in decoder.state_dict().items()}
    state["encoder.embed.conv.0.weight"] = torch.zeros(3)  # other modules of the ASR model: not the decoder's
    state["ctc.ctc_lo.weight"] = torch.zeros(3)
    path = tmp_path_factory.mktemp("espnet") / "valid.acc.ave.pth"
    torch.save(state, path)
    return decoder, state, path


def dual(path, **conf) -> DualCrossAttentionDecoder:
    return DualCrossAttentionDecoder(
        VOCAB, WIDTH, attention_heads=HEADS, espnet_checkpoint=str(path), dropout_rate=0.0, **conf
    ).eval()


def batch():
    torch.manual_seed(2)
    memory = torch.randn(3, 8, WIDTH)
    hlens = torch.tensor([8, 5, 7])
    tokens = torch.randint(0, VOCAB, (3, 6))
    ylens = torch.tensor([6, 4, 1])
    return memory, hlens, tokens, ylens


def test_forced_primary_reproduces_transformer_decoder(espnet):
    reference, _, path = espnet
    decoder = dual(path, gate_override=1.0)
    memory, hlens, tokens, ylens = batch()
    with torch.no_grad():
        expected, _ = reference(memory, hlens, tokens, ylens)
        logits, lens = decoder(memory, hlens, tokens, ylens)
    assert torch.equal(lens, ylens)
    assert decoder.dims == DecoderDims(VOCAB, WIDTH, HEADS, UNITS, BLOCKS)  # the checkpoint sizes, not the defaults
    for b, n in enumerate(ylens.tolist()):  # padded target rows are unspecified in both
        torch.testing.assert_close(logits[b, :n], expected[b, :n], atol=1e-5, rtol=1e-5)


def test_batch_score_matches_transformer_decoder_steps(espnet):
    reference, _, path = espnet
    decoder = dual(path, gate_override=1.0)
    memory, _, tokens, _ = batch()
    ref_states, states = [None] * 3, [None] * 3
    with torch.no_grad():
        for step in range(1, 5):
            expected, ref_states = reference.batch_score(tokens[:, :step], ref_states, memory)
            logp, states = decoder.batch_score(tokens[:, :step], states, memory)
            torch.testing.assert_close(logp, expected, atol=1e-5, rtol=1e-5)


def test_architecture_taken_from_the_checkpoint(espnet):
    _, _, path = espnet
    decoder = DualCrossAttentionDecoder(VOCAB, WIDTH, attention_heads=HEADS, num_blocks=5, linear_units=7,
                                        espnet_checkpoint=str(path))  # fmt: skip
    assert len(decoder.blocks) == BLOCKS and decoder.blocks[0].mlp[0].out_features == UNITS
    assert decoder.output_layer.bias is not None and decoder.blocks[0].attn.key.bias is not None
    assert decoder.ln.eps == 1e-12


def test_unexpected_and_missing_decoder_keys_fail_with_names(espnet, tmp_path):
    _, state, _ = espnet
    bad = dict(state)
    bad["decoder.decoders.0.concat_linear1.weight"] = torch.zeros(WIDTH, 2 * WIDTH)
    del bad["decoder.decoders.1.norm3.bias"]
    path = tmp_path / "bad.pth"
    torch.save(bad, path)
    with pytest.raises(WarmStartError) as error:
        dual(path)
    message = str(error.value)
    assert "missing keys (1): blocks.1.mlp_ln.bias" in message
    assert "unexpected keys (1): decoders.0.concat_linear1.weight" in message


def test_width_mismatch_and_wrong_prefix_are_refused(espnet):
    _, _, path = espnet
    with pytest.raises(WarmStartError, match="width 16 in the checkpoint vs 32 here"):
        DualCrossAttentionDecoder(VOCAB, 32, espnet_checkpoint=str(path))
    with pytest.raises(WarmStartError, match="no 'model.decoder.embed.0.weight'"):
        DualCrossAttentionDecoder(VOCAB, WIDTH, espnet_checkpoint=str(path), espnet_prefix="model.decoder.")


def test_legacy_positional_table_is_not_a_weight(espnet, tmp_path):
    reference, state, _ = espnet
    path = tmp_path / "old.pth"
    torch.save({**state, "decoder.embed.1.pe": torch.zeros(1, 50, WIDTH)}, path)
    memory, hlens, tokens, ylens = batch()
    with torch.no_grad():
        logits, _ = dual(path, gate_override=1.0)(memory, hlens, tokens, ylens)
        expected, _ = reference(memory, hlens, tokens, ylens)
    torch.testing.assert_close(logits[0], expected[0], atol=1e-5, rtol=1e-5)
