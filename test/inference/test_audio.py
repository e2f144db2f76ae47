"""The one audio reader: WAV header checks, resampling, errors naming utterance and file."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from echo_plugin.inference.audio import AudioError, load_audio, read_audio, wav_declared_frames


def tone(path: Path, n: int = 8000, rate: int = 8000, fmt: str = "WAV") -> Path:
    sf.write(str(path), 0.1 * np.sin(np.arange(n) / 5.0).astype(np.float32), rate, format=fmt, subtype="PCM_16")
    return path


def test_a_cut_off_wav_is_refused_with_both_counts(tmp_path: Path) -> None:
    path = tone(tmp_path / "a.wav")
    assert wav_declared_frames(path) == (8000, 8000)
    data = path.read_bytes()
    path.write_bytes(data[: 44 + 2 * 3000])
    assert wav_declared_frames(path) == (8000, 3000)
    assert sf.read(str(path))[0].shape == (3000,)  # libsndfile alone would take it silently
    with pytest.raises(AudioError, match=rf"utterance 'u1': truncated audio file {path}: its header declares "
                                         r"8000 samples, the file holds 3000"):
        read_audio(path, 8000, utt_id="u1")


def test_other_formats_and_whole_files_read_and_resample(tmp_path: Path) -> None:
    flac = tone(tmp_path / "a.flac", fmt="FLAC")
    assert wav_declared_frames(flac) is None
    data, rate = load_audio(flac)
    assert data.shape == (8000, 1) and rate == 8000
    assert read_audio(tone(tmp_path / "b.wav"), 16000).shape == (16000,)


@pytest.mark.parametrize(("make", "words"), [
    (lambda p: None, "missing audio file"),
    (lambda p: p.write_bytes(b"RIFF nonsense" * 10), "unreadable audio file"),
    (lambda p: sf.write(str(p), np.zeros(0, np.float32), 8000), "empty audio file"),
])
def test_bad_files_name_the_utterance_and_file(tmp_path: Path, make, words: str) -> None:
    path = tmp_path / "bad.wav"
    make(path)
    with pytest.raises(AudioError, match=f"utterance 'u7': {words} {path}"):
        read_audio(path, 8000, utt_id="u7")
