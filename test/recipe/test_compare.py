"""echo_plugin.recipe.compare: run records -> seed-averaged folds -> paired comparisons against a baseline."""
from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from echo_plugin.recipe.bootstrap import holm
from echo_plugin.recipe.compare import (
    SOURCE,
    RecordError,
    average_seeds,
    compare_table,
    fmt_p,
    load_records,
    main,
    pair,
)

REPO = Path(__file__).resolve().parents[2]
N_BOOT = 2000
BASE = "train_asr_echo"


def record(config: str = BASE, seed: int = 0, fold: str = "test-lucas", utts=None, *, test_set: str = "test_connected",
           tuned_on: bool = False, pass_: str = "first", decode_dir: str = "decode_asr_valid.acc.ave") -> dict:
    """A run record; utts: (utt_id, speaker, n_ref, errors) with the errors put in substitutions,
    or (utt_id, speaker, n_ref, S, D, I)."""
    if utts is None:
        utts = [(f"{fold}_u{i}", fold.removeprefix("test-"), 4, i % 2) for i in range(6)]
    rows = [list(u) if len(u) == 6 else [u[0], u[1], u[2], u[3], 0, 0] for u in utts]
    return {"config_name": config, "config_hash": "abc", "seed": seed,
            "fold": {"name": fold, "train": ["a"], "dev": ["b"], "test": [fold.removeprefix("test-")],
                     "tuned_on": tuned_on},
            "decode": {"dir": decode_dir, "pass": pass_}, "test_set": test_set, "utts": rows}


def write(records_dir: Path, records: list[dict], name: str = "runs.jsonl") -> Path:
    records_dir.mkdir(parents=True, exist_ok=True)
    path = records_dir / name
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def uniform(fold: str, n: int, n_ref: int, errors: int) -> list[tuple]:
    spk = fold.removeprefix("test-")
    return [(f"{spk}_{i}", spk, n_ref, errors) for i in range(n)]


# ---------------------------------------------------------------- loading


def test_load_records_all_files_with_source(tmp_path):
    write(tmp_path, [record(seed=0), record(seed=1)], "a.jsonl")
    (tmp_path / "b.jsonl").write_text("\n" + json.dumps(record(seed=2)) + "\n\n", encoding="utf-8")
    (tmp_path / "notes.txt").write_text("not a record", encoding="utf-8")
    recs = load_records(tmp_path)
    assert [r["seed"] for r in recs] == [0, 1, 2]
    assert recs[2][SOURCE] == f"{tmp_path / 'b.jsonl'}:2"


def test_bad_json_line_is_one_line_error_exit_2(tmp_path, capsys):
    path = write(tmp_path, [record()], "bad.jsonl")
    with open(path, "a", encoding="utf-8") as f:
        f.write('{"config_name": "x", \n')
    assert main(["--records", str(tmp_path), "--n_boot", "100"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"compare: error: {path}:2: not valid JSON")


def test_bad_json_exit_status_from_the_command_line(tmp_path):
    path = write(tmp_path, [record()], "bad.jsonl")
    path.write_text(path.read_text() + "nope\n", encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "echo_plugin.recipe.compare", "--records", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"compare: error: {path}:2: not valid JSON (Expecting value, column 1)"


@pytest.mark.parametrize("module, extra", [("compare", []), ("claims", ["--spec", "claims.yaml"])])
def test_n_boot_must_be_positive_in_both_reports(tmp_path, capsys, module, extra):
    cli = importlib.import_module(f"echo_plugin.recipe.{module}")
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--records", str(tmp_path), "--n_boot", "0", *extra])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"{module}: error: --n_boot must be positive"


@pytest.mark.parametrize("mutate, message", [
    (lambda r: r.pop("seed"), "missing field 'seed'"),
    (lambda r: r["decode"].pop("pass"), "missing field 'decode.pass'"),
    (lambda r: r.update(seed="0"), "field 'seed' has the wrong type"),
    (lambda r: r["utts"].append(["u", "s", 3, -1, 0, 0]), "utts[6] is not"),
    (lambda r: r["utts"].append(r["utts"][0]), "listed twice"),
])
def test_malformed_record_names_file_and_line(tmp_path, mutate, message):
    rec = record()
    mutate(rec)
    path = write(tmp_path, [record(seed=5), rec])
    with pytest.raises(RecordError, match=rf"^{path}:2: .*{message.replace('[', '.').replace(']', '.')}"):
        load_records(tmp_path)


def test_empty_records_dir_is_an_error(tmp_path):
    with pytest.raises(RecordError, match="no records"):
        load_records(tmp_path)


# ---------------------------------------------------------------- seed averaging


def test_errors_averaged_over_seeds(tmp_path):
    # utterance u1: 2 errors (S+D+I = 1+1+0) in seed 0, 4 (2+1+1) in seed 1 -> 3.
    write(tmp_path, [record(seed=0, utts=[("u1", "lucas", 8, 1, 1, 0), ("u2", "lucas", 2, 0, 0, 0)]),
                     record(seed=1, utts=[("u2", "lucas", 2, 0, 0, 1), ("u1", "lucas", 8, 2, 1, 1)])])
    runs = average_seeds(load_records(tmp_path))
    run = runs[(BASE, "first", "test_connected", "test-lucas")]
    assert run.utts == {"u1": ("lucas", 8, 3.0), "u2": ("lucas", 2, 0.5)}
    assert run.seed_wer == {0: pytest.approx(20.0), 1: pytest.approx(50.0)}


def test_n_ref_mismatch_across_seeds_names_the_utterance(tmp_path, capsys):
    path = write(tmp_path, [record(seed=0, utts=[("u1", "lucas", 3, 0), ("u7", "lucas", 4, 1)]),
                            record(seed=1, utts=[("u1", "lucas", 3, 0), ("u7", "lucas", 5, 1)])])
    with pytest.raises(RecordError, match=rf"^{path}:2: utterance 'u7' .*5 reference words in seed 1, 4 in seed 0"):
        average_seeds(load_records(tmp_path))
    assert main(["--records", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'u7'" in err


def test_seeds_must_decode_the_same_utterances(tmp_path):
    write(tmp_path, [record(seed=0, utts=[("u1", "lucas", 3, 0), ("u2", "lucas", 3, 0)]),
                     record(seed=1, utts=[("u1", "lucas", 3, 0)])])
    with pytest.raises(RecordError, match="lacks 'u2'"):
        average_seeds(load_records(tmp_path))


def test_two_decode_dirs_need_a_choice(tmp_path):
    write(tmp_path, [record(decode_dir="decode_a", utts=[("u1", "lucas", 2, 0)]),
                     record(decode_dir="decode_b", utts=[("u1", "lucas", 2, 2)])])
    recs = load_records(tmp_path)
    with pytest.raises(RecordError, match="--decode_dir"):
        average_seeds(recs)
    runs = average_seeds(recs, decode_dir="decode_b")
    assert runs[(BASE, "first", "test_connected", "test-lucas")].utts["u1"][2] == 2.0


@pytest.mark.parametrize("field, value, what", [
    ("config_hash", "sha256:other", "config hash sha256:other differs from seed 0's abc"),
    ("decode", {"dir": "decode_b", "pass": "first"}, "decode decode_b differs from seed 0's decode_a"),
    ("decode", {"dir": "decode_a", "pass": "first", "normalizer": "whisper_digits"},
     r"decode decode_a \[whisper_digits\] differs"),
])
def test_seeds_of_one_row_must_be_one_system(tmp_path, field, value, what):
    """Seeds trained from another config (a stale hash) or decoded another way are not averaged."""
    stale = record(seed=1, decode_dir="decode_a")
    stale[field] = value
    path = write(tmp_path, [record(seed=0, decode_dir="decode_a"), stale])
    with pytest.raises(RecordError, match=rf"^{path}:2: {BASE} seed 1 test_connected fold test-lucas: {what}"):
        average_seeds(load_records(tmp_path))


def test_pairing_names_decodes_that_differ(tmp_path):
    write(tmp_path, [record(BASE, 0, "test-a", uniform("test-a", 10, 4, 1), decode_dir="decode_x"),
                     record("cfg", 0, "test-a", uniform("test-a", 10, 4, 2), decode_dir="decode_y"),
                     record("same", 0, "test-a", uniform("test-a", 10, 4, 2), decode_dir="decode_x")])
    runs = average_seeds(load_records(tmp_path))
    text = "\n".join(compare_table([pair(runs, c, BASE, "first", "test_connected", N_BOOT) for c in ("cfg", "same")]))
    assert "- `cfg` vs `train_asr_echo`: decoded differently (`cfg`: decode_y; `train_asr_echo`: decode_x)" in text
    assert "`same` vs `train_asr_echo`: decoded differently" not in text


def test_decode_dir_choice_keeps_its_second_pass(tmp_path):
    write(tmp_path, [record(decode_dir="decode_a"), record(decode_dir="decode_b"),
                     record(decode_dir="decode_a_spkadapt", pass_="spkadapt"),
                     record(decode_dir="decode_b_spkadapt", pass_="spkadapt")])
    runs = average_seeds(load_records(tmp_path), decode_dir="decode_a")
    assert sorted(k[1] for k in runs) == ["first", "spkadapt"]
    assert {r.sources[0].split(":")[-1] for r in runs.values()} == {"1", "3"}


def test_name_stands_for_a_missing_config_name(tmp_path):
    rec = record("ignored")
    del rec["config_name"]
    rec["name"] = "train_asr_echo_tied"
    write(tmp_path, [rec])
    assert load_records(tmp_path)[0]["config_name"] == "train_asr_echo_tied"


def test_utterance_without_speaker_is_named(tmp_path):
    rec = record()
    rec["utts"].append(["lost_utt", None, 3, 0, 0, 0])
    path = write(tmp_path, [rec])
    with pytest.raises(RecordError, match=rf"^{path}:1: utts.6. .'lost_utt'. has no speaker"):
        load_records(tmp_path)


def test_grouped_by_pass_and_test_set(tmp_path):
    write(tmp_path, [record(), record(pass_="spkadapt"), record(test_set="test_isolated")])
    assert sorted(average_seeds(load_records(tmp_path))) == [
        (BASE, "first", "test_connected", "test-lucas"), (BASE, "first", "test_isolated", "test-lucas"),
        (BASE, "spkadapt", "test_connected", "test-lucas")]


# ---------------------------------------------------------------- comparisons


def test_point_estimate_is_the_pooled_seed_averaged_wer(tmp_path):
    recs = []
    for fold, n_ref, base_err, cfg_err in (("test-lucas", 4, 1, 0), ("test-theo", 2, 1, 1)):
        recs += [record(BASE, 0, fold, uniform(fold, 10, n_ref, base_err)),
                 record(BASE, 1, fold, uniform(fold, 10, n_ref, base_err + 2)),
                 record("cfg", 0, fold, uniform(fold, 10, n_ref, cfg_err))]
    write(tmp_path, recs)
    p = pair(average_seeds(load_records(tmp_path)), "cfg", BASE, "first", "test_connected", N_BOOT)
    words = 10 * 4 + 10 * 2
    assert p.comparison.wer_b == pytest.approx(100 * (10 * 2 + 10 * 2) / words)   # seed means 2 and 2
    assert p.comparison.wer_a == pytest.approx(100 * (0 + 10) / words)
    assert p.comparison.diff == pytest.approx(100 * (10 - 40) / words)
    assert (p.comparison.n_speakers, p.comparison.n_utts) == (2, 20)
    assert (p.config_seeds, p.baseline_seeds) == ([1, 1], [2, 2])


def test_unpaired_folds_ignored_and_reported(tmp_path):
    recs = [record(BASE, 0, f, uniform(f, 10, 4, 1)) for f in ("test-a", "test-b", "test-c")]
    recs += [record("cfg", 0, f, uniform(f, 10, 4, 2)) for f in ("test-a", "test-b", "test-d")]
    recs.append(record(BASE, 1, "test-c", uniform("test-c", 10, 4, 4)))
    write(tmp_path, recs)
    runs = average_seeds(load_records(tmp_path))
    p = pair(runs, "cfg", BASE, "first", "test_connected", N_BOOT)
    assert p.common == ["test-a", "test-b"]
    assert (p.only_config, p.only_baseline) == (["test-d"], ["test-c"])
    assert p.comparison.wer_b == pytest.approx(25.0)   # test-c's 4 errors per utterance never enter
    assert p.comparison.wer_a == pytest.approx(50.0)
    text = "\n".join(compare_table([p]))
    assert "| `cfg` | 2x1 vs 2x1 | 50.00 | 25.00 | +25.00 [+25.00, +25.00] |" in text
    assert "unpaired folds left out (only `cfg` has test-d; only `train_asr_echo` has test-c)" in text


def test_no_common_folds_and_not_run_rows(tmp_path, capsys):
    write(tmp_path, [record(BASE, 0, "test-a", uniform("test-a", 5, 2, 1)),
                     record("cfg", 0, "test-z", uniform("test-z", 5, 2, 1))])
    assert main(["--records", str(tmp_path), "--configs", "cfg", "ghost", "--n_boot", "200"]) == 0
    out = capsys.readouterr().out
    assert "| `cfg` | no common folds |" in out and "| `ghost` | not run |" in out
    assert "no common folds (`cfg` has test-z; `train_asr_echo` has test-a)" in out


def test_better_config_verdict_and_holm_family(tmp_path):
    speakers = ["a", "b", "c", "d", "e"]
    recs = []
    for spk in speakers:
        fold = f"test-{spk}"
        recs.append(record(BASE, 0, fold, [(f"{spk}{i}", spk, 4, 1 + (i % 3 == 0)) for i in range(40)]))
        recs.append(record("good", 0, fold, [(f"{spk}{i}", spk, 4, int(i % 5 == 0)) for i in range(40)]))
        recs.append(record("same", 0, fold, [(f"{spk}{i}", spk, 4, 1 + (i % 3 == 1)) for i in range(40)]))
    write(tmp_path, recs)
    runs = average_seeds(load_records(tmp_path))
    pairings = [pair(runs, c, BASE, "first", "test_connected", N_BOOT) for c in ("good", "same")]
    good, same = (p.comparison for p in pairings)
    assert good.ci_high < 0 and same.ci_low < 0 < same.ci_high
    adjusted = holm([good.p_value, same.p_value])
    rows = [line.split(" | ") for line in compare_table(pairings) if line.startswith("| `")]
    assert [r[7] for r in rows] == [fmt_p(a) for a in adjusted]
    assert [r[8].rstrip(" |") for r in rows] == ["better", "no detectable difference"]


def test_tuned_on_folds_starred_with_footnote(tmp_path, capsys):
    recs = []
    for fold, tuned in (("test-george", True), ("test-lucas", False)):
        for seed in (0, 1):
            recs.append(record(BASE, seed, fold, uniform(fold, 5, 2, seed), tuned_on=tuned))
        recs.append(record("cfg", 0, fold, uniform(fold, 5, 2, 1), tuned_on=tuned))
    write(tmp_path, recs)
    out_file = tmp_path / "out" / "compare.md"
    assert main(["--records", str(tmp_path), "--n_boot", "200", "--out", str(out_file)]) == 0
    out = capsys.readouterr().out
    assert out_file.read_text(encoding="utf-8") == out
    assert "| `cfg` | 2x1 vs 2x2 * |" in out
    assert "(`fold.tuned_on`): test-george;" in out
    # Baseline spread: per (fold, seed) WER, fold means, spreads.
    assert "| fold | seed 0 | seed 1 | mean |" in out
    assert "| test-george * | 0.00 | 50.00 | 25.00 |" in out
    assert "- seed-to-seed spread: std 35.36 points" in out and "max-min 50.00" in out
    assert "- fold-to-fold spread: std 0.00 points across the 2 fold means" in out


def test_output_is_deterministic(tmp_path, capsys):
    write(tmp_path, [record(BASE, 0, "test-a", [(f"u{i}", "a", 3, i % 2) for i in range(30)]),
                     record("cfg", 0, "test-a", [(f"u{i}", "a", 3, int(i % 3 == 0)) for i in range(30)])])
    main(["--records", str(tmp_path), "--n_boot", "500"])
    first = capsys.readouterr().out
    main(["--records", str(tmp_path), "--n_boot", "500"])
    assert capsys.readouterr().out == first


def test_missing_baseline_is_an_error(tmp_path, capsys):
    write(tmp_path, [record("cfg")])
    assert main(["--records", str(tmp_path)]) == 2
    assert "no records of the baseline train_asr_echo" in capsys.readouterr().err
