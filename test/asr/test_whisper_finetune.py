"""Fine-tuning a Whisper warm start through ESPnet's trainer (issue 21 item 4), on a tiny Whisper-layout model.

The recipe's config ``train_asr_whisper_dual.yaml`` (merged as asr.sh merges it) with its checkpoint
replaced by a tiny random Whisper written here in openai-whisper's format, the real 51865-token
vocabulary, and a learning rate a tiny model learns with in a few steps: ``EchoASRTask.main`` trains
it on four clips, whose targets are Whisper's token ids with the start-of-transcript prompt
(``preprocessor: whisper``). The training loss falls, the frozen encoder's weights do not move while
the decoder's (primary and fresh secondary cross-attention) do, and ESPnet's decoding
(``EchoSpeech2Text``: prompt, Whisper suppression, beam search) turns the trained model's tokens back
into each clip's transcript.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

pytest.importorskip("whisper", reason="openai-whisper (tokenizer, log-mel): pip install openai-whisper")

from echo_plugin.recipe.overlay import load_config  # noqa: E402
from test.asr.whisper_reference import random_whisper, save_whisper  # noqa: E402

TUNING = Path(__file__).resolve().parents[2] / "egs" / "fsdd" / "asr1" / "conf" / "tuning"
FS = 8000
DIMS: Dict[str, int] = dict(
    n_mels=80, n_audio_ctx=100, n_audio_state=32, n_audio_head=2, n_audio_layer=1,
    n_vocab=51865, n_text_ctx=32, n_text_state=32, n_text_head=2, n_text_layer=1,
)  # fmt: skip
TRANSCRIPTS = {"a1": "ONE", "a2": "TWO THREE", "a3": "FOUR", "a4": "FIVE SIX"}
STEPS = 40


def clip(index: int, seconds: float) -> np.ndarray:
    """A distinct tone pair per clip (8 kHz), so the frozen random encoder tells them apart."""
    t = np.arange(int(seconds * FS)) / FS
    f0, f1 = 300.0 + 250.0 * index, 1800.0 - 300.0 * index
    return (0.3 * np.sin(2 * np.pi * f0 * t) + 0.2 * np.sin(2 * np.pi * f1 * t)).astype(np.float32)


def write_data(root: Path) -> Path:
    """wav.scp, text and shape files of the four clips (train = valid)."""
    data = root / "data"
    (data / "wav").mkdir(parents=True)
    scp, text, shape = [], [], []
    for i, (utt, words) in enumerate(sorted(TRANSCRIPTS.items())):
        audio = clip(i, 0.5 + 0.15 * i)
        sf.write(data / "wav" / f"{utt}.wav", audio, FS, subtype="PCM_16")
        scp.append(f"{utt} {data / 'wav' / f'{utt}.wav'}")
        text.append(f"{utt} {words}")
        shape.append(f"{utt} {audio.size}")
    for name, lines in (("wav.scp", scp), ("text", text), ("speech_shape", shape)):
        (data / name).write_text("\n".join(lines) + "\n")
    return data


def write_config(root: Path, checkpoint: Path) -> Path:
    """The recipe's dual config with the tiny checkpoint and a tiny model's learning rate and budget."""
    config = load_config(TUNING / "train_asr_whisper_dual.yaml")
    config["encoder_conf"].update(whisper_checkpoint=str(checkpoint), cache_mb=16)
    config["decoder_conf"]["whisper_checkpoint"] = str(checkpoint)
    config.update(optim_conf={"lr": 0.01, "weight_decay": 0.0}, scheduler_conf={"warmup_steps": 4}, batch_size=2,
                  max_epoch=2, num_iters_per_epoch=STEPS // 2, keep_nbest_models=1,
                  use_tensorboard=False, use_matplotlib=False, log_interval=100)
    path = root / "train.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Dict[str, object]:
    from echo_plugin.recipe.whisper_token_list import write_token_list
    from echo_plugin.tasks.asr import EchoASRTask

    root = tmp_path_factory.mktemp("whisper_finetune")
    checkpoint = save_whisper(random_whisper(DIMS, seed=0), DIMS, root / "tiny_whisper.pt")
    data = write_data(root)
    tokens = write_token_list("whisper_multilingual", root / "tokens")
    out = root / "exp"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        EchoASRTask.main(cmd=[
            "--config", str(write_config(root, checkpoint)), "--output_dir", str(out), "--ngpu", "0",
            "--token_type", "whisper_multilingual", "--bpemodel", "whisper_multilingual", "--token_list", str(tokens),
            "--use_preprocessor", "true", "--normalize", "none",
            "--train_data_path_and_name_and_type", f"{data / 'wav.scp'},speech,sound",
            "--train_data_path_and_name_and_type", f"{data / 'text'},text,text",
            "--valid_data_path_and_name_and_type", f"{data / 'wav.scp'},speech,sound",
            "--valid_data_path_and_name_and_type", f"{data / 'text'},text,text",
            "--train_shape_file", str(data / "speech_shape"), "--valid_shape_file", str(data / "speech_shape"),
        ])  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    return {"root": root, "data": data, "out": out, "checkpoint": checkpoint}


def batch_loss(model: torch.nn.Module, data: Path, preprocess) -> float:
    """The model's attention loss over the four clips (eval mode, one batch)."""
    speech, text = [], []
    for utt, words in sorted(TRANSCRIPTS.items()):
        audio, _ = sf.read(data / "wav" / f"{utt}.wav", dtype="float32")
        item = preprocess(utt, {"speech": audio, "text": words})
        speech.append(torch.from_numpy(item["speech"]))
        text.append(torch.from_numpy(item["text"]))
    model.eval()
    with torch.no_grad():
        pad = torch.nn.utils.rnn.pad_sequence
        _, stats, _ = model(pad(speech, batch_first=True), torch.tensor([s.numel() for s in speech]),
                            pad(text, batch_first=True, padding_value=-1), torch.tensor([t.numel() for t in text]))
    return float(stats["loss_att"])


def test_targets_are_whisper_ids_after_the_prompt(trained) -> None:
    import whisper.tokenizer

    from echo_plugin.tasks.asr import EchoASRTask

    config = yaml.safe_load((trained["out"] / "config.yaml").read_text())
    assert config["preprocessor"] == "whisper" and config["model_conf"]["sym_sos"] == "<|startoftranscript|>"
    import argparse

    preprocess = EchoASRTask.build_preprocess_fn(argparse.Namespace(**config), train=True)
    tok = whisper.tokenizer.get_tokenizer(True, num_languages=99, language="en", task="transcribe")
    ids = preprocess("a2", {"speech": np.zeros(800, np.float32), "text": "TWO THREE"})["text"].tolist()
    assert ids == list(tok.sot_sequence_including_notimestamps[1:]) + tok.encode(" TWO THREE")


def test_training_lowers_the_loss_and_keeps_the_encoder(trained) -> None:
    import argparse

    from echo_plugin.tasks.asr import EchoASRTask

    out = trained["out"]
    config = yaml.safe_load((out / "config.yaml").read_text())
    preprocess = EchoASRTask.build_preprocess_fn(argparse.Namespace(**config), train=False)
    start, _ = EchoASRTask.build_model_from_file(out / "config.yaml", None)  # the warm start (checkpoint read)
    end, _ = EchoASRTask.build_model_from_file(out / "config.yaml", out / "valid.acc.best.pth")
    before, after = batch_loss(start, trained["data"], preprocess), batch_loss(end, trained["data"], preprocess)
    assert after < 0.5 * before, (before, after)
    for (name, a), (_, b) in zip(start.encoder.state_dict().items(), end.encoder.state_dict().items()):
        assert torch.equal(a, b), f"the frozen encoder's {name} moved"
    decoder_moved = [n for (n, a), (_, b) in zip(start.decoder.state_dict().items(), end.decoder.state_dict().items())
                     if not torch.equal(a, b)]
    assert any(".secondary_attn." in n for n in decoder_moved) and any(".cross_attn." in n for n in decoder_moved)


def test_decoding_gives_whisper_tokens_back_as_text(trained) -> None:
    from echo_plugin.inference.speaker_speech2text import EchoSpeech2Text

    out = trained["out"]
    speech2text = EchoSpeech2Text(asr_train_config=out / "config.yaml", asr_model_file=out / "valid.acc.best.pth",
                                  beam_size=1, ctc_weight=0.0, lm_weight=0.0, maxlenratio=0.0, nbest=1)
    for utt, words in sorted(TRANSCRIPTS.items()):
        audio, _ = sf.read(trained["data"] / "wav" / f"{utt}.wav", dtype="float32")
        text, tokens, ids, _ = speech2text(audio)[0]
        assert text == words, (utt, text, tokens)
        assert ids[:3] == [50259, 50359, 50363]  # <|en|><|transcribe|><|notimestamps|> after <|startoftranscript|>


def test_whisper_tokens_without_the_whisper_preprocessor_are_refused() -> None:
    import argparse

    from echo_plugin.tasks.asr import EchoASRTask

    args = argparse.Namespace(use_preprocessor=True, token_type="whisper_multilingual", preprocessor="default")
    with pytest.raises(ValueError, match="needs preprocessor: whisper"):
        EchoASRTask.build_preprocess_fn(args, train=True)
