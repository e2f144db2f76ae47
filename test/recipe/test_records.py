"""Run records: what stage 5 and 7 store, replacement by key, staleness when the tree's config moves on."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from echo_plugin.recipe import records
from echo_plugin.recipe.overlay import config_hash, load_config
from test.recipe.records_fixture import make_recipe, train_and_score, write

REFS = {"lucas-1": "ONE TWO THREE", "lucas-2": "FOUR FIVE"}


def stored(root: Path, name: str) -> list[dict]:
    return [json.loads(line) for line in (root / "records" / f"{name}.jsonl").read_text().splitlines()]


def test_a_record_holds_the_run_the_fold_and_every_utterance(tmp_path: Path) -> None:
    root = make_recipe(tmp_path / "asr1")
    train_and_score(root, "asr_train_b", "conf/tuning/train_b.yaml",
                    {"lucas-1": "ONE TOO", "lucas-2": "FOUR FIVE SIX"}, REFS, seed=2,
                    options=("feats_normalize=speech_mvn", "speed_perturb_factors=0.9 1.0 1.1"))
    [record] = stored(root, "train_b")
    assert record["tag"] == "asr_train_b" and record["seed"] == 2 and record["schema"] == records.SCHEMA
    assert record["config_path"] == "conf/tuning/train_b.yaml"
    assert record["config"] == load_config(root / "conf/tuning/train_b.yaml")
    assert record["config"]["encoder_conf"] == {"output_size": 16, "num_blocks": 3}  # the overlay, merged
    options = {"feats_normalize": "speech_mvn", "speed_perturb_factors": "0.9 1.0 1.1"}
    assert record["run_options"] == options
    assert record["config_hash"] == config_hash(record["config"], options)
    # speed-perturbed copies count as their source speaker; the fold and its tuned-on mark from conf/folds.yaml
    assert record["fold"] == {"name": "test-lucas", "train": ["george", "jackson"], "dev": ["nicolas"],
                              "test": ["lucas"], "tuned_on": False}
    assert record["utts"] == [["lucas-1", "lucas", 3, 1, 1, 0], ["lucas-2", "lucas", 2, 0, 0, 1]]
    assert (record["wer"], record["n_words"]) == (60.0, 5)
    run = (record["epochs"], record["params"], record["train_seconds"], record["peak_rss_mb"])
    assert run == (6, 2890000, 661.0, 812.5)
    # epochs 1-6 of train_cpu_seconds.json, and the setup they ran in
    assert (record["train_cpu_seconds"], record["train_cpu_setup"]) == (300.0, "cpu, 1 thread, 1 process")
    assert record["decode"]["pass"] == "first" and record["decode"]["config"] == {"beam_size": 4, "ctc_weight": 0.8}
    assert record["decode"]["normalizer"] == "none" and records.decode_label(record) == record["decode"]["dir"]
    assert record["rtf"] == 0.25 and record["env"]["torch"] == "2.12.1"
    assert set(record["git"]) == {"commit", "dirty"}


def test_records_of_the_same_run_are_replaced_and_others_kept(tmp_path: Path) -> None:
    root = make_recipe(tmp_path / "asr1")
    train_and_score(root, "asr_train_a", "conf/tuning/train_a.yaml", REFS, REFS)
    train_and_score(root, "asr_train_a_s1", "conf/tuning/train_a.yaml", REFS, REFS, seed=1, name="train_a")
    train_and_score(root, "asr_train_a_nic", "conf/tuning/train_a.yaml", {"nicolas-1": "SIX"}, {"nicolas-1": "SEVEN"},
                    test="nicolas", name="train_a")
    train_and_score(root, "asr_train_a", "conf/tuning/train_a.yaml", {"lucas-1": "ONE", "lucas-2": "FOUR FIVE"}, REFS)
    keys = [(r["fold"]["name"], r["seed"], r["wer"], r["fold"]["tuned_on"]) for r in stored(root, "train_a")]
    assert sorted(keys) == [("test-lucas", 0, 40.0, False), ("test-lucas", 1, 0.0, False),
                            ("test-nicolas", 0, 100.0, True)]


def test_a_record_is_stale_once_its_config_or_the_base_it_overlays_changes(tmp_path: Path) -> None:
    root = make_recipe(tmp_path / "asr1")
    train_and_score(root, "asr_train_b", "conf/tuning/train_b.yaml", REFS, REFS, options=("nbpe=30",))
    [record] = stored(root, "train_b")
    assert not records.is_stale(record, root)
    base = root / "conf/tuning/train_a.yaml"
    text = base.read_text()
    write(base, text.replace("output_size: 16", "output_size: 32"))  # the default moved on
    assert records.is_stale(record, root)
    write(base, text)
    assert not records.is_stale(record, root)
    assert records.is_stale({**record, "run_options": {"nbpe": "50"}}, root)
    (root / "conf/tuning/train_b.yaml").unlink()
    assert records.is_stale(record, root)


def test_a_record_is_stale_once_its_configs_recipe_map_sets_its_run_options_otherwise(tmp_path: Path) -> None:
    root = make_recipe(tmp_path / "asr1")
    train_and_score(root, "asr_train_b", "conf/tuning/train_b.yaml", REFS, REFS,
                    options=("nbpe=30", "speed_perturb_factors=0.9 1.0 1.1"))
    [record] = stored(root, "train_b")
    overlay = root / "conf/tuning/train_b.yaml"
    text = overlay.read_text()
    write(overlay, text + "recipe: {speaker_adapt: false, nbpe: 30}\n")  # agrees, or sets what is not recorded
    assert not records.is_stale(record, root)
    write(overlay, text + "recipe: {speed_perturb_factors: ''}\n")  # the config now trains without
    assert records.is_stale(record, root)
    assert not records.is_stale({**record, "config_hash": config_hash(
        load_config(overlay), {"nbpe": "30", "speed_perturb_factors": ""})}, root)


def test_a_line_that_is_not_a_record_is_named(tmp_path: Path) -> None:
    write(tmp_path / "records" / "x.jsonl", '{"name": "x"}\n')
    with pytest.raises(ValueError, match=r"x.jsonl:1: not a run record"):
        records.read_records(tmp_path / "records")
    write(tmp_path / "records" / "x.jsonl", "{not json\n")
    with pytest.raises(ValueError, match=r"x.jsonl:1"):
        records.read_records(tmp_path / "records")


def test_write_without_run_info_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = make_recipe(tmp_path / "asr1")
    (root / "exp" / "asr_x").mkdir(parents=True)
    rc = records.main(["write", "--exp_dir", str(root / "exp" / "asr_x"), "--data_root", str(root / "dump/raw"),
                       "--train_set", "train_sp", "--valid_set", "dev_nicolas", "--test_sets", "t",
                       "--decode_dirs", "d", "--records_dir", str(root / "records")])
    assert rc == 1
    assert capsys.readouterr().err.strip().endswith("run.json: missing (written after training by stage 5)")


def test_scorings_through_another_normalizer_are_other_records(tmp_path: Path) -> None:
    """A rescoring with --normalizer whisper_digits is kept beside the plain one, never mixed with it."""
    plain = {"name": "x", "fold": {"name": "test-lucas"}, "seed": 0, "test_set": "t",
             "decode": {"dir": "decode_a", "normalizer": "none"}}
    old = {**plain, "decode": {"dir": "decode_a"}}  # a record written before the field existed
    whisper = {**plain, "decode": {"dir": "decode_a", "normalizer": "whisper_digits"}}
    assert records.decode_label(whisper) == "decode_a [whisper_digits]"
    assert records.record_key(plain) == records.record_key(old) != records.record_key(whisper)


def test_decode_passes_are_named_by_their_dir() -> None:
    assert records.decode_pass("decode_asr_ctc08_valid.acc.ave") == "first"
    assert records.decode_pass("decode_asr_ctc08_valid.acc.ave_spkadapt") == "spkadapt"
    assert records.decode_pass("decode_asr_ctc08_valid.acc.ave_deployed") == "deployed"
