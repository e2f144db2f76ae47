"""The SE-block conv front (``input_layer: se_conv``): masked SE squeeze, exact lengths,
padding invariance, and an ESPnet model with it and a gate per layer group."""
import math

import pytest
import torch
from torch import nn

from echo_plugin.asr.encoder.echo_encoder import (
    EchoEncoder,
    SEBlock,
    SEConvSubsampling,
    build_input_layer,
    subsampled_lengths,
    subsampling_factor,
)
from test.asr.espnet_build import build_asr

FACTORS = {"se_conv": 4, "se_conv2": 2}


def se_front(input_layer: str = "se_conv", abs_pos: bool = False) -> nn.Module:
    torch.manual_seed(0)
    return build_input_layer(input_layer, 12, 32, 0.1, abs_pos).eval()


def noisy_batch(lengths, idim: int = 12):
    """Utterances of the given lengths, padded with loud noise, and each utterance alone."""
    torch.manual_seed(1)
    alone = [torch.randn(n, idim) for n in lengths]
    batch = torch.randn(len(lengths), max(lengths), idim) * 10
    for i, utt in enumerate(alone):
        batch[i, : len(utt)] = utt
    return batch, torch.tensor(lengths), alone


def test_se_block_squeezes_with_the_mean_over_real_frames_only():
    torch.manual_seed(0)
    se = SEBlock(32, reduction=16)
    assert se.excite[0].out_features == 2
    x = torch.randn(2, 32, 9)
    mask = torch.arange(9) < torch.tensor([[9], [5]])
    squeeze = se.squeeze(x, mask)
    torch.testing.assert_close(squeeze[0], x[0].mean(-1))
    torch.testing.assert_close(squeeze[1], x[1, :, :5].mean(-1))
    excite = torch.sigmoid(se.excite[2](torch.relu(se.excite[0](squeeze))))
    torch.testing.assert_close(se(x, mask), x * excite[:, :, None])
    noisy = x.clone()
    noisy[1, :, 5:] = 1e4  # padding: must not move the real frames' channel weights
    torch.testing.assert_close(se(noisy, mask)[1, :, :5], se(x, mask)[1, :, :5])
    torch.testing.assert_close(se(x[1:, :, :5]), se(x, mask)[1:, :, :5])
    assert SEBlock(8, reduction=16).excite[0].out_features == 1  # never a zero-width bottleneck


def test_se_conv_is_seed_03s_stack_with_two_time_strides():
    front = se_front()
    assert isinstance(front, SEConvSubsampling)
    convs = [m for m in front.modules() if isinstance(m, nn.Conv1d)]
    assert [(c.kernel_size[0], c.dilation[0], c.stride[0], c.groups) for c in convs] == [
        (3, 1, 1, 1), (3, 2, 2, 1), (3, 1, 2, 32), (1, 1, 1, 1), (3, 1, 1, 1)
    ]  # fmt: skip
    assert subsampling_factor(front) == 4 and subsampling_factor(se_front("se_conv2")) == 2
    with pytest.raises(ValueError, match="subsample"):
        SEConvSubsampling(12, 32, 0.0, nn.Identity(), subsample=3)


@pytest.mark.parametrize("input_layer", sorted(FACTORS))
def test_lengths_are_exact(input_layer):
    front, factor = se_front(input_layer), FACTORS[input_layer]
    lengths = [37, 36, 9, 4, 1]
    batch, ilens, alone = noisy_batch(lengths)
    mask = (torch.arange(37) < ilens[:, None]).unsqueeze(1)
    out, out_mask = front(batch, mask)
    expected = torch.tensor([math.ceil(n / factor) for n in lengths])
    assert out.shape == (5, math.ceil(37 / factor), 32)
    assert torch.equal(subsampled_lengths(front, ilens), expected)
    assert torch.equal(out_mask[:, 0].sum(-1), expected)
    for utt, n in zip(alone, expected):
        assert front(utt[None], None)[0].size(1) == n


@pytest.mark.parametrize("input_layer", sorted(FACTORS))
@pytest.mark.parametrize("abs_pos", [False, True])
def test_padded_batch_gives_each_utterance_its_own_frames(input_layer, abs_pos):
    front = se_front(input_layer, abs_pos)
    batch, ilens, alone = noisy_batch([37, 22, 5])
    mask = (torch.arange(37) < ilens[:, None]).unsqueeze(1)
    out, _ = front(batch, mask)
    olens = subsampled_lengths(front, ilens)
    for i, utt in enumerate(alone):
        single, _ = front(utt[None], torch.ones(1, 1, len(utt), dtype=torch.bool))
        torch.testing.assert_close(out[i, : olens[i]], single[0], rtol=1e-5, atol=1e-5)
        unmasked, _ = front(utt[None], None)
        torch.testing.assert_close(unmasked, single)


def test_encoder_with_se_conv_is_padding_invariant():
    torch.manual_seed(0)
    encoder = EchoEncoder(
        12, output_size=16, attention_heads=2, linear_units=32, num_blocks=2, input_layer="se_conv",
        layers=[{"num": 1, "gate": "c_gate"}, {"num": 1, "gate": "t_gate"}],
    ).eval()  # fmt: skip
    batch, ilens, alone = noisy_batch([41, 23])
    out, olens, _ = encoder(batch, ilens)
    assert olens.tolist() == [11, 6]
    single, single_lens, _ = encoder(alone[1][None], ilens[1:])
    assert single_lens.tolist() == [6] and single.shape == (1, 6, 16)
    torch.testing.assert_close(out[1, :6], single[0], rtol=1e-4, atol=1e-5)


def test_silence_threshold_is_refused_with_se_conv_not_with_conv2d():
    with pytest.raises(ValueError, match="silence_threshold.*se_conv"):
        EchoEncoder(12, output_size=16, attention_heads=2, num_blocks=1, input_layer="se_conv",
                    silence_threshold=3.0)  # fmt: skip
    EchoEncoder(12, output_size=16, attention_heads=2, num_blocks=1, input_layer="conv2d", silence_threshold=3.0)


ENCODER_CONF = (
    "{output_size: 16, attention_heads: 2, linear_units: 32, num_blocks: 3, input_layer: se_conv,"
    " layers: [{num: 1, gate: {type: t_gate, conf: {num_types: 3}}},"
    " {num: 1, gate: {type: m_gate, conf: {mem_size: 8}}}, {num: 1, gate: c_gate}]}"
)
DECODER_CONF = (
    "{attention_heads: 2, linear_units: 32, num_blocks: 2,"
    " layers: [{num: 1, gate: mlp_gate}, {num: 1, gate: {type: c_gate, conf: {per_channel: true}}}]}"
)


def test_espnet_builds_and_trains_se_conv_with_a_gate_per_group(tmp_path):
    from echo_plugin.nn.gates import ContextGate, MemoryGate, MLPGate, TypeGate

    ASRTask, args, model = build_asr(tmp_path, ENCODER_CONF, DECODER_CONF)
    assert isinstance(model.encoder.embed, SEConvSubsampling)
    assert [type(b.gate) for b in model.encoder.blocks] == [TypeGate, MemoryGate, ContextGate]
    assert [type(b.gate) for b in model.decoder.blocks] == [MLPGate, ContextGate]

    torch.manual_seed(1)
    speech, lengths = torch.randn(2, 40, 20), torch.tensor([40, 29])
    text, text_lengths = torch.tensor([[2, 3, 4, 5], [6, 2, -1, -1]]), torch.tensor([4, 2])
    gate_params = {n: p.detach().clone() for n, p in model.named_parameters() if ".gate." in n}
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    loss, stats, _ = model(speech=speech, speech_lengths=lengths, text=text, text_lengths=text_lengths)
    assert torch.isfinite(loss) and stats["loss_ctc"] is not None and stats["loss_att"] is not None
    loss.backward()
    for name in ["encoder.embed.conv_in.weight", "encoder.embed.se.excite.0.weight", *gate_params]:
        grad = model.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name
    optimizer.step()
    assert all(not torch.equal(model.get_parameter(n), before) for n, before in gate_params.items())

    rebuilt = ASRTask.build_model(args)
    rebuilt.load_state_dict(model.state_dict(), strict=True)  # the gates' keys round-trip
    model.eval()
    rebuilt.eval()
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.encode(speech, lengths)[0], model.encode(speech, lengths)[0])
