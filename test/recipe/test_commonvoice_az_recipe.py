"""Common Voice Azerbaijani recipe, every stage on CPU, on the espeak-ng MP3 release fixture.

The fixture (test/fixtures/commonvoice_az, made by test.data.cv_fixture) has
the exact Common Voice layout: clips/*.mp3 at 32 kHz and train/dev/test/validated.tsv
with a recent release's header; five espeak-ng voices are the speakers. The
real ``run.sh`` runs stages 1-8 with a tiny Echo config, 1 epoch and 40 BPE pieces,
its default noise augmentation included.
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import soundfile as sf
import yaml

from echo_plugin.data.commonvoice import read_cv_tsv
from echo_plugin.recipe.data_dir import read_table
from echo_plugin.text.azerbaijani import normalize_azerbaijani
from test.data.cv_fixture import COMMITTED
from test.recipe.recipe_helpers import copy_recipe, run_recipe

SETS = ("test",)  # run.sh also decodes dev; the test decodes one set to stay fast
NBPE = 40
EXP = "asr_train_asr_echo_tiny"
DECODE = "decode_decode_fast_valid.acc.ave"


@pytest.fixture(scope="module")
def recipe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A recipe dir that has run stages 1-8 once on the fixture release."""
    root = copy_recipe(tmp_path_factory.mktemp("cv_az"), corpus="commonvoice_az")
    run_recipe(root, "--stage", "1", "--stop_stage", "8", "--nj", "1", "--inference_nj", "1",
               "--nbpe", str(NBPE), "--asr_args", "--max_epoch 1", "--test_sets", " ".join(SETS),
               "--local_data_opts", f"--cv_root {COMMITTED}")
    return root


def expected_text(split: str) -> dict[str, str]:
    rows, faults = read_cv_tsv(COMMITTED / f"{split}.tsv")
    assert not faults
    return {r.utt_id: normalize_azerbaijani(r.sentence) for r in rows}


def test_data_dirs_hold_normalised_sentences(recipe: Path) -> None:
    for split in ("train", "dev", "test"):
        assert read_table(recipe / "data" / split / "text") == expected_text(split)
        wavs = read_table(recipe / "data" / split / "wav.scp")
        assert all(Path(p).suffix == ".mp3" and Path(p).is_file() for p in wavs.values())
    train_text = set(read_table(recipe / "data" / "train" / "text").values())
    assert "sabah görüşərik dedi leyla" in train_text  # quotes and punctuation gone
    assert "ata ana övladlarını çox sevir" in train_text
    assert "ığdır naxçıvana yaxındır" in read_table(recipe / "data" / "test" / "text").values()


def test_stage2_decodes_mp3_to_16k_wav(recipe: Path) -> None:
    for split in ("train", "dev", *SETS):
        dump = recipe / "dump" / "raw" / split
        src = read_table(recipe / "data" / split / "wav.scp")
        wavs = read_table(dump / "wav.scp")
        assert list(wavs) == sorted(src)
        durations = read_table(dump / "utt2dur")
        for utt, path in wavs.items():
            info = sf.info(path)
            assert (info.format, info.samplerate, info.channels) == ("WAV", 16000, 1)
            assert float(durations[utt]) == pytest.approx(sf.info(src[utt]).duration, abs=0.01)


def test_token_list_covers_azerbaijani_letters(recipe: Path) -> None:
    token_dir = recipe / "data" / "token_list" / f"bpe_unigram{NBPE}"
    tokens = (token_dir / "tokens.txt").read_text(encoding="utf-8").split()
    assert tokens[0] == "<blank>" and tokens[1] == "<unk>" and tokens[-1] == "<sos/eos>"
    letters = set("".join(tokens[2:-1]))
    assert set("əığöüçş") <= letters
    assert (recipe / "exp" / f"asr_stats_bpe{NBPE}_fs16000" / "train" / "feats_stats.npz").is_file()


def test_one_epoch_trained_with_noise_augmentation(recipe: Path) -> None:
    exp = recipe / "exp" / EXP
    assert (exp / "valid.acc.ave.pth").exists()
    assert int((exp / "epochs").read_text()) == 1
    # run.sh's default: babble of training speakers + white/pink/brown noise, 0-20 dB, p=0.5
    noise = read_table(recipe / "data" / "train" / "noise.scp")
    kinds = {key if key.startswith("colored-") else key.split("-")[0] for key in noise}
    assert kinds == {"babble", "colored-white", "colored-pink", "colored-brown"}, sorted(noise)
    assert all(sf.info(path).samplerate == 16000 for path in noise.values())
    config = yaml.safe_load((exp / "config.yaml").read_text(encoding="utf-8"))
    assert config["noise_scp"] == "data/train/noise.scp"
    assert config["noise_db_range"] == "0_20" and config["noise_apply_prob"] == 0.5


def test_decoded_and_scored(recipe: Path) -> None:
    for name in SETS:
        ref = read_table(recipe / "dump" / "raw" / name / "text")
        hyp_ids = [line.split()[0] for line in
                   (recipe / "exp" / EXP / DECODE / name / "text").read_text(encoding="utf-8").splitlines()]
        assert hyp_ids == sorted(ref)
        wer = json.loads((recipe / "exp" / EXP / DECODE / name / "score" / "scores.json").read_text())["wer"]
        assert wer["n_sentences"] == len(ref)
        assert wer["n_tokens"] == sum(len(t.split()) for t in ref.values())
        errors = wer["substitutions"] + wer["deletions"] + wer["insertions"]
        assert wer["error_rate"] == pytest.approx(100.0 * errors / wer["n_tokens"], abs=0.01)
    results = (recipe / "RESULTS.md").read_text(encoding="utf-8")
    # RESULTS.md is rendered from the run records: the experiment is named by its tag without asr_
    assert f"|{EXP.removeprefix('asr_')}|" in results and all(f"|{name}|" in results for name in SETS)


def test_packed_model_holds_bpe_model(recipe: Path) -> None:
    with zipfile.ZipFile(recipe / "exp" / EXP / "train_asr_echo_tiny.zip") as archive:
        names = archive.namelist()
    assert any(n.endswith("bpe.model") for n in names) and any(n.endswith("feats_stats.npz") for n in names)
    assert any(n.startswith(f"exp/{EXP}/") and n.endswith(".pth") for n in names)


def test_stage1_without_cv_root_explains_the_download(tmp_path: Path) -> None:
    root = copy_recipe(tmp_path, corpus="commonvoice_az")
    result = run_recipe(root, "--stage", "1", "--stop_stage", "1", check=False)
    assert result.returncode != 0
    assert "--cv_root is required" in result.stderr and "accept" in result.stderr
    assert not (root / "data").exists()
