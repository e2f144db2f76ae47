"""Echo encoder + decoder inside ESPnet: build through ASRTask, train a step, beam-search decode."""
import pytest
import torch
import yaml

from test.asr.espnet_build import TOKENS, build_asr

ENCODER_CONF = (
    "{output_size: 16, attention_heads: 2, linear_units: 32, num_blocks: 2, input_layer: conv2d,"
    " layers: [{num: 1, rotary: {type: standard, conf: {theta: 1000.0}}}, {num: 1, rotary: none}]}"
)
DECODER_CONF = "{attention_heads: 2, linear_units: 32, num_blocks: 2, tie_embeddings: true}"


@pytest.fixture(scope="module")
def asr(tmp_path_factory):
    """(ASRTask, args, model, workdir) for a tiny Echo/Echo joint CTC-attention model."""
    workdir = tmp_path_factory.mktemp("echo_e2e")
    ASRTask, args, model = build_asr(workdir, ENCODER_CONF, DECODER_CONF)
    return ASRTask, args, model, workdir


def batch():
    torch.manual_seed(1)
    speech = torch.randn(2, 40, 20)
    text = torch.tensor([[2, 3, 4, 5], [6, 2, -1, -1]])
    return speech, torch.tensor([40, 29]), text, torch.tensor([4, 2])


def encode_one(model):
    speech, lengths, _, _ = batch()
    with torch.no_grad():
        enc, _ = model.encode(speech[:1], lengths[:1])
    return enc[0]


def test_build_forward_backward(asr):
    from echo_plugin.asr.decoder.echo_decoder import EchoDecoder
    from echo_plugin.asr.encoder.echo_encoder import EchoEncoder

    _, _, model, _ = asr
    assert isinstance(model.encoder, EchoEncoder) and isinstance(model.decoder, EchoDecoder)
    model.train()
    speech, lengths, text, text_lengths = batch()
    loss, stats, _ = model(speech=speech, speech_lengths=lengths, text=text, text_lengths=text_lengths)
    assert torch.isfinite(loss) and stats["loss_ctc"] is not None and stats["loss_att"] is not None
    loss.backward()
    used = ["encoder.blocks.0.self_attn.query.weight", "decoder.embed.weight", "decoder.blocks.1.cross_attn.key.weight"]
    for name in used:
        grad = model.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name
    model.zero_grad()


def beam_search(model, batched: bool, beam: int = 3):
    from echo_plugin.espnet_legacy import BatchBeamSearch, BeamSearch, CTCPrefixScorer, LengthBonus

    search = (BatchBeamSearch if batched else BeamSearch)(
        scorers={
            "decoder": model.decoder,
            "ctc": CTCPrefixScorer(ctc=model.ctc, eos=model.eos),
            "length_bonus": LengthBonus(len(TOKENS)),
        },
        weights={"decoder": 0.7, "ctc": 0.3, "length_bonus": 1.0},
        beam_size=beam,
        vocab_size=len(TOKENS),
        sos=model.sos,
        eos=model.eos,
        token_list=TOKENS,
        pre_beam_score_key="full",
    )
    return search.eval()


def test_batch_beam_search_with_ctc_returns_hypotheses(asr):
    _, _, model, _ = asr
    model.eval()
    x = encode_one(model)
    with torch.no_grad():
        hyps = beam_search(model, batched=True)(x=x, maxlenratio=0.0, minlenratio=0.0)
    assert len(hyps) > 0
    best = hyps[0]
    assert best.yseq[0] == model.sos and best.yseq[-1] == model.eos and len(best.yseq) > 2
    assert torch.isfinite(torch.as_tensor(best.score))


def test_beam_search_and_batch_beam_search_agree(asr):
    _, _, model, _ = asr
    model.eval()
    x = encode_one(model)
    with torch.no_grad():
        plain = beam_search(model, batched=False)(x=x, maxlenratio=0.0, minlenratio=0.0)
        batched = beam_search(model, batched=True)(x=x, maxlenratio=0.0, minlenratio=0.0)
    assert len(plain[0].yseq) > 3  # several decoder steps, so the KV cache was used
    for p, b in zip(plain[:3], batched[:3]):
        assert p.yseq.tolist() == b.yseq.tolist()
        assert float(p.score) == pytest.approx(float(b.score), rel=1e-4, abs=1e-4)


def test_speech2text_decodes_saved_model(asr):
    """ESPnet's own inference class picks BatchBeamSearch for the Echo decoder."""
    from espnet2.bin.asr_inference import Speech2Text

    from echo_plugin.espnet_legacy import BatchBeamSearch

    _, args, model, workdir = asr
    config, weights = workdir / "config.yaml", workdir / "model.pth"
    config.write_text(yaml.safe_dump(vars(args)))
    torch.save(model.state_dict(), weights)
    speech2text = Speech2Text(str(config), str(weights), beam_size=3, ctc_weight=0.3, nbest=2)
    assert type(speech2text.beam_search) is BatchBeamSearch
    loaded = speech2text.asr_model.state_dict()  # ESPnet loads with strict=False: check every key
    assert loaded.keys() == model.state_dict().keys()
    assert all(torch.equal(loaded[k], v) for k, v in model.state_dict().items())
    speech, _, _, _ = batch()
    results = speech2text(speech[0])
    assert 1 <= len(results) <= 2
    text, tokens, token_ids, _ = results[0]
    assert isinstance(text, str) and all(0 < t < len(TOKENS) - 1 for t in token_ids)
