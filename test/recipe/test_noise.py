"""Noise lists for ESPnet's augmentation, and ESPnet really mixing them at the asked SNR."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from echo_plugin.recipe import noise, noise_audio
from test.recipe.noise_fixtures import FS, make_data_dir, read_scp, voiced


def test_active_mask_matches_espnet_detect_non_silence() -> None:
    from espnet2.train.preprocessor import detect_non_silence

    rng = np.random.default_rng(0)
    for n in (500, 1024, 5000, 8191, 12345):
        x = voiced(rng, seconds=n / FS)[:n] + 1e-4 * rng.standard_normal(n)
        x[: n // 3] *= 0.01
        ours = noise_audio.active_mask(x)
        assert ours.shape == (n,)
        np.testing.assert_array_equal(ours, detect_non_silence(x[None].copy())[0])


@pytest.mark.parametrize("color, exponent", sorted(noise_audio.COLOR_EXPONENTS.items()))
def test_colored_noise_spectral_slope(color: str, exponent: float) -> None:
    x = noise_audio.colored_noise(color, 2 ** 16, np.random.default_rng(1))
    assert np.mean(x ** 2) == pytest.approx(1.0)
    psd = np.abs(np.fft.rfft(x)) ** 2
    f = np.arange(len(psd))
    band = (f > 50) & (f < 20000)
    slope = np.polyfit(np.log(f[band]), np.log(psd[band]), 1)[0]
    assert slope == pytest.approx(-exponent, abs=0.1)


def test_mix_at_snr_exact_and_peak_limited() -> None:
    rng = np.random.default_rng(2)
    speech, n = voiced(rng), rng.standard_normal(len(voiced(rng)))
    for snr in (-5.0, 0.0, 10.0, 30.0):
        mix = noise_audio.mix_at_snr(speech, n, snr)
        assert np.max(np.abs(mix)) <= noise_audio.PEAK + 1e-12
        a, b = np.linalg.lstsq(np.stack([speech, n], axis=1), mix, rcond=None)[0]
        measured = 10 * np.log10(a ** 2 * noise_audio.speech_power(speech) / (b ** 2 * np.mean(n ** 2)))
        assert measured == pytest.approx(snr, abs=1e-6)


def test_babble_uses_distinct_speakers_when_there_are_enough() -> None:
    rng = np.random.default_rng(3)
    by_speaker = {f"s{i}": [voiced(rng)] for i in range(6)}
    for seed in range(10):
        x, speakers = noise_audio.babble(by_speaker, 4000, np.random.default_rng(seed))
        assert 3 <= len(speakers) <= 5 and len(set(speakers)) == len(speakers)
        assert x.shape == (4000,) and np.mean(x ** 2) == pytest.approx(1.0)
    _, speakers = noise_audio.babble({"a": [voiced(rng)], "b": [voiced(rng)]}, 4000, np.random.default_rng(0))
    assert len(speakers) >= 3 and set(speakers) == {"a", "b"}


@pytest.fixture()
def noise_dir(tmp_path: Path) -> Path:
    """A MUSAN-like dir: a mono 8 kHz wav in place, a stereo 16 kHz flac deeper down."""
    root = tmp_path / "musan" / "noise"
    (root / "free-sound" / "sub").mkdir(parents=True)
    rng = np.random.default_rng(4)
    sf.write(root / "free-sound" / "a.wav", 0.1 * rng.standard_normal(FS), FS, subtype="PCM_16")
    sf.write(root / "free-sound" / "sub" / "b.flac", 0.1 * rng.standard_normal((2 * 16000, 2)), 16000)
    (root / "README").write_text("not audio")
    return root


def run_noise(tmp_path: Path, *extra: str) -> tuple[int, Path]:
    train = tmp_path / "train"
    if not train.exists():
        make_data_dir(train, {"ann": 3, "bob": 3, "cat": 3, "dan": 3})
    out = tmp_path / "data_train"
    rc = noise.main(["--train_dir", str(train), "--out_dir", str(out), "--fs", str(FS), *extra])
    return rc, out


def test_noise_scp_lists_mono_files_at_fs(tmp_path: Path, noise_dir: Path) -> None:
    rc, out = run_noise(tmp_path, "--noise_dir", str(noise_dir), "--babble", "true", "--n_babble", "3",
                        "--babble_seconds", "2", "--colored_noise", "white pink brown", "--rir_dir", str(noise_dir))
    assert rc == 0
    scp = read_scp(out / "noise.scp")
    assert sorted(k for k in scp if not k.startswith("babble")) == [
        "colored-brown", "colored-pink", "colored-white", "dir-free-sound_a", "dir-free-sound_sub_b"]
    assert scp["dir-free-sound_a"] == str(noise_dir / "free-sound" / "a.wav")  # in place
    assert len([k for k in scp if k.startswith("babble-")]) == 3
    for key, path in scp.items():
        info = sf.info(path)
        assert (info.samplerate, info.channels) == (FS, 1), key
    assert sf.info(scp["dir-free-sound_sub_b"]).frames == pytest.approx(2 * FS, abs=2)
    for key in (k for k in scp if k.startswith("babble-")):
        speakers = key.split("-")[2:]
        assert 3 <= len(speakers) <= 5 and len(set(speakers)) == min(len(speakers), 4)  # 4 speakers
    assert sorted(read_scp(out / "rir.scp")) == ["rir-free-sound_a", "rir-free-sound_sub_b"]


def test_noise_lists_are_deterministic_and_reused(tmp_path: Path) -> None:
    args = ("--babble", "true", "--n_babble", "2", "--babble_seconds", "1", "--colored_noise", "pink")
    rc, out = run_noise(tmp_path, *args)
    assert rc == 0
    first = {k: Path(p).read_bytes() for k, p in read_scp(out / "noise.scp").items()}
    mtime = (out / "noise.scp").stat().st_mtime_ns
    assert run_noise(tmp_path, *args)[0] == 0
    assert (out / "noise.scp").stat().st_mtime_ns == mtime  # up to date: not rewritten
    (out / "noise" / "options.json").unlink()
    assert run_noise(tmp_path, *args)[0] == 0
    assert {k: Path(p).read_bytes() for k, p in read_scp(out / "noise.scp").items()} == first


def test_noise_errors_name_the_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_noise(tmp_path, "--noise_dir", str(tmp_path / "nowhere"))[0] == 1
    assert "nowhere" in capsys.readouterr().err
    assert run_noise(tmp_path, "--colored_noise", "purple")[0] == 1
    assert "purple" in capsys.readouterr().err
    (tmp_path / "train" / "wav" / "bob-001.wav").unlink()
    assert run_noise(tmp_path, "--babble", "true")[0] == 1
    assert "bob-001" in capsys.readouterr().err


def espnet_preprocessor(tmp_path: Path, noise_scp: Path, db_range: str, prob: str):
    """ESPnet's training preprocessor built from the options asr.sh passes."""
    from espnet2.tasks.asr import ASRTask

    tokens = tmp_path / "tokens.txt"
    tokens.write_text("<blank>\n<unk>\nO\nN\nE\n<sos/eos>\n")
    args = ASRTask.get_parser().parse_args([
        "--use_preprocessor", "true", "--token_type", "char", "--token_list", str(tokens),
        "--noise_scp", str(noise_scp), "--noise_db_range", db_range, "--noise_apply_prob", prob,
        "--output_dir", str(tmp_path / "exp")])
    return ASRTask.build_preprocess_fn(args, train=True)


def measured_snrs(preprocess, speech: np.ndarray, trials: int) -> list[float | None]:
    """SNR of what ESPnet added to ``speech`` in each call (None: nothing added)."""
    snrs = []
    for i in range(trials):
        out = preprocess(f"utt{i}", {"speech": speech.copy(), "text": "ONE"})["speech"]
        added = out.reshape(-1) - speech
        power = np.mean(added ** 2)
        snrs.append(None if power == 0 else 10 * np.log10(noise_audio.speech_power(speech) / power))
    return snrs


def test_espnet_mixes_our_noise_at_the_requested_snr(tmp_path: Path) -> None:
    rc, out = run_noise(tmp_path, "--colored_noise", "white pink", "--babble", "true", "--n_babble", "2")
    assert rc == 0
    speech = voiced(np.random.default_rng(5), seconds=1.5)
    np.random.seed(0)
    snrs = measured_snrs(espnet_preprocessor(tmp_path, out / "noise.scp", "0_20", "1.0"), speech, 40)
    assert all(s is not None and -0.01 <= s <= 20.01 for s in snrs)
    assert max(snrs) - min(snrs) > 10  # drawn over the range, not one fixed level
    fixed = measured_snrs(espnet_preprocessor(tmp_path, out / "noise.scp", "7_7", "1.0"), speech, 5)
    assert fixed == pytest.approx([7.0] * 5, abs=0.01)
    half = measured_snrs(espnet_preprocessor(tmp_path, out / "noise.scp", "5_5", "0.5"), speech, 200)
    assert 60 < sum(s is None for s in half) < 140  # --noise_apply_prob 0.5


def test_rir_only_writes_no_noise_scp(tmp_path: Path, noise_dir: Path) -> None:
    rc, out = run_noise(tmp_path, "--colored_noise", "white")
    assert rc == 0 and (out / "noise.scp").is_file()
    rc, out = run_noise(tmp_path, "--rir_dir", str(noise_dir))
    assert rc == 0 and not (out / "noise.scp").exists()  # a stale list would still be used
    assert len(read_scp(out / "rir.scp")) == 2


def test_unreadable_noise_file_is_named(tmp_path: Path, noise_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (noise_dir / "broken.wav").write_bytes(b"RIFF-not-really")
    assert run_noise(tmp_path, "--noise_dir", str(noise_dir))[0] == 1
    assert "broken.wav" in capsys.readouterr().err
