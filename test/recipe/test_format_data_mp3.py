"""Stage 2 (format_data) on Common Voice MP3 clips: decoded, resampled, or refused by name."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as F

from echo_plugin.recipe import format_data
from echo_plugin.recipe.data_dir import read_table
from test.data.cv_fixture import COMMITTED

CLIPS = sorted((COMMITTED / "clips").glob("*.mp3"))[:2]


def make_src(tmp_path: Path, wavs: dict[str, Path]) -> Path:
    src = tmp_path / "data" / "dev"
    src.mkdir(parents=True)
    (src / "wav.scp").write_text("".join(f"{u} {p}\n" for u, p in sorted(wavs.items())), encoding="utf-8")
    (src / "text").write_text("".join(f"{u} söz\n" for u in sorted(wavs)), encoding="utf-8")
    return src


def test_mp3_is_decoded_and_resampled_to_a_16k_wav(tmp_path: Path) -> None:
    assert "MP3" in sf.available_formats()
    src = make_src(tmp_path, {f"spk-{i}": clip for i, clip in enumerate(CLIPS)})
    dst = tmp_path / "dump" / "dev"
    assert format_data.main(["--src", str(src), "--dst", str(dst), "--fs", "16000", "--nj", "1"]) == 0
    wavs = read_table(dst / "wav.scp")
    for i, clip in enumerate(CLIPS):
        out, rate = sf.read(wavs[f"spk-{i}"], dtype="float32")
        assert rate == 16000 and sf.info(wavs[f"spk-{i}"]).subtype == "PCM_16"
        mp3, mp3_rate = sf.read(clip, dtype="float32")
        assert mp3_rate == 32000
        reference = F.resample(torch.from_numpy(mp3), mp3_rate, 16000).numpy()
        assert len(out) == len(reference)
        np.testing.assert_allclose(out, np.clip(reference, -1, 1), atol=1.5 / 32768)  # 16-bit rounding
        assert int(read_table(dst / "utt2num_samples")[f"spk-{i}"]) == len(reference)


def test_undecodable_mp3_is_named(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "common_voice_az_9.mp3"
    bad.write_bytes(b"ID3" + bytes(range(256)) * 8)
    src = make_src(tmp_path, {"spk-good": CLIPS[0], "spk-bad": bad})
    dst = tmp_path / "dump" / "dev"
    assert format_data.main(["--src", str(src), "--dst", str(dst), "--fs", "16000", "--nj", "1"]) == 1
    err = capsys.readouterr().err
    assert f"utterance 'spk-bad': unreadable audio file {bad}" in err
    assert "spk-good" not in err and not dst.exists()
