"""Dual decoder and WhisperStyleEncoder from an openai-whisper checkpoint vs an independent reference."""
import pytest
import torch

from echo_plugin.asr.decoder.base import DecoderDims
from echo_plugin.asr.decoder.dual_decoder import DualCrossAttentionDecoder
from echo_plugin.asr.encoder.whisper_style_encoder import WhisperStyleEncoder
from echo_plugin.asr.warm_start import WarmStartError
from test.asr.whisper_reference import TINY_DIMS, random_whisper, save_whisper

D = TINY_DIMS


@pytest.fixture(scope="module")
def whisper(tmp_path_factory):
    """(reference model, checkpoint path)."""
    model = random_whisper()
    return model, save_whisper(model, D, tmp_path_factory.mktemp("whisper") / "tiny.pt")


def dual(path, **conf) -> DualCrossAttentionDecoder:
    conf.setdefault("dropout_rate", 0.0)
    return DualCrossAttentionDecoder(D["n_vocab"], D["n_text_state"], whisper_checkpoint=str(path), **conf).eval()


def inputs(batch: int = 2, length: int = 6, frames: int = 7):
    torch.manual_seed(3)
    tokens = torch.randint(0, D["n_vocab"], (batch, length))
    memory = torch.randn(batch, frames, D["n_text_state"])
    return tokens, memory


def run(decoder, tokens, memory):
    """Teacher-forced logits with every frame and token real."""
    hlens, ylens = torch.full((tokens.size(0),), memory.size(1)), torch.full((tokens.size(0),), tokens.size(1))
    return decoder(memory, hlens, tokens, ylens)[0]


def test_forced_primary_reproduces_whisper_decoder(whisper):
    ref, path = whisper
    decoder = dual(path, gate_override=1.0)
    tokens, memory = inputs()
    with torch.no_grad():
        logits = run(decoder, tokens, memory)
        expected = ref.decoder(tokens, memory)
    assert logits.shape == expected.shape
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)


def test_incremental_batch_score_matches_whisper(whisper):
    ref, path = whisper
    decoder = dual(path, gate_override=1.0)
    tokens, memory = inputs(batch=3, length=5)
    with torch.no_grad():
        expected = ref.decoder(tokens, memory).log_softmax(-1)
        states = [None] * 3
        for step in range(1, tokens.size(1) + 1):
            logp, states = decoder.batch_score(tokens[:, :step], states, memory)
            torch.testing.assert_close(logp, expected[:, step - 1], atol=1e-5, rtol=1e-5)


def test_every_pretrained_weight_lands_and_output_is_tied(whisper):
    ref, path = whisper
    decoder = dual(path)
    got = decoder.state_dict()
    for key, value in ref.decoder.state_dict().items():
        target = "position.table" if key == "positional_embedding" else key
        assert torch.equal(got[target], value), key
    assert decoder.output_layer.weight is decoder.token_embedding.weight and decoder.output_layer.bias is None
    block = decoder.blocks[0]
    assert block.attn.key.bias is None and block.cross_attn.key.bias is None
    assert not torch.equal(block.secondary_attn.query.weight, block.cross_attn.query.weight)  # fresh


def test_copy_primary_secondary_reproduces_whisper_with_learned_gate(whisper):
    ref, path = whisper
    decoder = dual(path, secondary_init="copy_primary")
    block = decoder.blocks[1]
    for name, value in block.cross_attn.state_dict().items():
        assert torch.equal(block.secondary_attn.state_dict()[name], value)
    tokens, memory = inputs()
    with torch.no_grad():
        logits = run(decoder, tokens, memory)
        expected = ref.decoder(tokens, memory)
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)


def test_fresh_secondary_with_learned_gate_changes_the_output(whisper):
    ref, path = whisper
    decoder = dual(path)
    tokens, memory = inputs()
    with torch.no_grad():
        logits = run(decoder, tokens, memory)
        decoder.set_gate_override(1.0)
        forced = run(decoder, tokens, memory)
    assert (logits - ref.decoder(tokens, memory)).abs().max() > 1e-2
    torch.testing.assert_close(forced, ref.decoder(tokens, memory), atol=1e-5, rtol=1e-5)


def test_missing_and_unexpected_keys_fail_with_names(whisper, tmp_path):
    ref, _ = whisper
    state = ref.state_dict()
    del state["decoder.blocks.1.cross_attn.value.bias"]
    state["decoder.blocks.0.cross_attn.key.bias"] = torch.zeros(D["n_text_state"])
    state["decoder.blocks.0.extra_norm.weight"] = torch.zeros(D["n_text_state"])
    path = save_whisper(ref, D, tmp_path / "bad.pt", state)
    with pytest.raises(WarmStartError) as error:
        dual(path)
    message = str(error.value)
    assert "missing keys (1): blocks.1.cross_attn.value.bias" in message
    assert "blocks.0.cross_attn.key.bias" in message and "blocks.0.extra_norm.weight" in message


def test_key_outside_encoder_and_decoder_fails(whisper, tmp_path):
    ref, _ = whisper
    state = {**ref.state_dict(), "alignment_heads": torch.zeros(2)}
    path = save_whisper(ref, D, tmp_path / "extra.pt", state)
    for build in (lambda: dual(path), lambda: WhisperStyleEncoder(D["n_mels"], whisper_checkpoint=str(path))):
        with pytest.raises(WarmStartError, match="unexpected keys .*alignment_heads"):
            build()


def test_vocabulary_mismatch_is_refused(whisper):
    _, path = whisper
    with pytest.raises(WarmStartError, match="n_vocab 11 in the checkpoint vs 12 here"):
        DualCrossAttentionDecoder(12, D["n_text_state"], whisper_checkpoint=str(path))


def test_from_whisper_is_the_constructor_with_the_checkpoint_sizes(whisper):
    _, path = whisper
    torch.manual_seed(5)
    built = DualCrossAttentionDecoder.from_whisper(path, dropout_rate=0.0).eval()
    torch.manual_seed(5)
    direct = dual(path)  # the ESPnet way: V and D given, the rest from the checkpoint
    width = D["n_text_state"]
    assert built.dims == direct.dims == DecoderDims(D["n_vocab"], width, D["n_text_head"], 4 * width, D["n_text_layer"])
    assert len(built.blocks) == D["n_text_layer"] and built.blocks[0].mlp[0].out_features == 4 * width
    for (name, value), (other, expected) in zip(built.state_dict().items(), direct.state_dict().items(), strict=True):
        assert name == other and torch.equal(value, expected), name


def test_whisper_style_encoder_reproduces_whisper_encoder(whisper):
    ref, path = whisper
    encoder = WhisperStyleEncoder(D["n_mels"], whisper_checkpoint=str(path)).eval()
    torch.manual_seed(4)
    mel = torch.randn(2, D["n_mels"], 2 * D["n_audio_ctx"])
    with torch.no_grad():
        out, olens, _ = encoder(mel.transpose(1, 2), torch.full((2,), mel.size(-1)))
        expected = ref.encoder(mel)
    assert olens.tolist() == [D["n_audio_ctx"]] * 2
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    assert encoder.output_size() == D["n_audio_state"]


def test_whisper_style_encoder_ignores_padding(whisper):
    _, path = whisper
    encoder = WhisperStyleEncoder(D["n_mels"], whisper_checkpoint=str(path)).eval()
    torch.manual_seed(5)
    feats = torch.randn(2, 9, D["n_mels"])
    with torch.no_grad():
        batched, olens, _ = encoder(feats, torch.tensor([9, 6]))
        alone, alone_lens, _ = encoder(feats[1:, :6], torch.tensor([6]))
    assert olens.tolist() == [5, 3] and alone_lens.tolist() == [3]
    torch.testing.assert_close(batched[1, :3], alone[0], atol=1e-5, rtol=1e-5)


def test_encoder_missing_key_and_mel_mismatch(whisper, tmp_path):
    ref, _ = whisper
    state = ref.state_dict()
    del state["encoder.blocks.1.mlp.2.weight"]
    path = save_whisper(ref, D, tmp_path / "noenc.pt", state)
    with pytest.raises(WarmStartError, match=r"missing keys \(1\): blocks\.1\.mlp\.2\.weight"):
        WhisperStyleEncoder(D["n_mels"], whisper_checkpoint=str(path))
    with pytest.raises(WarmStartError, match="n_mels=6"):
        WhisperStyleEncoder(D["n_mels"] + 1, whisper_checkpoint=str(path))


def test_whisper_model_through_espnet_yaml_with_frozen_warm_start(whisper, tmp_path):
    """encoder: whisper_style + decoder: dual from one checkpoint, model: echo_freeze, built by ASRTask."""
    from test.asr.dual_build import build

    ref, path = whisper
    tokens = ["<blank>", "<unk>", *"abcdefgh", "<sos/eos>"]  # n_vocab entries, as the checkpoint needs
    _, _, model = build(
        tmp_path, "--input_size", str(D["n_mels"]),
        encoder="whisper_style", encoder_conf=f"{{whisper_checkpoint: {path}}}",
        decoder_conf=f"{{whisper_checkpoint: {path}, secondary_init: copy_primary, dropout_rate: 0.0}}",
        model_conf=["freeze=encoder_and_primary"], tokens=tokens,
    )  # fmt: skip
    torch.manual_seed(7)
    mel = torch.randn(1, D["n_mels"], 2 * D["n_audio_ctx"])
    model.eval()
    with torch.no_grad():
        encoded, lens = model.encode(mel.transpose(1, 2), torch.tensor([mel.size(-1)]))
        tokens_in = torch.tensor([[10, 2, 3, 4]])
        logits, _ = model.decoder(encoded, lens, tokens_in, torch.tensor([4]))
    torch.testing.assert_close(encoded, ref.encoder(mel), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits, ref.decoder(tokens_in, ref.encoder(mel)), atol=1e-4, rtol=1e-4)
    model.train()
    loss, _, _ = model(mel.transpose(1, 2), torch.tensor([mel.size(-1)]), torch.tensor([[2, 3]]), torch.tensor([2]))
    loss.backward()
    trained = {n.split(".")[3] for n, p in model.named_parameters() if p.grad is not None}
    assert trained == {"secondary_attn", "gate"}
