"""Smoke test of the LibriSpeech-100 recipe: every stage (1-8) on a tiny spoken corpus.

A few sentences spoken by espeak-ng, written by sox as 16 kHz FLAC in the exact
upstream layout (LibriSpeech/<subset>/<spk>/<chapter>/<spk>-<chapter>-<utt>.flac
plus <spk>-<chapter>.trans.txt) for train-clean-100, dev-clean, dev-other,
test-clean and test-other: the committed copy under test/fixtures/librispeech
(see test/data/librispeech_layout.py; re-rendered and compared where espeak-ng
is installed). The real run.sh then runs with its own options
(speed perturbation 0.9/1.0/1.1, audio in FLAC archives, its decode config) except for a tiny model and
a small BPE vocabulary.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from echo_plugin.recipe.audio_archive import read_entry
from test.data.librispeech_layout import COMMITTED, SMOKE_CORPUS, SMOKE_VOICES, write_spoken_corpus
from test.recipe.recipe_helpers import REPO, copy_recipe, run_recipe

CORPUS = SMOKE_CORPUS
TEST_SETS = ("dev_clean", "dev_other", "test_clean", "test_other")
NBPE = 20
# Lengths as ESPnet handles them: with --max_duration 1.85 the 0.9x speed copy of the longest training
# clip (1.71 s -> 1.90 s) is left out of train_sp, while a test clip made 31 s long is kept and scored.
MAX_DURATION = "1.85"
DROPPED = "sp0.9-103-1240-0002"
LONG_TEST = "1089-134686-0000"
TAG = "asr_train_asr_tiny"
DECODE = "decode_decode_asr_valid.acc.ave"


def table(path: Path) -> dict[str, str]:
    return dict((line.split(" ", 1) + [""])[:2] for line in path.read_text().splitlines())


@pytest.fixture(scope="module")
def recipe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the recipe that has run stages 1-8 on the spoken corpus."""
    tmp = tmp_path_factory.mktemp("librispeech")
    corpus = Path(shutil.copytree(COMMITTED, tmp / "corpus" / "LibriSpeech"))  # the recipe reads a copy
    [long_test] = corpus.rglob(f"{LONG_TEST}.flac")
    speech, rate = sf.read(long_test)
    sf.write(long_test, np.concatenate([speech, np.zeros(31 * rate - len(speech))]), rate, format="FLAC")
    root = copy_recipe(tmp, "librispeech_100")
    shutil.copy2(REPO / "test" / "fixtures" / "librispeech" / "train_asr_tiny.yaml", root / "conf" / "train_asr_tiny.yaml")
    run_recipe(root, "--asr_config", "conf/train_asr_tiny.yaml", "--inference_config", "conf/decode_asr.yaml",
               "--nbpe", str(NBPE), "--nj", "2", "--inference_nj", "1", "--stage", "1", "--stop_stage", "8",
               "--max_duration", MAX_DURATION,
               "--local_data_opts", f"--librispeech_root {corpus}")
    return root


def test_data_dirs(recipe: Path) -> None:
    text = table(recipe / "data" / "train_clean_100" / "text")
    assert text["19-198-0002"] == "IT'S NOT THE HAT" and len(text) == 6
    assert table(recipe / "data" / "train_clean_100" / "utt2spk")["103-1240-0001"] == "103-1240"
    assert sorted(table(recipe / "data" / "dev" / "text")) == ["116-288045-0000", "84-121123-0000"]
    for name in TEST_SETS:
        assert len(table(recipe / "data" / name / "wav.scp")) == 1


def test_speed_perturbed_training_set(recipe: Path) -> None:
    dump = recipe / "dump" / "raw" / "train_clean_100_sp"
    text = table(dump / "text")
    originals = table(recipe / "data" / "train_clean_100" / "text")
    every = [*originals, *(f"sp0.9-{u}" for u in originals), *(f"sp1.1-{u}" for u in originals)]
    assert sorted(text) == sorted(u for u in every if u != DROPPED)
    [(utt, why)] = [line.split(" ", 1) for line in (dump / "dropped").read_text().splitlines()]
    assert utt == DROPPED and why.startswith("too long: 1.89") and why.endswith(f"s > --max_duration {MAX_DURATION}")
    assert table(dump / "utt2spk")["sp1.1-19-198-0000"] == "sp1.1-19-198"
    dur = {u: float(d) for u, d in table(dump / "utt2dur").items()}
    for u in originals:
        if f"sp0.9-{u}" != DROPPED:
            assert dur[f"sp0.9-{u}"] == pytest.approx(dur[u] / 0.9, abs=0.002)
        assert dur[f"sp1.1-{u}"] == pytest.approx(dur[u] / 1.1, abs=0.002)
    wav = table(dump / "wav.scp")  # run.sh's --audio_format flac.ark: every utterance in an archive
    assert wav["19-198-0000"].startswith(str(dump / "data" / "wav."))  # the upstream FLAC, archived at stage 2
    sp_archives = recipe / "data" / "train_clean_100_sp" / "audio"  # speed perturbation wrote archives: kept
    assert wav["sp0.9-19-198-0000"].startswith(str(sp_archives / "wav."))
    assert all(re.fullmatch(r".+/wav\.\d+\.ark:\d+", value) for value in wav.values())
    assert read_entry(wav["sp0.9-19-198-0000"])[1] == 16000
    for name in ("train_clean_100_sp", "dev", *TEST_SETS):
        assert (recipe / "dump" / "raw" / name / "audio_format").read_text() == "flac.ark\n"


def test_tokens_stats_and_training(recipe: Path) -> None:
    tokens = (recipe / "data" / "token_list" / f"bpe_unigram{NBPE}" / "tokens.txt").read_text().split()
    assert tokens[0] == "<blank>" and tokens[-1] == "<sos/eos>" and len(tokens) <= NBPE + 2
    stats = recipe / "exp" / f"asr_stats_bpe{NBPE}_fs16000_sp" / "train"  # speed perturbation: own stats
    assert len((stats / "speech_shape").read_text().splitlines()) == 17  # trained on the _sp set, less DROPPED
    exp = recipe / "exp" / TAG
    assert (exp / "valid.acc.ave.pth").exists()
    assert int((exp / "epochs").read_text()) == 1
    assert int((exp / "num_params").read_text()) > 1000
    config = yaml.safe_load((exp / "config.yaml").read_text())  # ESPnet read the archives as kaldi_ark
    assert [t for _, name, t in config["train_data_path_and_name_and_type"] if name == "speech"] == ["kaldi_ark"]


def word_errors(ref: list[str], hyp: list[str]) -> int:
    """Levenshtein distance over words."""
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, start=1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, start=1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1]


def test_decoding_scores_and_results(recipe: Path) -> None:
    results = (recipe / "RESULTS.md").read_text()
    for name in TEST_SETS:
        set_dir = recipe / "exp" / TAG / DECODE / name
        refs = table(recipe / "dump" / "raw" / name / "text")
        hyps = table(set_dir / "text")
        assert "/wav.scp,speech,kaldi_ark " in (set_dir / "logdir" / "asr_inference.1.log").read_text()
        assert sorted(hyps) == sorted(refs)
        wer = json.loads((set_dir / "score" / "scores.json").read_text())["wer"]
        errors = sum(word_errors(refs[u].split(), hyps[u].split()) for u in refs)
        assert wer["substitutions"] + wer["deletions"] + wer["insertions"] == errors
        assert wer["n_tokens"] == sum(len(refs[u].split()) for u in refs)
        assert f"|{name}|" in results
    assert float(table(recipe / "dump" / "raw" / "test_clean" / "utt2dur")[LONG_TEST]) == 31.0  # kept, scored
    assert "train_asr_tiny" in results
    assert (recipe / "exp" / TAG / "train_asr_tiny.zip").is_file()


def test_the_length_limits_are_documented() -> None:
    """asr.sh --help and this recipe's README name both limits, the dropped list and the test sets kept whole."""
    help_text = subprocess.run([str(REPO / "egs" / "TEMPLATE" / "asr1" / "asr.sh"), "--help"], capture_output=True,
                               text=True, check=True).stdout
    readme = (REPO / "egs" / "librispeech_100" / "asr1" / "README.md").read_text()
    for text in (help_text, readme):
        assert "--max_duration" in text and "--min_duration" in text and "dump/raw/<set>/dropped" in text
        assert re.search(r"test\s+sets\s+(are|is)\s+(kept whole|never filtered)", text), text


@pytest.mark.skipif(shutil.which("espeak-ng") is None or shutil.which("sox") is None,
                    reason="needs espeak-ng and sox")
def test_committed_corpus_is_what_the_renderer_writes(tmp_path: Path) -> None:
    """The committed fixture has the layout and transcripts of SMOKE_CORPUS and re-renders to the same lengths."""
    fresh = write_spoken_corpus(tmp_path, CORPUS, SMOKE_VOICES)
    committed = sorted(p.relative_to(COMMITTED) for p in COMMITTED.rglob("*") if p.is_file())
    assert committed == sorted(p.relative_to(fresh) for p in fresh.rglob("*") if p.is_file())
    for rel in committed:
        if rel.suffix == ".txt":
            assert (COMMITTED / rel).read_text() == (fresh / rel).read_text()
        else:
            assert sf.info(COMMITTED / rel).frames == sf.info(fresh / rel).frames
