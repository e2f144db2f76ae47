"""bench/whisper_zero_shot_folds.py without weights: two fake folds, a fake transcriber, fake run records.

Checks the recipe's scoring of Whisper-style text (known edits), the per-speaker and pooled WER, the paired
difference against records (identical systems: 0 with an interval of 0; a perfect default: minus the zero-shot
WER), that ``--from_tsv`` re-renders the same report, and one-line errors.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from bench import whisper_zero_shot_folds as zsf

# fold -> test set -> [(utt id, reference, what the fake Whisper writes, expected S+D+I, reference words)]
FAKE = {
    "test-aa": {
        "test_connected": [("aa-conn-0", "ONE TWO THREE", "1, 2, 3.", 0, 3),
                           ("aa-conn-1", "FOUR FIVE", "4 5 6", 1, 2),             # one insertion
                           ("aa-conn-2", "SIX SEVEN EIGHT NINE", "6, 7, 9.", 1, 4)],  # one deletion
        "test_isolated": [("aa-iso-0", "ZERO", "Zero.", 0, 1), ("aa-iso-1", "ONE", "One", 0, 1),
                          ("aa-iso-2", "TWO", "Too.", 1, 1), ("aa-iso-3", "ZERO", "See you.", 2, 1)],
    },
    "test-bb": {
        "test_connected": [("bb-conn-0", "NINE NINE", "99", 0, 2), ("bb-conn-1", "THREE FOUR", "", 2, 2),
                           ("bb-conn-2", "ONE TWO", "1, 2" + ", 2" * 22, 22, 2)],  # runs on: 22 insertions
        "test_isolated": [("bb-iso-0", "EIGHT", "8.", 0, 1), ("bb-iso-1", "FIVE", "Five!", 0, 1)],
    },
}


def all_utts():
    return [(fold, test_set, *u) for fold, sets in FAKE.items() for test_set, utts in sets.items() for u in utts]


def make_folds(root: Path) -> dict[int, str]:
    """Kaldi data dirs of 8 kHz WAVs; clip k has 80 (k + 1) samples, so its 16 kHz length names its utterance."""
    by_length = {}
    for k, (fold, test_set, utt, ref, hyp, _e, _n) in enumerate(all_utts()):
        data = root / fold / "data" / test_set
        data.mkdir(parents=True, exist_ok=True)
        wav = data / f"{utt}.wav"
        sf.write(wav, np.zeros(80 * (k + 1), dtype=np.float32), 8000)
        for name, value in (("wav.scp", wav), ("text", ref), ("utt2spk", fold.removeprefix("test-"))):
            with open(data / name, "a") as f:
                f.write(f"{utt} {value}\n")
        by_length[160 * (k + 1)] = hyp
    return by_length


def fake_transcriber(by_length: dict[int, str]):
    def make(compute_type: str, threads: int):
        assert (compute_type, threads) == ("int8", 1)
        return (lambda audios: {"texts": [by_length[a.size] for a in audios], "clip_s": [0.5] * len(audios)}), 0.25
    return make


def write_records(records: Path, config: str, seeds: list[int], errors_of, tuned: set[str] = frozenset()) -> None:
    """One record per (seed, fold, test set); utterance errors as substitutions."""
    records.mkdir(exist_ok=True)
    lines = []
    for seed in seeds:
        for fold, sets in FAKE.items():
            for test_set, utts in sets.items():
                rows = [[u, fold.removeprefix("test-"), n, errors_of(e), 0, 0] for u, _r, _h, e, n in utts]
                lines.append(json.dumps({
                    "config_name": config, "seed": seed, "test_set": test_set,
                    "fold": {"name": fold, "tuned_on": fold in tuned},
                    "decode": {"dir": "decode_x", "pass": "first"}, "utts": rows}))
    (records / f"{config}.jsonl").write_text("\n".join(lines) + "\n")


@pytest.fixture
def setup(tmp_path):
    by_length = make_folds(tmp_path / "folds")
    write_records(tmp_path / "records", "same", [0, 1], lambda e: e)          # errors identical to the zero-shot
    write_records(tmp_path / "records", "perfect", [0], lambda e: 0, {"test-aa"})
    return tmp_path, fake_transcriber(by_length)


def run(tmp_path, make, config, *extra):
    argv = ["--folds_root", str(tmp_path / "folds"), "--records", str(tmp_path / "records"), "--config", config,
            "--compute_type", "int8", "--threads", "1", "--out", str(tmp_path / "report.md"), "--n_boot", "2000",
            *extra]
    assert zsf.main(argv, make) == 0
    return (tmp_path / "report.md").read_text()


def table_row(report: str, first_cell: str) -> list[str]:
    line = next(line for line in report.splitlines() if line.startswith(f"| {first_cell}"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_score_utts_counts_the_recipes_word_edits():
    refs = ["ONE TWO THREE", "FOUR FIVE", "SIX SEVEN EIGHT NINE", "ZERO", "TWO", "NINE NINE"]
    hyps = ["1, 2, 3.", "4 5 6", "6, 7, 9.", "See you.", "Too.", "99"]
    got = zsf.score_utts([f"u{i}" for i in range(6)], refs, hyps, Path("text"))
    assert got == [(0, 3), (1, 2), (1, 4), (2, 1), (1, 1), (0, 2)]


def test_identical_systems_differ_by_zero_and_tsv_rerenders_the_same_report(setup):
    tmp_path, make = setup
    report = run(tmp_path, make, "same")
    meta, rows = zsf.read_tsv(tmp_path / "report.tsv")
    assert [(r.fold, r.test_set, r.utt_id, r.ref, r.hyp, r.errors, r.ref_words) for r in rows] == [
        (f, t, u, ref, " ".join(hyp.split()), e, n) for f, t, u, ref, hyp, e, n in all_utts()]
    assert meta["compute_type"] == "int8" and float(meta["load_s"]) == 0.25
    # connected: aa 2 / 9, bb 24 / 6, pooled 26 / 15; isolated: aa 3 / 4, bb 0 / 2, pooled 3 / 6
    aa, bb, pooled = (table_row(report, c) for c in ("test-aa (aa)", "test-bb (bb)", "**pooled**"))
    assert [c.split()[0] for c in aa[1:]] == ["22.22", "22.22", "75.00", "75.00"]
    assert [c.split()[0] for c in bb[1:]] == ["400.00", "400.00", "0.00", "0.00"]
    assert [c.split()[0] for c in pooled[1:]] == ["173.33", "173.33", "50.00", "50.00"]
    low, high = map(float, re.findall(r"[\d.]+", pooled[1])[1:])
    assert low < 173.33 < high                                  # the two-level interval has width
    assert ("test_connected: 1 of 6 hypotheses run on (20 or more inserted words; e.g. bb-conn-2, ONE TWO -> "
            f"\"{('1, 2' + ', 2' * 22)[:60]}...\"); they hold 22 of the 26 errors. WER over the other 5 utterances: "
            "30.77%.") in report
    for test_set, wer in (("test_connected", "173.33"), ("test_isolated", "50.00")):
        row = table_row(report, test_set)
        assert row[1:5] == ["2", str(len(FAKE["test-aa"][test_set]) + len(FAKE["test-bb"][test_set])), wer, wer]
        assert row[5] == "+0.00 [+0.00, +0.00]" and row[7] == "1.000"
    assert "RTF" in report and "0.50 s" in report              # fake 0.5 s per clip
    assert 'ZERO -> "See you." (1)' in report

    again = zsf.main(["--from_tsv", str(tmp_path / "report.tsv"), "--records", str(tmp_path / "records"),
                      "--config", "same", "--out", str(tmp_path / "again.md"), "--n_boot", "2000"])
    assert again == 0 and (tmp_path / "again.md").read_text() == report


def test_a_perfect_default_is_better_by_the_zero_shot_wer(setup):
    tmp_path, make = setup
    report = run(tmp_path, make, "perfect", "--speakers", "aa", "bb")
    row = table_row(report, "test_connected")
    assert row[3:5] == ["0.00", "173.33"] and row[5].startswith("-173.33 [")
    assert row[6].startswith("-100.0%")
    assert "test-aa (aa) *" in report and "tuned on these folds" in report


def test_max_utts_and_speakers_select_and_leave_the_rest_unpaired(setup):
    tmp_path, make = setup
    report = run(tmp_path, make, "same", "--speakers", "bb", "--max_utts", "1")
    _meta, rows = zsf.read_tsv(tmp_path / "report.tsv")
    assert [r.utt_id for r in rows] == ["bb-conn-0", "bb-iso-0"]
    assert "test_connected: 2 utterances decoded by only one of the two" in report


def test_bad_input_is_one_line_naming_the_file(setup, capsys):
    tmp_path, make = setup
    bad = tmp_path / "bad.tsv"
    bad.write_text("\t".join(zsf.COLUMNS) + "\nf\ts\tt\tu\tONE\tone\tx\t1\t0.5\t0.5\n")
    assert zsf.main(["--from_tsv", str(bad), "--records", str(tmp_path / "records"), "--config", "same",
                     "--out", str(tmp_path / "x.md")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{bad}:2:" in err
    (tmp_path / "folds" / "test-aa" / "data" / "test_isolated" / "text").unlink()
    assert zsf.main(["--folds_root", str(tmp_path / "folds"), "--records", str(tmp_path / "records"),
                     "--config", "same", "--out", str(tmp_path / "x.md")], make) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "test_isolated/text" in err
