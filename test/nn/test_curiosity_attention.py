"""Curiosity attention: closed gate = standard attention; scores vs naive softmax formulas;
causality, padding, KV cache; inside EchoEncoder/EchoDecoder built through ESPnet."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import pytest
import torch

from echo_plugin.catalog import ATTENTION
from echo_plugin.nn.attention import CuriosityAttention
from echo_plugin.nn.attention.curiosity_scores import CosineScore, RBFScore

D, H = 16, 2
DH = D // H
SCORES = ["dot", "cosine", "rbf"]
PADDING = torch.tensor([[True] * 7, [True] * 4 + [False] * 3])


def curiosity(score: str, masking: object = None, rotary: object = "standard") -> CuriosityAttention:
    torch.manual_seed(0)
    spec = {"type": "curiosity", "conf": {"score": score}}
    module = ATTENTION.build(spec, d_model=D, n_heads=H, rotary=rotary, masking=masking).double().eval()
    with torch.no_grad():
        module.gate.copy_(torch.tensor([-0.7, 1.3]))  # distinct, open gates
        for p in module.score.parameters():
            p.copy_(torch.tensor([0.4, 1.1]))  # per-head log temperature / log sigma
    return module


def inputs(batch: int = 2, length: int = 7, seed: int = 1) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.randn(batch, length, D, dtype=torch.float64)


@pytest.mark.parametrize("score", SCORES)
def test_closed_gate_equals_standard_attention_exactly(score: str) -> None:
    torch.manual_seed(0)
    standard = ATTENTION.build("standard", d_model=D, n_heads=H, rotary="standard").eval()
    module = ATTENTION.build({"type": "curiosity", "conf": {"score": score}}, d_model=D, n_heads=H, rotary="standard")
    missing, unexpected = module.load_state_dict(standard.state_dict(), strict=False)
    assert not unexpected and all(k.startswith(("aux_", "gate", "score.")) for k in missing)
    module.eval()
    with torch.no_grad():
        module.gate.fill_(float("-inf"))  # sigmoid(-inf) = 0: every head's gate closed
    x, memory = inputs().float(), inputs(length=5, seed=2).float()
    # encoder self-attention with padding
    out, _ = module(x, key_padding_mask=PADDING)
    assert torch.equal(out, standard(x, key_padding_mask=PADDING)[0])
    # decoder: causal self-attention, then one cached step
    out, cache = module(x[:, :5], causal=True)
    ref, ref_cache = standard(x[:, :5], causal=True)
    assert torch.equal(out, ref) and torch.equal(cache[0][:, :H], ref_cache[0])
    out, _ = module(x[:, 5:6], causal=True, cache=cache)
    assert torch.equal(out, standard(x[:, 5:6], causal=True, cache=ref_cache)[0])
    # cross-attention to a padded memory
    mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    assert torch.equal(module(x, memory, key_padding_mask=mask)[0], standard(x, memory, key_padding_mask=mask)[0])


def naive(
    module: CuriosityAttention, x: torch.Tensor, keep: torch.Tensor, key_scale: Optional[torch.Tensor]
) -> torch.Tensor:
    """out = W_o concat_h((1 - g_h) softmax(main) v + g_h softmax(c_j score) v_aux), scores written out literally."""
    positions = torch.arange(x.shape[1])
    split = module._split_heads
    q = module.rotary.rotate(split(module.query(x)), positions)
    k = module.rotary.rotate(split(module.key(x)), positions)
    k_aux = module.rotary.rotate(split(module.aux_key(x)), positions)
    v, v_aux = split(module.value(x)), split(module.aux_value(x))
    c = torch.ones(keep.shape, dtype=x.dtype) if key_scale is None else key_scale
    c = c[:, None, None, :]
    head = torch.arange(H)[None, :, None, None]
    qi, kj = q[:, :, :, None, :], k_aux[:, :, None, :, :]  # (B, H, T, 1, dh), (B, H, 1, S, dh)
    if isinstance(module.score, CosineScore):
        tau = module.score.log_temperature.exp()[head]
        aux_scores = tau * (qi * kj).sum(-1) / (qi.norm(dim=-1) * kj.norm(dim=-1))
    elif isinstance(module.score, RBFScore):
        sigma = module.score.log_sigma.exp()[head]
        aux_scores = -((qi - kj) ** 2).sum(-1) / (2 * sigma**2)
        if key_scale is not None:  # the documented form c_j scales: distance + |q_i|^2 / (2 sigma^2)
            aux_scores = aux_scores + (qi**2).sum(-1) / (2 * sigma**2)
    else:
        aux_scores = (qi * kj).sum(-1) / math.sqrt(DH)
    main_scores = c * (q @ k.transpose(-1, -2)) / math.sqrt(DH)
    hidden = ~keep[:, None, None, :]
    main = main_scores.masked_fill(hidden, -math.inf).softmax(-1) @ v
    aux = (c * aux_scores).masked_fill(hidden, -math.inf).softmax(-1) @ v_aux
    g = torch.sigmoid(module.gate)[None, :, None, None]
    heads = (1 - g) * main + g * aux
    return module.out(heads.transpose(1, 2).flatten(2))


@pytest.mark.parametrize("score", SCORES)
def test_scores_equal_explicit_softmax_formula(score: str) -> None:
    module = curiosity(score)
    x = inputs()
    with torch.no_grad():
        out = module(x, key_padding_mask=PADDING)[0]
        torch.testing.assert_close(out, naive(module, x, PADDING, None), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("score", SCORES)
def test_soft_masking_scales_the_auxiliary_scores_too(score: str) -> None:
    eps = 0.25  # exact in float32, where the strategy keeps its scale
    module = curiosity(score, masking={"type": "soft", "conf": {"scale": eps}})
    x = inputs()
    zero_keys = torch.zeros(2, 7, dtype=torch.bool)
    zero_keys[0, 2] = True
    scale = torch.where(PADDING & ~zero_keys, 1.0, eps).double()
    with torch.no_grad():
        out = module(x, key_padding_mask=PADDING, zero_keys=zero_keys)[0]
        expected = naive(module, x, torch.ones_like(PADDING), scale)  # soft: padding softened, not hidden
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("score", SCORES)
def test_causal_use_never_sees_the_future(score: str) -> None:
    module = curiosity(score)
    x = inputs()
    with torch.no_grad():
        out = module(x, causal=True)[0]
        perturbed = x.clone()
        perturbed[:, 4:] = 10 * torch.randn_like(perturbed[:, 4:])
        changed = module(perturbed, causal=True)[0]
    torch.testing.assert_close(changed[:, :4], out[:, :4], rtol=0, atol=1e-12)
    assert not torch.allclose(changed[:, 4:], out[:, 4:])


@pytest.mark.parametrize("score", SCORES)
def test_padding_keys_are_ignored(score: str) -> None:
    module = curiosity(score)
    x, memory = inputs(), inputs(seed=3)
    with torch.no_grad():
        noisy = x.clone()
        noisy[1, 4:] = 30.0
        clean, changed = (module(y, key_padding_mask=PADDING)[0][1, :4] for y in (x, noisy))
        torch.testing.assert_close(changed, clean, rtol=0, atol=1e-12)
        noisy_memory = memory.clone()
        noisy_memory[1, 4:] = -30.0
        clean, changed = (module(x, m, key_padding_mask=PADDING)[0] for m in (memory, noisy_memory))
        torch.testing.assert_close(changed, clean, rtol=0, atol=1e-12)


@pytest.mark.parametrize("score", SCORES)
def test_incremental_decoding_with_cache_equals_full_forward(score: str) -> None:
    module = curiosity(score)
    x, memory = inputs(), inputs(length=5, seed=4)
    with torch.no_grad():
        full, full_cache = module(x, causal=True)
        out, cache = module(x[:, :3], causal=True)
        steps = [out]
        for t in range(3, 7):
            out, cache = module(x[:, t : t + 1], causal=True, cache=cache)
            steps.append(out)
        assert cache[0].shape == (2, 2 * H, 7, DH)
        # rotary angles are float32 in every Echo rotary: standard attention differs by ~1e-8 here too
        torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(cache[0], full_cache[0])
    # cross-attention (no rotary, as EchoDecoder builds it): memory projected once, then reused
    cross_attn = curiosity(score, rotary="none")
    with torch.no_grad():
        first, cross = cross_attn(x[:, :2], memory)
        again, _ = cross_attn(x[:, :2], memory[:, :0], cache=cross)
    torch.testing.assert_close(again, first, rtol=1e-10, atol=1e-12)


def test_score_and_gate_confs_from_yaml_specs() -> None:
    spec = {"type": "curiosity", "conf": {"score": {"type": "cosine", "conf": {"temperature": 4.0}}, "gate_init": -2.0}}
    module = ATTENTION.build(spec, d_model=D, n_heads=H)
    torch.testing.assert_close(module.score.temperature(), torch.full((H,), 4.0))
    torch.testing.assert_close(module.gate.detach(), torch.full((H,), -2.0))
    rbf = ATTENTION.build({"type": "curiosity", "conf": {"score": "rbf"}}, d_model=D, n_heads=H)
    torch.testing.assert_close(rbf.score.sigma() ** 2, torch.full((H,), math.sqrt(DH)))  # q.k term = dot score
    with pytest.raises(KeyError, match="unknown curiosity score type 'l2'"):
        ATTENTION.build({"type": "curiosity", "conf": {"score": "l2"}}, d_model=D, n_heads=H)


ENCODER_CONF = (
    "{output_size: 16, attention_heads: 2, linear_units: 32, num_blocks: 2, input_layer: conv2d,"
    " layers: [{num: 1, attention: {type: curiosity, conf: {score: rbf}}},"
    " {num: 1, attention: {type: curiosity, conf: {score: cosine}}, rotary: none}]}"
)
DECODER_CONF = (
    "{attention_heads: 2, linear_units: 32, num_blocks: 2,"
    " layers: [{num: 1, self_attention: {type: curiosity, conf: {score: cosine}},"
    " cross_attention: {type: curiosity, conf: {score: rbf}}}, {num: 1, self_attention: curiosity}]}"
)


def test_inside_echo_encoder_and_decoder_built_through_espnet(tmp_path: Path) -> None:
    from test.asr.espnet_build import build_asr

    _, _, model = build_asr(tmp_path, ENCODER_CONF, DECODER_CONF)
    assert isinstance(model.encoder.blocks[0].self_attn, CuriosityAttention)
    assert isinstance(model.decoder.blocks[0].cross_attn, CuriosityAttention)
    model.train()
    torch.manual_seed(1)
    speech, lengths = torch.randn(2, 40, 20), torch.tensor([40, 29])
    text, text_lengths = torch.tensor([[2, 3, 4, 5], [6, 2, -1, -1]]), torch.tensor([4, 2])
    loss = model(speech=speech, speech_lengths=lengths, text=text, text_lengths=text_lengths)[0]
    assert torch.isfinite(loss)
    loss.backward()
    for name in [
        "encoder.blocks.0.self_attn.aux_key.weight", "encoder.blocks.0.self_attn.score.log_sigma",
        "encoder.blocks.1.self_attn.score.log_temperature", "encoder.blocks.1.self_attn.gate",
        "decoder.blocks.0.self_attn.aux_value.weight", "decoder.blocks.0.cross_attn.score.log_sigma",
        "decoder.blocks.1.self_attn.gate",
    ]:  # fmt: skip
        grad = model.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name
    # the decoder's per-hypothesis cache (aux heads stacked after the main ones) scores like the full pass
    model.eval()
    decoder = model.decoder
    with torch.no_grad():
        xs, _ = model.encode(speech, lengths)
        xs = xs[:1].expand(3, -1, -1)
        ys = torch.randint(0, 8, (3, 5))
        logp, states = decoder.batch_score(ys[:, :2], [None] * 3, xs)
        for length in range(3, 6):
            logp, states = decoder.batch_score(ys[:, :length], states, xs)
        logits, _ = decoder(xs, torch.full((3,), xs.size(1)), ys, torch.full((3,), 5))
    torch.testing.assert_close(logp, logits[:, -1].log_softmax(-1), rtol=1e-4, atol=1e-5)
    assert states[0][2][0][0].shape == (4, 5, 8)


def test_pitch_aware_rotary_and_f0_reach_both_streams() -> None:
    """In an EchoEncoder with pitch-aware rotary (radii, pitch score bias) and f0: closed gates give the
    standard-attention encoder exactly; open gates train every auxiliary parameter."""
    from echo_plugin.asr.encoder.echo_encoder import EchoEncoder

    conf = {"angle_source": "phase", "radii": True, "radius_floor": 0.2, "pitch_bias": 1.0}
    pitch = {"type": "pitch_aware", "conf": conf}

    def encoder(attention: object) -> EchoEncoder:
        torch.manual_seed(0)
        layers = [{"num": 2, "attention": attention, "rotary": pitch}]
        sizes = dict(output_size=16, attention_heads=2, linear_units=32, num_blocks=2)
        return EchoEncoder(input_size=20, layers=layers, **sizes)

    standard, curious = encoder("standard").eval(), encoder({"type": "curiosity", "conf": {"score": "rbf"}})
    missing, unexpected = curious.load_state_dict(standard.state_dict(), strict=False)
    assert not unexpected and missing
    torch.manual_seed(1)
    xs, ilens = torch.randn(2, 41, 20), torch.tensor([41, 33])
    f0 = 120 + 80 * torch.rand(2, 41)
    f0[:, 10:17] = 0.0
    curious.train()
    out, olens, _ = curious(xs, ilens, f0=f0)
    out.pow(2).sum().backward()
    for block in curious.blocks:
        for p in [block.self_attn.aux_key.weight, block.self_attn.gate, block.self_attn.score.log_sigma]:
            assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
    curious.eval()
    with torch.no_grad():
        for block in curious.blocks:
            block.self_attn.gate.fill_(float("-inf"))
        closed, _, _ = curious(xs, ilens, f0=f0)
        reference, _, _ = standard(xs, ilens, f0=f0)
    assert torch.equal(closed, reference)
