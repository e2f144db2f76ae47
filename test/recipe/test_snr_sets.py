"""SNR-stratified test sets: exact SNR, byte-identical reruns, errors naming the utterance."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from echo_plugin.recipe import snr_sets
from echo_plugin.recipe.noise_audio import speech_power, utt_rng
from test.recipe.noise_fixtures import FS, make_data_dir, read_scp

BANDS = "clean 20 10 5 0 -5"


@pytest.fixture()
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    """A test set of two speakers and a training set sharing no speaker with it."""
    test = make_data_dir(tmp_path / "test", {"tina": 3, "tom": 2}, seed=1)
    train = make_data_dir(tmp_path / "train", {"ann": 2, "bob": 2, "cat": 2, "dan": 2}, seed=2)
    return test, train


def run(test: Path, out: Path, noise: str = "colored", *extra: str) -> int:
    return snr_sets.main(["--src", str(test), "--name", "test", "--out_dir", str(out), "--fs", str(FS),
                          "--bands", BANDS, "--noise", noise, "--seed", "3", *extra])


def measured_snr(mix: np.ndarray, speech: np.ndarray, noise: np.ndarray) -> float:
    """SNR of ``mix`` = a speech + b noise, a and b fitted by least squares."""
    a, b = np.linalg.lstsq(np.stack([speech, noise], axis=1), mix, rcond=None)[0]
    return float(10 * np.log10(a ** 2 * speech_power(speech) / (b ** 2 * np.mean(noise ** 2))))


@pytest.mark.parametrize("noise", ["white", "colored", "babble", "dir"])
def test_every_band_is_at_its_snr(dirs: tuple[Path, Path], tmp_path: Path, noise: str) -> None:
    test, train = dirs
    if noise == "dir":
        (tmp_path / "noises").mkdir()
        sf.write(tmp_path / "noises" / "n.wav", 0.3 * np.random.default_rng(0).standard_normal(3000), FS,
                 subtype="PCM_16")
        noise = str(tmp_path / "noises")
    out = tmp_path / "data"
    assert run(test, out, noise, "--babble_src", str(train)) == 0
    args = snr_sets.parse_args(["--src", str(test), "--name", "test", "--out_dir", str(out), "--fs", str(FS),
                                "--bands", BANDS, "--noise", noise, "--seed", "3", "--babble_src", str(train)])
    source = snr_sets.build_source(args, {"tina", "tom"})
    src_scp = read_scp(test / "wav.scp")
    assert read_scp(out / "test_clean" / "wav.scp") == src_scp
    for band in BANDS.split()[1:]:
        band_dir = out / f"test_snr{band}"
        assert (band_dir / "text").read_text() == (test / "text").read_text()
        assert (band_dir / "utt2spk").read_text() == (test / "utt2spk").read_text()
        scp = read_scp(band_dir / "wav.scp")
        assert sorted(scp) == sorted(src_scp)
        for utt, path in scp.items():
            speech, _ = sf.read(src_scp[utt])
            mix, rate = sf.read(path)
            assert rate == FS and mix.shape == speech.shape
            segment = source(utt_rng(3, utt), len(speech))
            assert measured_snr(mix, speech, segment) == pytest.approx(float(band), abs=0.1)


def test_reruns_are_byte_identical(dirs: tuple[Path, Path], tmp_path: Path) -> None:
    test, _ = dirs
    assert run(test, tmp_path / "a") == 0
    assert run(test, tmp_path / "b") == 0
    for band in ("snr20", "snr0"):
        a = read_scp(tmp_path / "a" / f"test_{band}" / "wav.scp")
        b = read_scp(tmp_path / "b" / f"test_{band}" / "wav.scp")
        assert all(Path(a[u]).read_bytes() == Path(b[u]).read_bytes() for u in a)
    mtime = (tmp_path / "a" / "test_snr0" / "wav.scp").stat().st_mtime_ns
    assert run(test, tmp_path / "a") == 0  # up to date: not rewritten
    assert (tmp_path / "a" / "test_snr0" / "wav.scp").stat().st_mtime_ns == mtime
    assert run(test, tmp_path / "c", "colored", "--seed", "4") == 0  # the last --seed wins
    c = read_scp(tmp_path / "c" / "test_snr0" / "wav.scp")
    a = read_scp(tmp_path / "a" / "test_snr0" / "wav.scp")
    assert any(Path(a[u]).read_bytes() != Path(c[u]).read_bytes() for u in a)


def test_babble_never_uses_test_speakers(dirs: tuple[Path, Path], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    test, _ = dirs
    # Babble source = the test set itself: no speaker is left.
    assert run(test, tmp_path / "data", "babble", "--babble_src", str(test)) == 1
    assert "no speaker outside the test set" in capsys.readouterr().err
    assert not (tmp_path / "data" / "test_snr0").exists()


def test_bad_input_names_the_utterance(dirs: tuple[Path, Path], tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    test, _ = dirs
    (test / "wav" / "tina-001.wav").unlink()
    sf.write(test / "wav" / "tom-000.wav", np.zeros(100) + 0.1, 16000, subtype="PCM_16")
    assert run(test, tmp_path / "data") == 1
    err = capsys.readouterr().err
    assert "utterance 'tina-001'" in err and "missing audio file" in err and "tina-001.wav" in err
    assert "utterance 'tom-000'" in err and "16000 Hz" in err
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").iterdir())


def test_a_band_that_is_not_a_number_is_refused(dirs: tuple[Path, Path]) -> None:
    with pytest.raises(SystemExit):
        snr_sets.parse_args(["--src", str(dirs[0]), "--name", "t", "--out_dir", "x", "--fs", "8000",
                             "--bands", "clean loud"])
