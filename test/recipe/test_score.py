"""score on hand-computable cases."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from echo_plugin.recipe import score


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


def run(tmp_path: Path, refs: list[str], hyps: list[str], *extra: str) -> tuple[int, dict | None]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    ref = write_lines(tmp_path / "ref", refs)
    hyp = write_lines(tmp_path / "hyp", hyps)
    out = tmp_path / "score"
    rc = score.main(["--ref", str(ref), "--hyp", str(hyp), "--out_dir", str(out), *extra])
    scores = json.loads((out / "scores.json").read_text()) if (out / "scores.json").exists() else None
    return rc, scores


def test_one_substitution_one_deletion(tmp_path: Path):
    rc, s = run(tmp_path, ["u1 ONE TWO THREE"], ["u1 ONE TOO"])
    assert rc == 0
    assert s["wer"] == {
        "n_sentences": 1, "n_tokens": 3, "correct": 1, "substitutions": 1, "deletions": 1,
        "insertions": 0, "error_rate": 66.67, "sentence_error_rate": 100.0,
    }
    # characters: O N E <space> T W O <space> T H R E E against O N E <space> T O O
    cer = s["cer"]
    assert (cer["n_tokens"], cer["correct"], cer["substitutions"], cer["deletions"]) == (13, 6, 1, 6)
    assert s["cer"]["error_rate"] == 53.85
    assert s["rtf"] is None and s["missing_hypotheses"] == []


def test_insertions_and_sentence_error_rate(tmp_path: Path):
    rc, s = run(tmp_path, ["b A B", "a FIVE", "c SIX SIX"], ["a FIVE", "b A X B C", "c SIX  SIX "])
    assert rc == 0
    w = s["wer"]
    assert (w["n_sentences"], w["n_tokens"], w["insertions"], w["error_rate"]) == (3, 5, 2, 40.0)
    assert w["sentence_error_rate"] == 33.33


def test_space_is_a_character_token(tmp_path: Path):
    rc, s = run(tmp_path, ["u AB CD"], ["u ABCD"])
    assert rc == 0
    assert (s["cer"]["n_tokens"], s["cer"]["deletions"], s["cer"]["error_rate"]) == (5, 1, 20.0)
    assert (s["wer"]["substitutions"], s["wer"]["deletions"]) == (1, 1)


def test_missing_hypothesis_counts_as_deletions(tmp_path: Path, capsys: pytest.CaptureFixture):
    rc, s = run(tmp_path, ["u1 ONE", "u2 TWO THREE", "u3 FOUR"], ["u1 ONE", "u3 FOUR"])
    assert rc == 0
    assert "warning" in capsys.readouterr().err and s["missing_hypotheses"] == ["u2"]
    assert (s["wer"]["deletions"], s["wer"]["error_rate"]) == (2, 50.0)
    assert "u2" in (tmp_path / "score" / "result.txt").read_text()


def test_empty_hypothesis_line_is_an_empty_hypothesis(tmp_path: Path, capsys: pytest.CaptureFixture):
    rc, s = run(tmp_path, ["u1 ONE TWO"], ["u1"])
    assert rc == 0 and s["wer"]["deletions"] == 2 and s["missing_hypotheses"] == []
    assert capsys.readouterr().err == ""


def test_unknown_hypothesis_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture):
    rc, s = run(tmp_path, ["u1 ONE"], ["u1 ONE", "zz NINE"])
    assert rc == 1 and s is None
    assert f"{tmp_path / 'hyp'}: utterance 'zz'" in capsys.readouterr().err


def test_duplicate_hypothesis_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture):
    rc, s = run(tmp_path, ["u1 ONE"], ["u1 ONE", "u1 TWO"])
    assert rc == 1 and s is None
    assert "duplicate utterance id 'u1'" in capsys.readouterr().err


def test_rtf_from_summed_decode_seconds(tmp_path: Path):
    seconds = write_lines(tmp_path / "decode_seconds", ["1.5", "0.5"])
    utt2dur = write_lines(tmp_path / "utt2dur", ["u1 1.000", "u2 3.000", "other 9.0"])
    rc, s = run(tmp_path, ["u1 ONE", "u2 TWO"], ["u1 ONE", "u2 TWO"],
                "--decode_seconds", str(seconds), "--utt2dur", str(utt2dur))
    assert rc == 0
    assert (s["rtf"], s["decode_seconds"], s["audio_seconds"]) == (0.5, 2.0, 4.0)


def test_rtf_needs_every_duration(tmp_path: Path, capsys: pytest.CaptureFixture):
    seconds = write_lines(tmp_path / "decode_seconds", ["1.5"])
    utt2dur = write_lines(tmp_path / "utt2dur", ["u1 1.000"])
    rc, _ = run(tmp_path, ["u1 ONE", "u2 TWO"], ["u1 ONE", "u2 TWO"],
                "--decode_seconds", str(seconds), "--utt2dur", str(utt2dur))
    assert rc == 1 and "utterance 'u2': no duration" in capsys.readouterr().err


def test_result_txt_aligns_only_wrong_utterances(tmp_path: Path):
    rc, _ = run(tmp_path, ["good ONE", "bad ONE TWO THREE"], ["good ONE", "bad ONE TOO"])
    assert rc == 0
    report = (tmp_path / "score" / "result.txt").read_text()
    assert "id: good" not in report
    lines = report.splitlines()
    at = lines.index("id: bad")
    assert lines[at + 1 : at + 4] == ["REF:  ONE TWO THREE", "HYP:  ONE TOO ***", "EVAL:     S   D"]
    assert "|WER|2|4|50.0|25.0|25.0|0.0|50.0|50.0|" in lines


def test_cli(tmp_path: Path):
    ref = write_lines(tmp_path / "ref", ["u1 ONE TWO THREE"])
    (tmp_path / "test").mkdir()
    hyp = write_lines(tmp_path / "test" / "text", ["u1 ONE TOO"])
    proc = subprocess.run(
        [sys.executable, "-m", "echo_plugin.recipe.score", "--ref", str(ref), "--hyp", str(hyp),
         "--out_dir", str(tmp_path / "out")],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "|test WER|1|3|33.3|33.3|33.3|0.0|66.7|100.0|" in proc.stdout
    assert json.loads((tmp_path / "out" / "scores.json").read_text())["wer"]["error_rate"] == 66.67


def test_per_utterance_errors_add_up_to_the_totals(tmp_path: Path):
    rc, s = run(tmp_path, ["b A B", "a FIVE", "c SIX SIX", "d ONE TWO THREE"],
                ["a FIVE", "b A X B C", "c SIX", "d ONE TOO"])
    assert rc == 0
    assert s["utterances"] == [["a", 1, 0, 0, 0], ["b", 2, 0, 0, 2], ["c", 2, 0, 1, 0], ["d", 3, 1, 1, 0]]
    w = s["wer"]
    totals = [sum(u[k] for u in s["utterances"]) for k in (1, 2, 3, 4)]
    assert totals == [w["n_tokens"], w["substitutions"], w["deletions"], w["insertions"]]


def test_whisper_normalizer_makes_digits_and_words_agree(tmp_path: Path):
    pytest.importorskip("whisper", reason="openai-whisper: pip install openai-whisper")
    refs = ["a FIVE", "b ONE", "c ZERO", "d EIGHT", "e NINE"]
    hyps = ["a 5.", "b 1.", "c Oh.", "d Eight!", "e Nein."]  # Whisper-style: digits, case, punctuation
    rc, plain = run(tmp_path / "plain", refs, hyps)
    assert rc == 0 and plain["normalizer"] == "none" and plain["wer"]["error_rate"] == 100.0
    rc, s = run(tmp_path / "whisper", refs, hyps, "--normalizer", "whisper")
    assert rc == 0 and s["normalizer"] == "whisper"
    assert (s["wer"]["n_tokens"], s["wer"]["correct"], s["wer"]["substitutions"]) == (5, 4, 1)  # only Nein
    assert "normalizer: whisper" in (tmp_path / "whisper" / "score" / "result.txt").read_text()


def test_whisper_digits_scores_digit_strings_per_digit(tmp_path: Path):
    pytest.importorskip("whisper", reason="openai-whisper: pip install openai-whisper")
    refs = ["a ONE TWO THREE", "b FOUR FIVE", "c SEVEN"]
    hyps = ["a 1, 2, 3.", "b 45", "c 7 1"]
    rc, s = run(tmp_path / "whisper", refs, hyps, "--normalizer", "whisper")
    assert rc == 0  # Whisper's normaliser: "123" vs "one 2 3", "45" vs "45", "7" vs "7 one"
    assert (s["wer"]["n_tokens"], s["wer"]["correct"]) == (3, 2)
    rc, s = run(tmp_path / "digits", refs, hyps, "--normalizer", "whisper_digits")
    assert rc == 0 and s["utterances"] == [["a", 3, 0, 0, 0], ["b", 2, 0, 0, 0], ["c", 1, 0, 0, 1]]
    assert (s["wer"]["n_tokens"], s["wer"]["correct"], s["wer"]["insertions"]) == (6, 6, 1)


def test_whisper_digits_keeps_leading_zeros_decimals_and_bracketed_digits(tmp_path: Path):
    """Whisper's number normaliser alone reads "007" as 7, "2.0" as 2 and deletes "(555)"; spelled
    first, each written digit is one spoken digit, as the references have them."""
    pytest.importorskip("whisper", reason="openai-whisper: pip install openai-whisper")
    refs = ["a ZERO ZERO SEVEN", "b ZERO FIVE", "c TWO ZERO", "d FIVE FIVE FIVE ONE TWO", "e OH FIVE"]
    hyps = ["a 007", "b 0,5", "c 2.0", "d (555) 12", "e Oh, five."]
    rc, s = run(tmp_path, refs, hyps, "--normalizer", "whisper_digits")
    assert rc == 0 and s["utterances"] == [["a", 3, 0, 0, 0], ["b", 2, 0, 0, 0], ["c", 2, 0, 0, 0],
                                           ["d", 5, 0, 0, 0], ["e", 2, 0, 0, 0]]


def test_a_reference_the_normalizer_empties_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture):
    pytest.importorskip("whisper", reason="openai-whisper: pip install openai-whisper")
    rc, s = run(tmp_path, ["a FIVE", "b UH"], ["a 5", "b 5"], "--normalizer", "whisper")
    assert rc == 1 and s is None
    assert "utterance 'b': reference 'UH' is empty after the whisper normalizer" in capsys.readouterr().err


def test_spell_digits():
    from echo_plugin.text.whisper_normalize import spell_digits

    assert spell_digits("12 apples 0 x9 ٣") == "one two apples zero x9 ٣"


def test_spell_numerals_spells_ascii_digits_only():
    from echo_plugin.text.whisper_normalize import spell_numerals

    assert " ".join(spell_numerals("(20) 07, x9 ٣").split()) == "two zero zero seven , x nine ٣"
