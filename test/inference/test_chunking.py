"""Splitting long recordings at silences, on synthetic audio: tones separated by silences of known position."""
from __future__ import annotations

import numpy as np
import pytest

from echo_plugin.inference.chunking import ChunkingConfig, frame_rms, pauses, silent_frames, split

FS = 8000


def tones_and_gaps(tones: list[float], gaps: list[float], noise: float = 1e-3, seed: int = 0
                   ) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Tones of the given lengths (s) with gaps (s) of low noise (or digital zeros: noise 0) between them ->
    samples, [start, end) of each gap."""
    rng = np.random.default_rng(seed)
    parts, silences, at = [], [], 0
    for k, length in enumerate(tones):
        n = int(length * FS)
        freq = 300 + 40 * k
        parts.append(0.3 * np.sin(2 * np.pi * freq * np.arange(n) / FS) + noise * rng.standard_normal(n))
        at += n
        if k < len(gaps):
            g = int(gaps[k] * FS)
            parts.append(noise * rng.standard_normal(g))
            silences.append((at, at + g))
            at += g
    return np.concatenate(parts).astype(np.float32), silences


def covers(chunks, total: int, overlap: int = 0) -> None:
    assert chunks[0].start == 0 and chunks[-1].end == total
    for before, after in zip(chunks, chunks[1:]):
        assert after.start == before.end - (overlap if before.forced else 0)


@pytest.mark.parametrize("noise", [1e-3, 0.0])
def test_cuts_fall_in_the_silences_and_no_chunk_is_too_long(noise: float) -> None:
    rng = np.random.default_rng(1)
    tones = list(rng.uniform(2.0, 4.0, 20))
    gaps = list(rng.uniform(0.4, 0.8, 19))
    samples, silences = tones_and_gaps(tones, gaps, noise)
    assert len(samples) / FS > 60
    chunks = split(samples, FS)
    covers(chunks, len(samples))
    assert len(chunks) >= 4 and not any(c.forced for c in chunks)
    assert all(c.end - c.start <= 20 * FS for c in chunks)
    for c in chunks[:-1]:
        assert any(a <= c.end <= b for a, b in silences), c.end / FS


def test_the_pauses_found_are_the_gaps() -> None:
    samples, silences = tones_and_gaps([1.0, 1.0, 1.0], [0.5, 0.3])
    found = pauses(samples, FS, ChunkingConfig())
    assert len(found) == 2
    for (a, b), (ga, gb) in zip(found, silences):
        assert ga <= a < ga + 0.03 * FS and gb - 0.03 * FS < b <= gb  # within a 20 ms frame and its hop


def test_silences_shorter_than_the_minimum_are_no_pauses() -> None:
    samples, _ = tones_and_gaps([1.0] * 30, [0.1] * 29)
    assert pauses(samples, FS, ChunkingConfig(min_silence_seconds=0.2)) == []
    assert len(pauses(samples, FS, ChunkingConfig(min_silence_seconds=0.05))) == 29


def test_a_recording_without_silence_gets_fixed_chunks_with_overlap() -> None:
    n = 50 * FS
    samples = (0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / FS)).astype(np.float32)
    assert not silent_frames(frame_rms(samples, FS)).any()
    config = ChunkingConfig(max_seconds=20.0, overlap_seconds=0.5)
    chunks = split(samples, FS, config)
    covers(chunks, n, overlap=int(0.5 * FS))
    assert [c.forced for c in chunks] == [True, True, False]
    assert [c.end - c.start for c in chunks[:2]] == [20 * FS, 20 * FS]
    assert all(c.end - c.start <= 20 * FS for c in chunks)


def test_white_noise_has_no_pauses() -> None:
    samples = 0.1 * np.random.default_rng(0).standard_normal(30 * FS).astype(np.float32)
    chunks = split(samples, FS)
    assert len(chunks) == 2 and chunks[0].forced and chunks[0].end - chunks[0].start == 20 * FS


def test_a_short_recording_is_one_chunk() -> None:
    samples, _ = tones_and_gaps([2.0, 2.0], [0.5])
    assert [(c.start, c.end, c.forced) for c in split(samples, FS)] == [(0, len(samples), False)]


def test_the_last_chunk_is_never_a_fragment() -> None:
    """A pause just before the end is not taken when it would leave less than min_chunk_seconds behind."""
    samples, silences = tones_and_gaps([19.0, 1.2, 0.3], [0.4, 0.4])
    config = ChunkingConfig(max_seconds=20.0, min_chunk_seconds=1.0)
    chunks = split(samples, FS, config)
    covers(chunks, len(samples))
    assert len(chunks) == 2 and silences[0][0] <= chunks[0].end <= silences[0][1]
    assert all(c.end - c.start >= FS for c in chunks)


def test_frame_rms_matches_a_direct_computation() -> None:
    samples = np.random.default_rng(2).standard_normal(1000).astype(np.float32)
    rms = frame_rms(samples, FS)
    frame, hop = 160, 80
    assert len(rms) == 12  # ceil((1000 - 160) / 80) + 1; the last frame is zero-padded
    for f in (0, 5, 11):
        piece = np.zeros(frame)
        chunk = samples[f * hop: f * hop + frame]
        piece[: len(chunk)] = chunk
        assert rms[f] == pytest.approx(np.sqrt(np.mean(piece ** 2)), rel=1e-6)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="min_chunk_seconds"):
        ChunkingConfig(max_seconds=1.0, min_chunk_seconds=1.0)
    with pytest.raises(ValueError, match="overlap_seconds"):
        ChunkingConfig(overlap_seconds=2.0)


def test_a_short_limit_shrinks_the_shortest_chunk_and_the_overlap() -> None:
    assert ChunkingConfig.for_limit(20.0) == ChunkingConfig()
    small = ChunkingConfig.for_limit(2.0)
    assert (small.max_seconds, small.min_chunk_seconds, small.overlap_seconds) == (2.0, 0.5, 0.25)
    with pytest.raises(ValueError, match="positive"):
        ChunkingConfig.for_limit(0.0)
