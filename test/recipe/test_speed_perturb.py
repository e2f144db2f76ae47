"""speed_perturb: ids, durations, pitch, determinism, faults."""
from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from echo_plugin.recipe import speed_perturb as sp

FS = 16000


def table(path: Path) -> dict[str, str]:
    return dict(line.split(" ", 1) for line in path.read_text().splitlines())


def tone(freq: float, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * FS)) / FS
    return 0.5 * np.sin(2 * np.pi * freq * t)


@pytest.fixture
def src(tmp_path: Path) -> Path:
    """A data dir of two speakers: tones at 500 Hz (wav) and 800 Hz (flac)."""
    d = tmp_path / "train"
    d.mkdir()
    sf.write(d / "a.wav", tone(500, 1.0), FS, subtype="PCM_16")
    sf.write(d / "b.flac", tone(800, 0.5), FS, subtype="PCM_16")
    (d / "wav.scp").write_text(f"spkA-u1 {d / 'a.wav'}\nspkB-u2 {d / 'b.flac'}\n")
    (d / "text").write_text("spkA-u1 HELLO THERE\nspkB-u2 BYE\n")
    (d / "utt2spk").write_text("spkA-u1 spkA\nspkB-u2 spkB\n")
    return d


def peak_hz(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum)) * FS / len(samples)


def test_ids_text_and_speakers(src: Path, tmp_path: Path) -> None:
    dst = tmp_path / "train_sp"
    assert sp.speed_perturb(src, dst, ["0.9", "1.0", "1.1"], nj=2)
    text = table(dst / "text")
    assert sorted(text) == ["sp0.9-spkA-u1", "sp0.9-spkB-u2", "sp1.1-spkA-u1", "sp1.1-spkB-u2", "spkA-u1", "spkB-u2"]
    assert text["sp0.9-spkA-u1"] == text["sp1.1-spkA-u1"] == text["spkA-u1"] == "HELLO THERE"
    utt2spk = table(dst / "utt2spk")
    assert utt2spk["sp0.9-spkB-u2"] == "sp0.9-spkB" and utt2spk["spkB-u2"] == "spkB"
    assert table(dst / "spk2utt")["sp1.1-spkA"] == "sp1.1-spkA-u1"
    wav = table(dst / "wav.scp")
    assert wav["spkA-u1"] == str(src / "a.wav")  # factor 1 keeps the original audio
    assert wav["sp0.9-spkA-u1"] == str(dst.absolute() / "audio" / "sp0.9-spkA-u1.flac")


@pytest.mark.parametrize("factor", ["0.9", "1.1", "1.5"])
def test_duration_scales_by_one_over_factor_and_pitch_by_factor(src: Path, tmp_path: Path, factor: str) -> None:
    dst = tmp_path / "sp"
    sp.speed_perturb(src, dst, [factor])
    for uttid, seconds, freq in (("spkA-u1", 1.0, 500), ("spkB-u2", 0.5, 800)):
        samples, rate = sf.read(table(dst / "wav.scp")[f"sp{factor}-{uttid}"])
        assert rate == FS
        assert abs(len(samples) - seconds * FS / float(factor)) <= 1
        assert peak_hz(samples) == pytest.approx(freq * float(factor), abs=2 * FS / len(samples))


def test_matches_sox_speed(src: Path, tmp_path: Path) -> None:
    """The same signal as ``sox in out speed 1.1`` up to resampling filter differences."""
    import shutil
    import subprocess

    if shutil.which("sox") is None:
        pytest.skip("sox not installed")
    ref = tmp_path / "ref.wav"
    subprocess.run(["sox", str(src / "a.wav"), "-b", "32", "-e", "floating-point", str(ref), "speed", "1.1"],
                   check=True)
    expected, _ = sf.read(ref)
    sp.speed_perturb(src, tmp_path / "sp", ["1.1"])
    got, _ = sf.read(tmp_path / "sp" / "audio" / "sp1.1-spkA-u1.flac")
    n = min(len(got), len(expected))
    assert abs(len(got) - len(expected)) <= 2
    middle = slice(200, n - 200)  # filter edges differ
    assert np.abs(got[middle] - expected[middle]).max() < 0.02


def test_deterministic_bytes(src: Path, tmp_path: Path) -> None:
    sp.speed_perturb(src, tmp_path / "one", ["0.9", "1.1"], nj=2)
    sp.speed_perturb(src, tmp_path / "two", ["0.9", "1.1"], nj=1)
    for name in ("sp0.9-spkA-u1.flac", "sp1.1-spkB-u2.flac"):
        assert (tmp_path / "one" / "audio" / name).read_bytes() == (tmp_path / "two" / "audio" / name).read_bytes()


def test_current_output_is_kept_and_new_factors_rebuild(src: Path, tmp_path: Path) -> None:
    dst = tmp_path / "sp"
    assert sp.speed_perturb(src, dst, ["0.9", "1.0"])
    assert not sp.speed_perturb(src, dst, ["0.9", "1.0"])
    assert sp.speed_perturb(src, dst, ["1.1", "1.0"])
    assert "sp1.1-spkA-u1" in table(dst / "text") and "sp0.9-spkA-u1" not in table(dst / "text")


def test_faults_name_the_utterance(src: Path, tmp_path: Path) -> None:
    (src / "b.flac").write_bytes(b"not audio")
    dst = tmp_path / "sp"
    assert sp.main(["--src", str(src), "--dst", str(dst), "--factors", "0.9"]) == 1
    assert not dst.exists()
    with pytest.raises(sp.DataDirError, match="utterance 'sp0.9-spkB-u2': unreadable audio"):
        sp.speed_perturb(src, dst, ["0.9"])
    with pytest.raises(ValueError, match="must be positive"):
        sp.speed_perturb(src, dst, ["-1"])
    with pytest.raises(ValueError, match="not a number"):
        sp.speed_perturb(src, dst, ["fast"])


def test_factor_parsing() -> None:
    assert sp.parse_factor("0.9") == Fraction(9, 10) and sp.parse_factor("1.0") == 1


def test_the_local_pool_is_at_most_this_machines_cores(src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture) -> None:
    """FLAC files are written by a local pool, on the head node under cmd_backend=slurm (--nj 32 there): at most
    the cores this process may use, logged; the same bytes."""
    pools: list[int] = []
    real = sp.ProcessPoolExecutor

    def recorded(max_workers: int) -> sp.ProcessPoolExecutor:
        pools.append(max_workers)
        return real(max_workers=max_workers)

    monkeypatch.setattr(sp, "ProcessPoolExecutor", recorded)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    sp.speed_perturb(src, tmp_path / "capped", ["0.9", "1.1"], nj=32)
    assert "speed_perturb: 1 local process (this machine's 1 core), not --nj 32" in capsys.readouterr().out
    sp.speed_perturb(src, tmp_path / "given", ["0.9", "1.1"], nj=1)
    assert pools == [1, 1] and "local process" not in capsys.readouterr().out
    for name in ("sp0.9-spkA-u1.flac", "sp1.1-spkB-u2.flac"):
        assert (tmp_path / "capped" / "audio" / name).read_bytes() == (tmp_path / "given" / "audio" / name).read_bytes()
