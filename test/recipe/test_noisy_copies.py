"""K stored noisy copies per training utterance: the sources kept, each copy at its recorded SNR, byte-identical
reruns, babble never of the utterance's own speaker, bad input one line naming the utterance."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from echo_plugin.recipe import noisy_copies
from echo_plugin.recipe.data_dir import read_table
from echo_plugin.recipe.noise_audio import utt_rng
from test.recipe.noise_fixtures import FS, make_data_dir, read_scp
from test.recipe.test_snr_sets import measured_snr


def run(src: Path, dst: Path, *extra: str) -> int:
    return noisy_copies.main(["--src", str(src), "--dst", str(dst), "--copies", "2", "--fs", str(FS),
                              "--snr_range", "0 20", "--seed", "4", *extra])


@pytest.mark.parametrize("noise", ["colored", "babble"])
def test_copies_keep_sources_text_and_speaker_at_their_snr(tmp_path: Path, noise: str) -> None:
    src = make_data_dir(tmp_path / "train", {"ann": 2, "bob": 2, "cat": 1})
    dst = tmp_path / "train_noisy2"
    assert run(src, dst, "--noise", noise) == 0
    src_scp, scp, snr = read_scp(src / "wav.scp"), read_scp(dst / "wav.scp"), read_table(dst / "snr")
    args = noisy_copies.parse_args(["--src", str(src), "--dst", str(dst), "--copies", "2", "--fs", str(FS),
                                    "--seed", "4", "--noise", noise])
    sources = noisy_copies.noise_for(args, noisy_copies.read_source(src))
    assert sorted(scp) == sorted([*src_scp, *(f"{u}-noise{k}" for u in src_scp for k in (1, 2))])
    text, utt2spk = read_table(dst / "text"), read_table(dst / "utt2spk")
    assert read_table(dst / "spk2utt")["ann"].split() == sorted(u for u in scp if u.startswith("ann-"))
    for utt, path in src_scp.items():
        assert scp[utt] == path  # the clean source as it is
        speech, _ = sf.read(path)
        for k in (1, 2):
            copy = f"{utt}-noise{k}"
            assert text[copy] == "ONE TWO" and utt2spk[copy] == utt.split("-")[0]
            mix, rate = sf.read(scp[copy])
            assert rate == FS and mix.shape == speech.shape
            rng = utt_rng(4, copy)  # the copy's own draws: its SNR, then its noise segment
            drawn = rng.uniform(0.0, 20.0)
            assert float(snr[copy]) == pytest.approx(drawn, abs=0.005)
            segment = sources[utt2spk[copy]](rng, len(speech))
            assert measured_snr(mix, speech, segment) == pytest.approx(drawn, abs=0.05)  # 16-bit rounding
    assert len({snr[u] for u in snr}) == len(snr)  # each copy its own draw


def test_rerun_is_byte_identical_and_skipped_when_current(tmp_path: Path, capsys) -> None:
    src = make_data_dir(tmp_path / "train", {"ann": 2, "bob": 1})
    assert run(src, tmp_path / "a") == 0 and run(src, tmp_path / "b") == 0
    for name in sorted(p.name for p in (tmp_path / "a" / "wav").iterdir()):
        assert (tmp_path / "a" / "wav" / name).read_bytes() == (tmp_path / "b" / "wav" / name).read_bytes()
    capsys.readouterr()
    assert run(src, tmp_path / "a") == 0
    assert "up to date" in capsys.readouterr().out


def test_babble_leaves_out_the_utterances_own_speaker(tmp_path: Path) -> None:
    src = make_data_dir(tmp_path / "train", {"ann": 2, "bob": 2})
    args = noisy_copies.parse_args(["--src", str(src), "--dst", str(tmp_path / "d"), "--copies", "1",
                                    "--fs", str(FS), "--noise", "babble"])
    sources = noisy_copies.noise_for(args, noisy_copies.read_source(src))
    assert sorted(sources["ann"].args[0]) == ["bob"] and sorted(sources["bob"].args[0]) == ["ann"]
    noise = sources["ann"](np.random.default_rng(0), 4000)
    assert noise.shape == (4000,) and np.mean(noise ** 2) == pytest.approx(1.0)
    lonely = make_data_dir(tmp_path / "one", {"ann": 2})
    assert run(lonely, tmp_path / "e", "--noise", "babble") == 1


def test_a_missing_wav_is_one_line_naming_it(tmp_path: Path, capsys) -> None:
    src = make_data_dir(tmp_path / "train", {"ann": 2})
    (src / "wav" / "ann-001.wav").unlink()
    assert run(src, tmp_path / "d") == 1
    err = capsys.readouterr().err
    assert "ann-001" in err and str(src / "wav.scp") in err and not (tmp_path / "d").exists()
