"""Synthetic espeak-ng digit corpus and its use as extra FSDD training speakers."""
from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from echo_plugin.data import synthetic_digits as sd
from echo_plugin.data.fsdd import PrepConfig, find_recordings, prepare_fsdd
from test.data.test_fsdd import (  # noqa: F401 (small_corpus is a fixture)
    SHARED_FSDD,
    SMALL,
    copy_recipe_script,
    count_lines,
    read_table,
    run_data_sh,
    small_corpus,
    snapshot,
)

TINY = sd.SynthConfig(n_voices=3, n_takes=2)


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "corpus"
    sd.write_synthetic_corpus(root, TINY)
    return root


def test_corpus_is_fsdd_shaped_8k_mono_speech(synth_root: Path) -> None:
    recordings = find_recordings(synth_root)
    assert len(recordings) == 3 * 10 * 2
    assert {r.speaker for r in recordings} == {"synth000", "synth001", "synth002"}
    for rec in recordings:
        audio, rate = sf.read(str(rec.path), dtype="int16")
        assert rate == 8000 and audio.ndim == 1, rec.path
        assert 0.15 < len(audio) / rate < 1.5, rec.path  # one trimmed word, like FSDD's takes
        assert np.abs(audio).max() > 0.25 * 32767, rec.path
    voices = json.loads((synth_root / "voices.json").read_text())["voices"]
    assert len({(v["accent"], v["variant"]) for v in voices}) == 3


def test_takes_of_one_digit_differ_and_digits_differ(synth_root: Path) -> None:
    a = sf.read(str(synth_root / "recordings" / "7_synth000_0.wav"), dtype="int16")[0]
    b = sf.read(str(synth_root / "recordings" / "7_synth000_1.wav"), dtype="int16")[0]
    c = sf.read(str(synth_root / "recordings" / "1_synth000_0.wav"), dtype="int16")[0]
    assert len(a) != len(b) or not np.array_equal(a, b)
    assert len(a) != len(c) or not np.array_equal(a, c)


def test_same_config_gives_same_bytes_and_rerun_is_a_no_op(synth_root: Path, tmp_path: Path) -> None:
    other = tmp_path / "corpus"
    sd.write_synthetic_corpus(other, TINY)
    assert snapshot(other) == snapshot(synth_root)
    mtimes = {p: p.stat().st_mtime_ns for p in other.rglob("*")}
    sd.write_synthetic_corpus(other, TINY)
    assert {p: p.stat().st_mtime_ns for p in other.rglob("*")} == mtimes
    sd.write_synthetic_corpus(other, replace(TINY, n_takes=1))
    assert len(find_recordings(other)) == 3 * 10


def test_trim_cuts_only_the_quiet_edges() -> None:
    tone = np.sin(np.arange(800) / 3.0).astype(np.float32)
    padded = np.concatenate([np.zeros(400, np.float32), tone, np.zeros(240, np.float32)])
    assert np.array_equal(sd.trim(padded, 35.0), tone)


def test_bad_configs_and_missing_espeak_are_clear_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="n_voices"):
        sd.SynthConfig(n_voices=10_000)
    with pytest.raises(ValueError, match="n_takes"):
        sd.SynthConfig(n_takes=0)

    def missing(*args, **kwargs):
        raise FileNotFoundError("espeak-ng")

    monkeypatch.setattr(subprocess, "run", missing)
    with pytest.raises(RuntimeError, match="espeak-ng is not installed"):
        sd.espeak("one", "en-us+m1", 50, 150)


def test_extra_speakers_join_train_only(small_corpus: Path, synth_root: Path, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    prepare_fsdd(small_corpus, plain, SMALL)
    extra = tmp_path / "extra"
    cfg = replace(SMALL, extra_train_root=str(synth_root), n_connected_extra_train=5)
    prepare_fsdd(small_corpus, extra, cfg)
    for name in ("dev", "test_isolated", "test_connected"):
        assert (extra / name / "text").read_text() == (plain / name / "text").read_text(), name
    plain_train = dict(read_table(plain / "train" / "text"))
    extra_train = dict(read_table(extra / "train" / "text"))
    added = {u: t for u, t in extra_train.items() if u not in plain_train}
    assert {u: extra_train[u] for u in plain_train} == plain_train
    assert sum("-iso-" in u for u in added) == 60 and sum("-conn-" in u for u in added) == 5
    assert all(u.startswith("synth") for u in added)
    assert {s for _, s in read_table(extra / "train" / "utt2spk")} >= {"synth000", "synth001", "synth002"}


def test_regenerated_extra_corpus_rebuilds_the_data_dirs(small_corpus: Path, tmp_path: Path) -> None:
    root = tmp_path / "synth"
    sd.write_synthetic_corpus(root, replace(TINY, n_voices=1))
    out = tmp_path / "data"
    cfg = replace(SMALL, extra_train_root=str(root))
    prepare_fsdd(small_corpus, out, cfg)
    assert sum(u.startswith("synth000-iso") for u, _ in read_table(out / "train" / "text")) == 20
    sd.write_synthetic_corpus(root, replace(TINY, n_voices=1, n_takes=1))
    prepare_fsdd(small_corpus, out, cfg)
    assert sum(u.startswith("synth000-iso") for u, _ in read_table(out / "train" / "text")) == 10


def test_extra_speaker_named_like_a_corpus_speaker_is_rejected(small_corpus: Path, tmp_path: Path) -> None:
    clash = tmp_path / "clash"
    (clash / "recordings").mkdir(parents=True)
    src = next((small_corpus / "recordings").glob("0_lucas_0.wav"))
    (clash / "recordings" / "0_lucas_9.wav").write_bytes(src.read_bytes())
    with pytest.raises(ValueError, match="lucas"):
        prepare_fsdd(small_corpus, tmp_path / "data", replace(SMALL, extra_train_root=str(clash)))
    with pytest.raises(ValueError, match="needs extra_train_root"):
        PrepConfig(n_connected_extra_train=3)


def test_data_sh_adds_synthetic_speakers_to_train(tmp_path: Path) -> None:
    recipe = tmp_path / "asr1"
    script = copy_recipe_script(recipe)
    args = ["--fsdd_root", str(SHARED_FSDD), "--max_takes", "1", "--n_connected_train", "3",
            "--n_connected_dev", "1", "--n_connected_test", "1",
            "--synth_voices", "2", "--synth_takes", "1", "--n_connected_synth", "4"]
    proc = run_data_sh(script, args, recipe)
    assert proc.returncode == 0, proc.stderr
    assert count_lines(recipe / "data" / "train" / "wav.scp") == 30 + 3 + 20 + 4
    assert count_lines(recipe / "data" / "dev" / "wav.scp") == 10 + 1
    assert len(list((recipe / "data" / "local" / "synth" / "recordings").glob("*.wav"))) == 20
