"""echo_plugin.recipe.claims: the claims spec and CLAIMS.md's supported / contradicted / not run logic."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from echo_plugin.recipe.bootstrap import BETTER, NO_DIFFERENCE, WORSE, holm
from echo_plugin.recipe.claims import (
    CONTRADICTED,
    MIN_SPEAKERS,
    NOT_RUN,
    NOT_SHOWN,
    SUPPORTED,
    Claim,
    SpecError,
    cpu_per_epoch,
    evaluate,
    fmt_cpu,
    load_spec,
    main,
    support,
)
from echo_plugin.recipe.compare import average_seeds, load_records

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "egs" / "fsdd" / "asr1"
BASE = "train_asr_echo"
SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo")


def record(config: str, fold_spk: str, errors_of, *, seed: int = 0, test_set: str = "test_connected",
           pass_: str = "first", tuned_on: bool = False, date: str | None = None, n_utt: int = 40) -> dict:
    """A run record of ``n_utt`` 4-word utterances of speaker ``fold_spk``; errors_of(i) -> errors of utterance i."""
    rec = {"config_name": config, "seed": seed,
           "fold": {"name": f"test-{fold_spk}", "train": [], "dev": [], "test": [fold_spk], "tuned_on": tuned_on},
           "decode": {"dir": "decode_asr_valid.acc.ave", "pass": pass_}, "test_set": test_set,
           "utts": [[f"{fold_spk}_{i}", fold_spk, 4, int(errors_of(i)), 0, 0] for i in range(n_utt)]}
    if date is not None:
        rec["date"] = date
    return rec


def baseline_errors(i: int) -> int:
    return 1 + (i % 3 == 0)          # ~1.33 errors / 4 words


def low_errors(i: int) -> int:
    return int(i % 5 == 0)           # 0.2 errors: clearly better than the baseline


def high_errors(i: int) -> int:
    return 3 + (i % 2)               # 3.5 errors: clearly worse


def same_errors(i: int) -> int:
    return 1 + (i % 3 == 1)          # the baseline's rate on other utterances


def write_records(records_dir: Path, configs: dict[str, object], **kw) -> None:
    records_dir.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(record(cfg, spk, err, **kw)) for cfg, err in configs.items() for spk in SPEAKERS]
    (records_dir / "runs.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_spec(path: Path, items: list[dict]) -> Path:
    path.write_text(json.dumps(items), encoding="utf-8")   # JSON is YAML
    return path


def table_rows(text: str, heading: str) -> dict[str, list[str]]:
    """{claim cell: cells} of the table under ``heading``."""
    section = text.split(heading + "\n", 1)[1].split("\n#", 1)[0]
    rows = [line.strip("| ").split(" | ") for line in section.splitlines() if line.startswith("| ") and "`" in line]
    return {r[0]: r for r in rows}


# ---------------------------------------------------------------- supported logic


@pytest.mark.parametrize("verdict, expect, result", [
    (BETTER, BETTER, SUPPORTED), (WORSE, BETTER, CONTRADICTED), (NO_DIFFERENCE, BETTER, NOT_SHOWN),
    (WORSE, WORSE, SUPPORTED), (BETTER, WORSE, CONTRADICTED), (NO_DIFFERENCE, WORSE, NOT_SHOWN),
    (None, WORSE, NOT_RUN), (None, BETTER, NOT_RUN),
])
def test_support(verdict, expect, result):
    assert support(verdict, expect) == result


def test_fewer_folds_than_the_minimum_make_an_anecdote_whatever_the_interval():
    assert support(BETTER, BETTER, n_speakers=1) == f"anecdote (1 test speaker): points to {BETTER}"
    assert support(WORSE, BETTER, n_speakers=2) == f"anecdote (2 test speakers): points to {WORSE}"
    assert support(BETTER, BETTER, n_speakers=MIN_SPEAKERS) == SUPPORTED
    assert support(None, BETTER, n_speakers=1) == NOT_RUN


def test_one_speaker_with_a_huge_effect_is_an_anecdote_in_the_table(tmp_path):
    write_records(tmp_path / "records", {BASE: baseline_errors, "x_good": low_errors})
    path = tmp_path / "records" / "runs.jsonl"
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    one = [r for r in records if r["fold"]["name"] == records[0]["fold"]["name"]]  # one test speaker
    path.write_text("\n".join(json.dumps(r) for r in one) + "\n", encoding="utf-8")
    spec = write_spec(tmp_path / "claims.yaml", [{"claim": "good helps", "config": "x_good", "expect": "better"}])
    out = tmp_path / "CLAIMS.md"
    assert main(["--records", str(tmp_path / "records"), "--spec", str(spec), "--out", str(out),
                 "--n_boot", "500"]) == 0
    row = table_rows(out.read_text(encoding="utf-8"), "### test_connected (first pass)")["good helps"]
    assert row[-2:] == [BETTER, f"anecdote (1 test speaker): points to {BETTER}"]


def test_folds_that_share_a_test_speaker_count_as_one_speaker(tmp_path):
    """Three dev variants of one test speaker are one speaker's anecdote, however clear the effect."""
    lines = []
    for cfg, errors in ((BASE, baseline_errors), ("x_good", low_errors)):
        for dev in ("george", "jackson", "nicolas"):
            rec = record(cfg, "lucas", errors)
            rec["fold"].update(name=f"test-lucas_dev-{dev}", dev=[dev])
            rec["utts"] = [[f"{dev}/{u[0]}", *u[1:]] for u in rec["utts"]]
            lines.append(json.dumps(rec))
    (tmp_path / "records").mkdir()
    (tmp_path / "records" / "runs.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    spec = write_spec(tmp_path / "claims.yaml", [{"claim": "good helps", "config": "x_good", "expect": "better"}])
    out = tmp_path / "CLAIMS.md"
    assert main(["--records", str(tmp_path / "records"), "--spec", str(spec), "--out", str(out),
                 "--n_boot", "500"]) == 0
    text = out.read_text(encoding="utf-8")
    assert f"<!-- Generated file: edit {spec} and regenerate" in text   # the spec it came from
    row = table_rows(text, "### test_connected (first pass)")["good helps"]
    assert row[3].startswith("3x1 vs 3x1")
    assert row[-2:] == [BETTER, f"anecdote (1 test speaker): points to {BETTER}"]


def test_claims_end_to_end(tmp_path, capsys):
    write_records(tmp_path / "records", {BASE: baseline_errors, "x_none": high_errors, "x_good": low_errors,
                                         "x_same": same_errors})
    spec = write_spec(tmp_path / "claims.yaml", [
        {"claim": "positions help", "config": "x_none", "expect": "worse", "source": "seed 02"},
        {"claim": "none is better", "config": "x_none", "expect": "better"},
        {"claim": "good helps", "config": "x_good", "expect": "better", "baseline": BASE},
        {"claim": "the default beats good", "config": "x_good", "expect": "worse"},
        {"claim": "same helps", "config": "x_same", "expect": "better"},
        {"claim": "never trained helps", "config": "x_ghost", "expect": "better"},
    ])
    out = tmp_path / "CLAIMS.md"
    assert main(["--records", str(tmp_path / "records"), "--spec", str(spec), "--out", str(out),
                 "--n_boot", "2000"]) == 0
    # the summary line counts claim rows (6 claims x 2 test-set tables), not the header's "supported"
    counts = "2 supported, 2 contradicted, 1 not shown at this budget, 7 not run"
    assert capsys.readouterr().out == f"claims: {out}: {counts}\n"
    text = out.read_text(encoding="utf-8")
    assert f"--spec {spec} --out {out} --n_boot 2000 --seed 0" in text
    rows = table_rows(text, "### test_connected (first pass)")
    assert rows["positions help (seed 02)"][-2:] == [WORSE, SUPPORTED]
    assert rows["none is better"][-2:] == [WORSE, CONTRADICTED]
    assert rows["good helps"][-2:] == [BETTER, SUPPORTED]
    assert rows["the default beats good"][-2:] == [BETTER, CONTRADICTED]
    assert rows["same helps"][-2:] == [NO_DIFFERENCE, NOT_SHOWN]
    assert "never trained helps" not in rows and len(rows) == 5  # a claim that never ran: listed once, below
    assert rows["good helps"][3] == "5x1 vs 5x1"
    assert "## Not run yet (1 of 6 claims)" in text
    assert "- never trained helps: `x_ghost` vs `train_asr_echo`" in text
    # No test_isolated records: the table says so instead of six empty rows.
    assert table_rows(text, "### test_isolated (first pass)") == {}
    assert "### test_isolated (first pass)\n\nNo claim has records for this test set yet." in text
    # The summary: a row per claim that ran, each test set's effect and verdict.
    summary = table_rows(text, "## Summary (first pass)")
    assert set(summary) == set(rows)
    assert summary["good helps"][4].endswith("5x1 vs 5x1: **supported**") and summary["good helps"][5] == "-"
    assert summary["same helps"][4].endswith(f"**{NOT_SHOWN}**")
    assert summary["good helps"][2:4] == ["? vs ?", "? vs ?"]  # these records carry no parameter counts or CPU
    assert "Speaker-adaptive" not in text
    assert "## Baseline spread: `train_asr_echo` (first pass)" in text


def test_the_summary_gives_each_side_s_trained_parameters_and_cpu_per_epoch(tmp_path):
    write_records(tmp_path / "records", {BASE: baseline_errors, "x_good": low_errors})
    path = tmp_path / "records" / "runs.jsonl"
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    for i, r in enumerate(records):
        r["params"] = 3_510_602 if r["config_name"] == BASE else 3_715_331
        # the baseline: 600 or 720 CPU seconds over 6 epochs (100 or 120 a epoch, 108 on average over its five
        # runs); the config: 900 over 6 epochs on four runs, one run unmeasured (left out, not counted as 0)
        r["epochs"] = 6
        r["train_cpu_seconds"] = (720.0 if i % 2 else 600.0) if r["config_name"] == BASE else (900.0 if i % 5 else None)
    records.append({**records[0], "test_set": "test_isolated"})  # a second record of a run counts once
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")
    spec = write_spec(tmp_path / "claims.yaml", [{"claim": "good helps", "config": "x_good", "expect": "better"}])
    out = tmp_path / "CLAIMS.md"
    assert main(["--records", str(tmp_path / "records"), "--spec", str(spec), "--out", str(out),
                 "--n_boot", "200"]) == 0
    row = table_rows(out.read_text(encoding="utf-8"), "## Summary (first pass)")["good helps"]
    assert row[2:4] == ["3.72 vs 3.51", "150 vs 108"]


def test_holm_family_is_the_claims_that_ran(tmp_path):
    write_records(tmp_path / "records", {BASE: baseline_errors, "x_none": high_errors, "x_same": same_errors})
    runs = average_seeds(load_records(tmp_path / "records"))
    claims = [Claim("a", "x_none", BASE, WORSE, ""), Claim("b", "x_ghost", BASE, BETTER, ""),
              Claim("c", "x_same", BASE, BETTER, "")]
    rows = evaluate(runs, claims, "first", "test_connected", n_boot=2000)
    raw = [rows[0].pairing.comparison.p_value, rows[2].pairing.comparison.p_value]
    assert [rows[0].adjusted_p, rows[2].adjusted_p] == holm(raw)
    assert rows[1].adjusted_p is None and rows[1].supported == NOT_RUN


def test_spkadapt_section_tuned_footnote_and_date(tmp_path):
    records = tmp_path / "records"
    write_records(records, {BASE: baseline_errors, "x_good": low_errors}, tuned_on=True, date="2026-01-02T10:00:00")
    extra = [record(c, s, e, pass_="spkadapt", date="2026-01-05T08:00:00")
             for c, e in ((BASE, baseline_errors), ("x_good", low_errors)) for s in SPEAKERS]
    (records / "adapt.jsonl").write_text("".join(json.dumps(r) + "\n" for r in extra), encoding="utf-8")
    spec = write_spec(tmp_path / "claims.yaml", [{"claim": "good helps", "config": "x_good", "expect": "better"}])
    out = tmp_path / "CLAIMS.md"
    assert main(["--records", str(records), "--spec", str(spec), "--out", str(out), "--n_boot", "500"]) == 0
    text = out.read_text(encoding="utf-8")
    assert "newest record: 2026-01-05T08:00:00." in text
    assert table_rows(text, "### test_connected (first pass)")["good helps"][3] == "5x1 vs 5x1 *"
    assert "(`fold.tuned_on`): test-george, test-jackson, test-lucas, test-nicolas, test-theo;" in text
    assert "## Speaker-adaptive second pass" in text
    assert table_rows(text, "### test_connected (spkadapt pass)")["good helps"][3] == "5x1 vs 5x1"
    # Same inputs, same bytes.
    first = text
    assert main(["--records", str(records), "--spec", str(spec), "--out", str(out), "--n_boot", "500"]) == 0
    assert out.read_text(encoding="utf-8") == first


@pytest.mark.parametrize("items, message", [
    ([{"claim": "c", "config": "x", "expect": "helps"}], "expect must be 'better' or 'worse'"),
    ([{"claim": "c", "config": "x"}], "'expect' must be a non-empty string"),
    ([{"claim": "c", "config": "x", "expect": "better", "baseline_": "y"}], "unknown key"),
    ([{"claim": "c", "config": "x", "expect": "better", "baseline": "x"}], "config and baseline are both x"),
    ({"claim": "c"}, "expected a non-empty list"),
])
def test_bad_spec_is_one_line_error(tmp_path, capsys, items, message):
    write_records(tmp_path / "records", {BASE: baseline_errors})
    spec = write_spec(tmp_path / "claims.yaml", items)
    with pytest.raises(SpecError, match=message):
        load_spec(spec)
    assert main(["--records", str(tmp_path / "records"), "--spec", str(spec)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"claims: error: {spec}") and err.count("\n") == 1


def test_bad_record_line_is_exit_2(tmp_path, capsys):
    (tmp_path / "records").mkdir()
    (tmp_path / "records" / "r.jsonl").write_text("{}\n", encoding="utf-8")
    spec = write_spec(tmp_path / "claims.yaml", [{"claim": "c", "config": "x", "expect": "better"}])
    assert main(["--records", str(tmp_path / "records"), "--spec", str(spec)]) == 2
    path = tmp_path / "records" / "r.jsonl"
    assert capsys.readouterr().err == f"claims: error: {path}:1: missing field 'config_name'\n"


# ---------------------------------------------------------------- the FSDD spec


def test_fsdd_spec_names_existing_configs():
    claims = load_spec(RECIPE / "conf" / "claims.yaml")
    tuning = {p.stem for p in (RECIPE / "conf" / "tuning").glob("*.yaml")}
    for c in claims:
        assert c.config in tuning, c
        assert c.baseline in tuning, c
    by_config = {}
    for c in claims:
        by_config.setdefault(c.config, []).append(c)
    # The claims of the design documents, each config compared at least once.
    expected = {f"train_asr_echo_{n}" for n in (
        "rope_none", "pitch_rope", "pitch_theta", "pitch_phase", "pitch_bias", "rope_learned", "rope_mel",
        "rope_givens", "rope_quaternion", "rope_quaternion12", "rope_axial", "soft_mask", "multifeature",
        "myelinated", "integrated", "adaptive", "curiosity", "maxfactor", "gates", "t_gate", "m_gate", "c_gate",
        "rms_norm", "tied", "se_conv", "dual",
        "pitch_doc", "additive_gate", "curiosity_features",  # seed 04 as written, beside our readings
        "whisper_frontend",  # a pretrained front end
    )} | {"train_asr_conformer", "train_asr_e_branchformer", "train_asr_transformer",
          "train_asr_e_branchformer_whisper_frontend",  # ESPnet's models on the default's front end
          "train_asr_conformer_whisper_frontend"}
    on_default = {p.stem for p in (RECIPE / "conf" / "tuning").glob("train_asr_echo_whisper_frontend_*.yaml")}
    wide = "train_asr_echo_whisper_frontend_single_wide"  # a baseline only (of the dual decoder), as on the base
    assert on_default and set(by_config) == expected | (on_default - {wide})  # each mechanism on the default
    assert {c.baseline for c in claims if c.config in on_default} == {"train_asr_echo_whisper_frontend", wide}
    # Direction: "rotary helps" and "Echo beats ESPnet's X" hold when the compared config is worse.
    worse = {c.config for c in claims if c.expect == WORSE}
    assert worse == {"train_asr_echo_rope_none", "train_asr_conformer", "train_asr_e_branchformer",
                     "train_asr_transformer", "train_asr_e_branchformer_whisper_frontend",
                     "train_asr_conformer_whisper_frontend", "train_asr_echo_whisper_frontend_rope_none"}
    for espnet_model in ("train_asr_e_branchformer_whisper_frontend", "train_asr_conformer_whisper_frontend"):
        [on_frontend] = by_config[espnet_model]
        assert on_frontend.baseline == "train_asr_echo_whisper_frontend"
    assert sorted(c.baseline for c in by_config["train_asr_echo_dual"]) == [BASE, "train_asr_echo_single_wide"]
    assert all(c.source for c in claims)


def test_noise_spec_names_the_experiment_s_configs_and_snr_sets():
    """conf/claims_noise.yaml pairs the three fine-tuned decoders and the zero-shot row, and its command line
    names the SNR sets the configs decode (asr.sh --snr_test_sets over the two test sets)."""
    import yaml

    from echo_plugin.recipe.snr_sets import band_name

    conf = RECIPE / "conf"
    claims = load_spec(conf / "claims_noise.yaml")
    names = {c.config for c in claims} | {c.baseline for c in claims}
    assert names == {"train_asr_whisper_single", "train_asr_whisper_dual", "train_asr_whisper_single_wide",
                     "whisper_base_zero_shot"}
    assert all((conf / "tuning" / f"{n}.yaml").exists() or (conf / f"{n}.yaml").exists() for n in names)
    assert {(c.config, c.baseline) for c in claims if c.expect == BETTER} == {
        ("train_asr_whisper_dual", "train_asr_whisper_single"),
        ("train_asr_whisper_dual", "train_asr_whisper_single_wide"),
        ("train_asr_whisper_single", "whisper_base_zero_shot")}
    bands = yaml.safe_load((conf / "tuning" / "train_asr_whisper_single.yaml").read_text())["recipe"]["snr_test_sets"]
    sets = [band_name(t, b) for t in ("test_connected", "test_isolated") for b in bands.split()]
    command = " ".join(line.lstrip("# ").rstrip(" \\") for line in
                       (conf / "claims_noise.yaml").read_text().splitlines()[:5])
    assert f"--test_sets {' '.join(sets)}" in " ".join(command.split())


def test_cpu_per_epoch_of_different_setups_is_not_compared():
    one, gpu = "cpu, 1 thread, 1 process", "cuda, 1 thread, 1 process"

    def run(name, fold, seconds, setup):
        return {"config_name": name, "fold": {"name": fold}, "seed": 0, "epochs": 6,
                "train_cpu_seconds": seconds, "train_cpu_setup": setup}

    cpu = cpu_per_epoch([run("a", "f1", 600.0, one), run("a", "f2", 720.0, one), run("b", "f1", 60.0, gpu),
                         run("c", "f1", 600.0, one), run("c", "f2", 60.0, gpu)])
    assert cpu == {"a": (110.0, one), "b": (10.0, gpu), "c": (None, "mixed")}
    assert fmt_cpu(cpu, "a", "x") == "110 vs ?"
    assert fmt_cpu(cpu, "b", "a") == "10 vs 110 (different setups)"
    assert fmt_cpu(cpu, "c", "a") == "mixed vs 110 (different setups)"
