"""Dual decoder inside ESPnet: build, train step, beam search with CTC, extras, caches, ESPnet encoders."""
import pytest
import torch
import yaml

from echo_plugin.asr.decoder.dual_decoder import DualCrossAttentionDecoder, DualLayerExtras
from test.asr.dual_build import batch, build
from test.asr.espnet_build import TOKENS


@pytest.fixture(scope="module")
def asr(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("dual_e2e")
    ASRTask, args, model = build(workdir)
    return ASRTask, args, model, workdir


def test_build_forward_backward_reaches_both_cross_attentions(asr):
    _, _, model, _ = asr
    assert isinstance(model.decoder, DualCrossAttentionDecoder)
    model.train()
    speech, lengths, text, text_lengths = batch()
    loss, stats, _ = model(speech=speech, speech_lengths=lengths, text=text, text_lengths=text_lengths)
    assert torch.isfinite(loss) and stats["loss_att"] is not None
    loss.backward()
    for name in ("cross_attn.query.weight", "secondary_attn.query.weight", "gate.net.0.weight", "gate.net.2.bias"):
        grad = model.get_parameter(f"decoder.blocks.1.{name}").grad
        assert grad is not None and grad.abs().sum() > 0, name
    model.zero_grad()


def beam_search(model, batched: bool, beam: int = 3):
    from echo_plugin.espnet_legacy import BatchBeamSearch, BeamSearch, CTCPrefixScorer, LengthBonus

    return (BatchBeamSearch if batched else BeamSearch)(
        scorers={"decoder": model.decoder, "ctc": CTCPrefixScorer(ctc=model.ctc, eos=model.eos),
                 "length_bonus": LengthBonus(len(TOKENS))},
        weights={"decoder": 0.7, "ctc": 0.3, "length_bonus": 1.0},
        beam_size=beam, vocab_size=len(TOKENS), sos=model.sos, eos=model.eos, token_list=TOKENS,
        pre_beam_score_key="full",
    ).eval()  # fmt: skip


def test_beam_search_and_batch_beam_search_with_ctc_agree(asr):
    _, _, model, _ = asr
    model.eval()
    speech, lengths, _, _ = batch()
    with torch.no_grad():
        x = model.encode(speech[:1], lengths[:1])[0][0]
        plain = beam_search(model, batched=False)(x=x, maxlenratio=0.0, minlenratio=0.0)
        batched = beam_search(model, batched=True)(x=x, maxlenratio=0.0, minlenratio=0.0)
    assert len(batched[0].yseq) > 3 and batched[0].yseq[0] == model.sos and batched[0].yseq[-1] == model.eos
    for p, b in zip(plain[:3], batched[:3]):
        assert p.yseq.tolist() == b.yseq.tolist()
        assert float(p.score) == pytest.approx(float(b.score), rel=1e-4, abs=1e-4)


def test_speech2text_decodes_saved_dual_model(asr):
    from espnet2.bin.asr_inference import Speech2Text

    from echo_plugin.espnet_legacy import BatchBeamSearch

    _, args, model, workdir = asr
    config, weights = workdir / "config.yaml", workdir / "model.pth"
    config.write_text(yaml.safe_dump(vars(args)))
    torch.save(model.state_dict(), weights)
    speech2text = Speech2Text(str(config), str(weights), beam_size=3, ctc_weight=0.3, nbest=1)
    assert type(speech2text.beam_search) is BatchBeamSearch
    loaded = speech2text.asr_model.state_dict()
    assert loaded.keys() == model.state_dict().keys()
    assert all(torch.equal(loaded[k], v) for k, v in model.state_dict().items())
    text, _, token_ids, _ = speech2text(batch()[0][0])[0]
    assert isinstance(text, str) and all(0 < t < len(TOKENS) - 1 for t in token_ids)


def small_decoder(**conf) -> DualCrossAttentionDecoder:
    torch.manual_seed(0)
    conf = {"attention_heads": 2, "linear_units": 24, "num_blocks": 2, "dropout_rate": 0.0, **conf}
    return DualCrossAttentionDecoder(7, 8, **conf).eval()


def decoder_inputs():
    torch.manual_seed(6)
    return torch.randn(2, 5, 8), torch.tensor([5, 3]), torch.randint(0, 7, (2, 4)), torch.tensor([4, 3])


def test_forward_extras_match_forward_and_are_attention_maps():
    decoder = small_decoder()
    memory, hlens, tokens, ylens = decoder_inputs()
    with torch.no_grad():
        logits, _ = decoder(memory, hlens, tokens, ylens)
        extra_logits, extras = decoder.forward_extras(memory, hlens, tokens, ylens)
    torch.testing.assert_close(extra_logits, logits, atol=1e-5, rtol=1e-5)
    assert len(extras) == 2 and all(isinstance(e, DualLayerExtras) for e in extras)
    for e in extras:
        for maps in (e.primary_attn, e.secondary_attn):
            assert maps.shape == (2, 2, 4, 5)
            torch.testing.assert_close(maps.sum(-1), torch.ones(2, 2, 4))
            assert maps[1, :, :, 3:].abs().max() == 0  # padded frames of utterance 2
        assert e.gate.shape == (2, 4, 1) and 0 < e.gate.min() and e.gate.max() < 1
    assert not torch.allclose(extras[0].primary_attn, extras[0].secondary_attn)


def test_gate_override_one_is_the_primary_path_only():
    decoder = small_decoder(gate_override=1.0)
    memory, hlens, tokens, ylens = decoder_inputs()
    with torch.no_grad():
        forced, extras = decoder.forward_extras(memory, hlens, tokens, ylens)
        for block in decoder.blocks:
            block.secondary_attn.value.weight.mul_(5.0)  # the secondary path cannot matter
        again, _ = decoder(memory, hlens, tokens, ylens)
    assert all(torch.equal(e.gate, torch.ones_like(e.gate)) for e in extras)
    torch.testing.assert_close(again, forced, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "position",
    ["learned", "sinusoidal", {"type": "rotary", "conf": {"rotary": "standard"}}],
    ids=["learned", "sinusoidal", "rotary"],
)
def test_incremental_batch_score_matches_teacher_forcing(position):
    decoder = small_decoder(position=position)
    memory, _, tokens, _ = decoder_inputs()
    full = torch.full((2,), memory.size(1)), torch.full((2,), tokens.size(1))
    with torch.no_grad():
        expected = decoder(memory, full[0], tokens, full[1])[0].log_softmax(-1)
        states = [None, None]
        for step in range(1, tokens.size(1) + 1):
            logp, states = decoder.batch_score(tokens[:, :step], states, memory)
            torch.testing.assert_close(logp, expected[:, step - 1], atol=1e-5, rtol=1e-5)


def test_positions_differ_between_schemes():
    memory, hlens, tokens, ylens = decoder_inputs()
    with torch.no_grad():
        outs = [small_decoder(position=p)(memory, hlens, tokens, ylens)[0] for p in ("learned", "sinusoidal", "rotary")]
    assert not torch.allclose(outs[0], outs[1]) and not torch.allclose(outs[1], outs[2])
    with pytest.raises(ValueError, match="max_positions=3"):
        small_decoder(position={"type": "learned", "conf": {"max_positions": 3}})(memory, hlens, tokens, ylens)


@pytest.mark.parametrize(
    "encoder, conf",
    [
        ("transformer", "{output_size: 16, attention_heads: 2, linear_units: 32, num_blocks: 1}"),
        ("conformer", "{output_size: 16, attention_heads: 2, linear_units: 32, num_blocks: 1, cnn_module_kernel: 3}"),
        ("e_branchformer", "{output_size: 16, attention_heads: 2, linear_units: 32, num_blocks: 1,"
                           " cgmlp_linear_units: 32}"),
        ("whisper_style", "{output_size: 16, attention_heads: 2, num_blocks: 1}"),
    ],
)
def test_dual_decoder_on_espnet_and_whisper_style_encoders(tmp_path, encoder, conf):
    _, _, model = build(tmp_path, encoder=encoder, encoder_conf=conf)
    speech, lengths, text, text_lengths = batch()
    loss, _, _ = model(speech=speech, speech_lengths=lengths, text=text, text_lengths=text_lengths)
    loss.backward()
    assert torch.isfinite(loss) and model.decoder.blocks[0].secondary_attn.key.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        x = model.encode(speech[:1], lengths[:1])[0][0]
        hyps = beam_search(model, batched=True, beam=2)(x=x, maxlenratio=0.0, minlenratio=0.0)
    assert hyps and hyps[0].yseq[-1] == model.eos
