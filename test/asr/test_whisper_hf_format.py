"""Hugging Face transformers Whisper checkpoints into the Echo Whisper-layout model (strict).

Always on: the tiny random reference Whisper renamed to transformers' keys by the published
renaming (whisper_reference.hf_state), saved as ``pytorch_model.bin`` / safetensors with a
``config.json``. With transformers installed: a random ``WhisperForConditionalGeneration``
saved by ``save_pretrained`` loads into the Echo model, whose encoder output and logits
then equal transformers' own forward pass.
"""
from __future__ import annotations

import json

import pytest
import torch

from echo_plugin.asr import whisper_ckpt
from echo_plugin.asr.decoder.dual_decoder import DualCrossAttentionDecoder
from echo_plugin.asr.encoder.whisper_style_encoder import WhisperStyleEncoder
from echo_plugin.asr.hf_whisper_ckpt import name_table
from echo_plugin.asr.warm_start import WarmStartError
from test.asr.whisper_reference import TINY_DIMS, hf_config, hf_state, random_whisper

D = TINY_DIMS


@pytest.fixture(scope="module")
def ref():
    return random_whisper(seed=1)


def save(tmp_path, state, config=None, name="pytorch_model.bin"):
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "config.json").write_text(json.dumps(hf_config(D) if config is None else config))
    if name.endswith(".safetensors"):
        from safetensors.torch import save_file

        save_file({k: v.clone() for k, v in state.items()}, str(tmp_path / name))  # clone: no shared storage
    else:
        torch.save(state, tmp_path / name)
    return tmp_path / name


def echo(path):
    encoder = WhisperStyleEncoder(D["n_mels"], whisper_checkpoint=str(path)).eval()
    decoder = DualCrossAttentionDecoder(
        D["n_vocab"], D["n_text_state"], whisper_checkpoint=str(path), gate_override=1.0, dropout_rate=0.0
    ).eval()
    return encoder, decoder


def run(encoder, decoder, mel, tokens):
    with torch.no_grad():
        enc, lens, _ = encoder(mel.transpose(1, 2), torch.full((mel.size(0),), mel.size(-1)))
        return enc, decoder(enc, lens, tokens, torch.full((tokens.size(0),), tokens.size(1)))[0]


def inputs(seed=0):
    torch.manual_seed(seed)
    return torch.randn(2, D["n_mels"], 2 * D["n_audio_ctx"]), torch.randint(0, D["n_vocab"], (2, 5))


def test_table_covers_the_renamed_reference(ref):
    assert sorted(name_table(D).values()) == sorted(k for k in hf_state(ref.state_dict()) if k != "proj_out.weight")
    assert set(name_table(D)) == set(ref.state_dict())


@pytest.mark.parametrize("name", ["pytorch_model.bin", "model.safetensors"])
def test_state_dict_file_and_directory_reproduce_the_reference(tmp_path, ref, name):
    if name.endswith(".safetensors"):
        pytest.importorskip("safetensors")
    path = save(tmp_path / "hf", hf_state(ref.state_dict()), name=name)
    for target in (path, path.parent):
        dims, state = whisper_ckpt.read_whisper(target)
        assert dims == D
        for key, value in ref.state_dict().items():
            assert torch.equal(state[key], value), key
    mel, tokens = inputs()
    enc, logits = run(*echo(path.parent), mel, tokens)
    with torch.no_grad():
        torch.testing.assert_close(enc, ref.encoder(mel), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(logits, ref.decoder(tokens, ref.encoder(mel)), atol=1e-5, rtol=1e-5)


def test_bare_whisper_model_without_proj_out(tmp_path, ref):
    state = {k[len("model.") :]: v for k, v in hf_state(ref.state_dict()).items() if k != "proj_out.weight"}
    assert whisper_ckpt.read_whisper(save(tmp_path / "bare", state))[0] == D


def test_missing_unexpected_and_untied_are_named(tmp_path, ref):
    state = hf_state(ref.state_dict())
    del state["model.decoder.layers.1.encoder_attn.v_proj.bias"]
    state["model.encoder.layers.0.self_attn.k_proj.bias"] = torch.zeros(D["n_audio_state"])
    state["proj_out.weight"] = state["proj_out.weight"] + 1
    with pytest.raises(WarmStartError) as error:
        echo(save(tmp_path / "bad", state))
    message = str(error.value)
    assert "missing keys (1): model.decoder.layers.1.encoder_attn.v_proj.bias" in message
    assert "unexpected keys (1): model.encoder.layers.0.self_attn.k_proj.bias" in message
    assert "proj_out.weight differs from decoder.embed_tokens.weight" in message


def test_config_is_required_and_checked(tmp_path, ref):
    path = save(tmp_path / "noconf", hf_state(ref.state_dict()))
    (path.parent / "config.json").unlink()
    with pytest.raises(WarmStartError, match="needs its config.json beside it"):
        whisper_ckpt.read_whisper(path)
    config = {**hf_config(D), "activation_function": "relu"}
    del config["decoder_layers"]
    with pytest.raises(WarmStartError, match="config lacks decoder_layers"):
        whisper_ckpt.read_whisper(save(tmp_path / "lacks", hf_state(ref.state_dict()), config))
    config["decoder_layers"] = D["n_text_layer"]
    with pytest.raises(WarmStartError, match="activation_function = 'relu'"):
        whisper_ckpt.read_whisper(save(tmp_path / "relu", hf_state(ref.state_dict()), config))


def test_save_pretrained_matches_transformers_forward(tmp_path):
    transformers = pytest.importorskip("transformers", reason="transformers not installed")
    config = transformers.WhisperConfig(
        **{k: v for k, v in hf_config(D).items() if k != "model_type"},
        pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=3, begin_suppress_tokens=None,
    )  # fmt: skip
    torch.manual_seed(5)
    model = transformers.WhisperForConditionalGeneration(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn_like(p) * 0.3 + (1.0 if name.endswith("layer_norm.weight") else 0.0))
    model.save_pretrained(tmp_path / "hf")
    mel, tokens = inputs(seed=2)
    enc, logits = run(*echo(tmp_path / "hf"), mel, tokens)
    with torch.no_grad():
        out = model(input_features=mel, decoder_input_ids=tokens)
    torch.testing.assert_close(enc, out.encoder_last_hidden_state, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits, out.logits, atol=1e-5, rtol=1e-5)
