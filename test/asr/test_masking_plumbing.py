"""Masking specs from YAML through EchoEncoder / EchoDecoder down to the kernel."""
import torch

from echo_plugin.asr.decoder.echo_decoder import EchoDecoder
from echo_plugin.asr.encoder.echo_encoder import EchoEncoder
from echo_plugin.nn.masking import HardMasking, SoftMasking

VOCAB = 13
SOFT = {"type": "soft", "conf": {"scale": 1.0e-6, "learned": False, "min_scale": 1.0e-8, "max_scale": 0.1}}
LEARNED = {"type": "soft", "conf": {"scale": 1.0e-3, "learned": True}}


def encoder(**conf) -> EchoEncoder:
    torch.manual_seed(0)
    conf = {"output_size": 16, "attention_heads": 2, "linear_units": 32, "num_blocks": 2, **conf}
    return EchoEncoder(input_size=20, **conf).eval()


def features():
    torch.manual_seed(1)
    xs = torch.randn(2, 40, 20)
    xs[0, :16] -= 20.0  # a long quiet stretch at the start of utterance 0
    return xs, torch.tensor([40, 30])


def test_encoder_builds_masking_per_layer_group_and_default_is_hard():
    enc = encoder(layers=[{"num": 1, "masking": SOFT}, {"num": 1}])
    assert isinstance(enc.blocks[0].self_attn.masking, SoftMasking)
    assert isinstance(enc.blocks[1].self_attn.masking, HardMasking)
    assert set(encoder().state_dict()) == set(encoder(layers=[{"num": 2, "masking": SOFT}]).state_dict())
    learned = encoder(layers=[{"num": 2, "masking": LEARNED}])
    assert "blocks.0.self_attn.masking.scale_logit" in learned.state_dict()


def test_encoder_silence_changes_only_soft_layers():
    xs, ilens = features()
    hard = encoder()
    base, olens, _ = hard(xs, ilens)
    with_silence, _, _ = encoder(silence_threshold=7.0)(xs, ilens)
    torch.testing.assert_close(with_silence, base)  # hard masking ignores silence
    soft_plain, _, _ = encoder(layers=[{"num": 2, "masking": SOFT}])(xs, ilens)
    soft_silence, _, _ = encoder(layers=[{"num": 2, "masking": SOFT}], silence_threshold=7.0)(xs, ilens)
    assert not torch.allclose(soft_silence[0], soft_plain[0])
    # utterance 1 has no silent frame: only padding is softened, in both runs
    torch.testing.assert_close(soft_silence[1], soft_plain[1])


def test_learned_scale_trains_end_to_end():
    xs, ilens = features()
    enc = encoder(layers=[{"num": 2, "masking": LEARNED}], silence_threshold=7.0).train()
    out, _, _ = enc(xs, ilens)
    out.square().mean().backward()
    assert enc.blocks[0].self_attn.masking.scale_logit.grad != 0


def test_decoder_soft_padding_keeps_causality_exact():
    torch.manual_seed(0)
    dec = EchoDecoder(VOCAB, 16, attention_heads=2, linear_units=32, num_blocks=2,
                      layers=[{"num": 2, "self_masking": SOFT, "cross_masking": SOFT}]).eval()
    assert isinstance(dec.blocks[0].self_attn.masking, SoftMasking)
    hs = torch.randn(2, 9, 16)
    hlens = torch.tensor([9, 6])
    ys = torch.randint(0, VOCAB, (2, 7))
    lens = torch.tensor([7, 5])  # utterance 1 is padded
    logits, _ = dec(hs, hlens, ys, lens)
    for t in range(1, 7):
        altered = ys.clone()
        altered[:, t:] = (ys[:, t:] + 1) % VOCAB
        changed, _ = dec(hs, hlens, altered, lens)
        assert torch.equal(changed[:, :t], logits[:, :t])
