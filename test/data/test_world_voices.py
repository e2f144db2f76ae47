"""WORLD pseudo-speakers: envelope warp, f0 scaling, corpus layout, reruns, data.sh plumbing."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import pyworld
import soundfile as sf

from echo_plugin.data import world_voices as wv
from echo_plugin.data.fsdd import find_recordings
from test.data.test_fsdd import (  # noqa: F401 (small_corpus is a fixture)
    SHARED_FSDD,
    TAKES,
    copy_recipe_script,
    count_lines,
    read_table,
    run_data_sh,
    small_corpus,
    snapshot,
)

TINY = wv.WorldVoiceConfig(speakers=("george", "jackson"), n_voices=2)
FS = 8000


@pytest.fixture(scope="module")
def world_root(small_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("world") / "corpus"
    wv.write_world_voices(small_corpus, root, TINY)
    return root


def vowel(f0: float, formants: tuple[float, ...], seconds: float = 0.6) -> np.ndarray:
    """(samples,) a synthetic vowel: a glottal pulse train at ``f0`` through resonances at ``formants``."""
    n = int(FS * seconds)
    excitation = np.zeros(n)
    excitation[:: int(round(FS / f0))] = 1.0
    spectrum = np.fft.rfft(excitation)
    freqs = np.fft.rfftfreq(n, 1.0 / FS)
    gain = sum(1.0 / (1.0 + ((freqs - f) / 80.0) ** 2) for f in formants)
    audio = np.fft.irfft(spectrum * gain, n)
    return 0.5 * audio / np.abs(audio).max()


def median_f0(audio: np.ndarray) -> float:
    f0, t = pyworld.dio(audio, FS, f0_floor=60.0, f0_ceil=400.0, frame_period=5.0)
    f0 = pyworld.stonemask(audio, f0, t, FS)
    return float(np.median(f0[f0 > 0]))


def first_formant(audio: np.ndarray) -> float:
    """Hz of the highest peak of the mean WORLD spectral envelope between 400 and 1100 Hz."""
    f0, t = pyworld.dio(audio, FS, f0_floor=60.0, f0_ceil=400.0, frame_period=5.0)
    envelope = pyworld.cheaptrick(audio, pyworld.stonemask(audio, f0, t, FS), t, FS).mean(axis=0)
    freqs = np.linspace(0.0, FS / 2, len(envelope))
    band = (freqs > 400.0) & (freqs < 1100.0)
    return float(freqs[band][np.argmax(envelope[band])])


def test_warp_envelope_moves_a_peak_by_the_factor_and_is_identity_at_one() -> None:
    bins = np.arange(129)
    envelope = np.exp(-0.5 * ((bins - 30) / 3.0) ** 2)[None, :] + 1e-6
    np.testing.assert_allclose(wv.warp_envelope(envelope, 1.0), envelope, rtol=1e-9)
    assert int(np.argmax(wv.warp_envelope(envelope, 1.2)[0])) == 36
    assert int(np.argmax(wv.warp_envelope(envelope, 0.8)[0])) == 24
    shrunk = wv.warp_envelope(envelope, 0.5)
    assert np.allclose(shrunk[0, 64:], shrunk[0, 64])  # above the source's Nyquist: the top bin repeats


def test_resynthesis_scales_f0_and_moves_formants_independently() -> None:
    audio = vowel(120.0, (700.0, 1200.0, 2500.0))
    same = wv.resynthesize(audio, FS, 1.0, 1.0)
    assert same.shape == audio.shape
    assert median_f0(same) == pytest.approx(120.0, rel=0.03)
    higher = wv.resynthesize(audio, FS, 1.3, 1.0)
    assert median_f0(higher) == pytest.approx(156.0, rel=0.03)
    assert first_formant(same) == pytest.approx(first_formant(audio), abs=35.0)
    assert first_formant(higher) == pytest.approx(first_formant(same), rel=0.08)  # pitch up, formants stay
    shorter_tract = wv.resynthesize(audio, FS, 1.0, 1.15)
    assert median_f0(shorter_tract) == pytest.approx(120.0, rel=0.03)
    assert first_formant(shorter_tract) / first_formant(same) == pytest.approx(1.15, abs=0.04)


def test_voices_are_seeded_within_their_ranges_and_named_after_their_source() -> None:
    cfg = wv.WorldVoiceConfig(n_voices=5)
    voices = wv.plan_voices(cfg)
    assert voices == wv.plan_voices(cfg) != wv.plan_voices(replace(cfg, seed=1))
    assert [v.speaker for v in voices[:5]] == [f"georgew{k}" for k in range(5)]
    assert {v.source for v in voices} == set(cfg.speakers)
    assert all(0.7 <= v.f0_scale <= 1.45 and 0.87 <= v.warp <= 1.15 for v in voices)
    assert len({(v.f0_scale, v.warp) for v in voices}) == len(voices)


def test_corpus_holds_every_take_of_each_voice_as_8k_mono(world_root: Path, small_corpus: Path) -> None:
    recordings = find_recordings(world_root)
    assert len(recordings) == 2 * 2 * 10 * TAKES
    assert {r.speaker for r in recordings} == {"georgew0", "georgew1", "jacksonw0", "jacksonw1"}
    for rec in recordings:
        audio, rate = sf.read(str(rec.path), dtype="int16")
        source = sf.read(str(small_corpus / "recordings" / f"{rec.digit}_{rec.speaker[:-2]}_{rec.index}.wav"),
                         dtype="int16")[0]
        assert rate == FS and audio.ndim == 1 and len(audio) == len(source), rec.path
        assert np.abs(audio).max() == pytest.approx(np.abs(source).max(), abs=2), rec.path
    stamp = json.loads((world_root / "voices.json").read_text())
    assert [v["speaker"] for v in stamp["voices"]] == ["georgew0", "georgew1", "jacksonw0", "jacksonw1"]


def test_same_config_gives_same_bytes_and_rerun_is_a_no_op(world_root: Path, small_corpus: Path,
                                                           tmp_path: Path) -> None:
    other = tmp_path / "corpus"
    wv.write_world_voices(small_corpus, other, TINY, nj=2)
    assert snapshot(other) == snapshot(world_root)
    mtimes = {p: p.stat().st_mtime_ns for p in other.rglob("*")}
    wv.write_world_voices(small_corpus, other, TINY)
    assert {p: p.stat().st_mtime_ns for p in other.rglob("*")} == mtimes
    wv.write_world_voices(small_corpus, other, replace(TINY, n_voices=1))
    assert len(find_recordings(other)) == 2 * 10 * TAKES


def test_bad_configs_and_unknown_speakers_are_clear_errors(small_corpus: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="n_voices"):
        wv.WorldVoiceConfig(n_voices=0)
    with pytest.raises(ValueError, match="f0_range"):
        wv.WorldVoiceConfig(f0_range=(1.2, 0.8))
    with pytest.raises(ValueError, match="nobody"):
        wv.write_world_voices(small_corpus, tmp_path / "x", replace(TINY, speakers=("george", "nobody")))
    assert not (tmp_path / "x").exists()


def test_data_sh_adds_world_voices_of_the_training_speakers_to_train(tmp_path: Path) -> None:
    recipe = tmp_path / "asr1"
    script = copy_recipe_script(recipe)
    args = ["--fsdd_root", str(SHARED_FSDD), "--max_takes", "1", "--n_connected_train", "3",
            "--n_connected_dev", "1", "--n_connected_test", "1",
            "--train_speakers", "jackson,yweweler,nicolas", "--dev_speakers", "george",
            "--world_voices", "2", "--n_connected_world", "4"]
    proc = run_data_sh(script, args, recipe)
    assert proc.returncode == 0, proc.stderr
    assert count_lines(recipe / "data" / "train" / "wav.scp") == 30 + 3 + 60 + 4
    speakers = {s for _, s in read_table(recipe / "data" / "train" / "utt2spk")}
    assert speakers == {"jackson", "yweweler", "nicolas", "jacksonw0", "jacksonw1", "ywewelerw0", "ywewelerw1",
                        "nicolasw0", "nicolasw1"}
    assert {s for _, s in read_table(recipe / "data" / "dev" / "utt2spk")} == {"george"}
    proc = run_data_sh(script, [*args, "--synth_voices", "2"], recipe)
    assert proc.returncode != 0 and "--synth_voices" in proc.stderr and "--world_voices" in proc.stderr
