"""RESULTS.md rendered from run records: pooled rows, runs, stale rows, several recipes, atomic output."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from echo_plugin.recipe import results
from test.recipe.records_fixture import make_recipe, train_and_score, write

REFS = {"lucas-1": "ONE TWO THREE", "lucas-2": "FOUR FIVE"}
NIC = {"nicolas-1": "SIX SEVEN", "nicolas-2": "EIGHT"}


def table(text: str, title: str) -> list[str]:
    lines = text.splitlines() + [""]
    start = lines.index(title) + 2
    return lines[start : lines.index("", start)]


def deployed_table(text: str) -> list[str]:
    """The deployed-against-recipe table: after its title, a blank line, its paragraph and a blank line."""
    lines = text.splitlines() + [""]
    start = lines.index("## Deployed model against the recipe's decode") + 4
    return lines[start : lines.index("", start)]


def cell(row: list[str], column: str) -> str:
    """The summary row's (split on "|") cell of ``column``."""
    return row[1 + results.SUMMARY_COLUMNS.index(column)]


@pytest.fixture
def recipe(tmp_path: Path) -> Path:
    """Two folds x two seeds of train_a, one run of the overlay train_b."""
    root = make_recipe(tmp_path / "egs" / "fsdd" / "asr1")
    train_and_score(root, "asr_a_s0", "conf/tuning/train_a.yaml", {"lucas-1": "ONE TOO", "lucas-2": "FOUR FIVE"},
                    REFS, name="train_a")                                                   # 2 errors / 5
    train_and_score(root, "asr_a_s1", "conf/tuning/train_a.yaml", REFS, REFS, seed=1, name="train_a")  # 0 / 5
    train_and_score(root, "asr_a_n0", "conf/tuning/train_a.yaml", {"nicolas-1": "SIX", "nicolas-2": "EIGHT"},
                    NIC, test="nicolas", name="train_a")                                    # 1 / 3
    train_and_score(root, "asr_a_n1", "conf/tuning/train_a.yaml", NIC, NIC, test="nicolas", seed=1, name="train_a")
    train_and_score(root, "asr_train_b", "conf/tuning/train_b.yaml", REFS, REFS)
    return root


def test_summary_pools_folds_and_seeds_with_cost_columns(recipe: Path, capsys: pytest.CaptureFixture) -> None:
    assert results.main(["--recipe_dir", str(recipe)]) == 0
    text = (recipe / "RESULTS.md").read_text()
    rows = table(text, "## Summary")
    assert rows[0] == "|" + "|".join(results.SUMMARY_COLUMNS) + "|"
    # the two folds are two test sets here (one per speaker), each pooled over its two seeds
    assert rows[2] == ("|train_a|conf/tuning/train_a.yaml|2.89|6|1x2|0:11:01|0:05:00|812|decode_a"
                       "|test_connected_lucas|20.00|-|0.00-40.00|1/1/0|" + cell(rows[2].split("|"), "CER %")
                       + "|0.2500|")  # one speaker: no CI
    assert rows[3].startswith("|train_a|conf/tuning/train_a.yaml|2.89|6|1x2|")
    assert "|16.67|-|0.00-33.33|0/1/0|" in rows[3]
    assert rows[4].startswith("|train_b|conf/tuning/train_b.yaml|")
    assert capsys.readouterr().out.splitlines()[0] == rows[0]
    runs = table(text, "## Runs")
    assert len(runs) == 2 + 5
    assert runs[2].startswith("|train_a|test-lucas|0|decode_a|test_connected_lucas|40.00|1/1/0|")
    assert any(r.startswith("|train_a|test-nicolas*|1|") for r in runs)  # the tuned-on fold is marked
    assert "Environment: date " in text and "torch 2.12.1" in text


def test_rows_of_a_changed_config_are_marked_stale(recipe: Path) -> None:
    assert results.main(["--recipe_dir", str(recipe)]) == 0
    assert "**stale**" not in table((recipe / "RESULTS.md").read_text(), "## Summary")[2]
    base = recipe / "conf/tuning/train_a.yaml"
    write(base, base.read_text().replace("output_size: 16", "output_size: 32"))  # the default moved on
    assert results.main(["--recipe_dir", str(recipe)]) == 0
    text = (recipe / "RESULTS.md").read_text()
    summary, runs = table(text, "## Summary"), table(text, "## Runs")
    # train_a changed, and train_b overlays it: every row is stale, visibly, in both tables
    assert all("|conf/tuning/train_a.yaml **stale**|" in r for r in summary[2:4])
    assert "|conf/tuning/train_b.yaml **stale**|" in summary[4]
    assert all(r.split("|")[1].endswith(" **stale**") for r in runs[2:])


def test_several_recipes_add_a_recipe_column_and_rewrite_each(recipe: Path, tmp_path: Path) -> None:
    other = make_recipe(tmp_path / "egs" / "librispeech_100" / "asr1")
    train_and_score(other, "asr_x", "conf/tuning/train_a.yaml", REFS, REFS, name="x")
    out = tmp_path / "RESULTS_ALL.md"
    assert results.main(["--recipe_dir", str(recipe), str(other), "--out", str(out)]) == 0
    rows = table(out.read_text(), "## Summary")
    assert rows[0].startswith("|recipe|experiment|")
    assert [r.split("|")[1] for r in rows[2:]] == ["fsdd/asr1"] * 3 + ["librispeech_100/asr1"]
    assert "|x|" not in (recipe / "RESULTS.md").read_text() and "|x|" in (other / "RESULTS.md").read_text()


def test_no_records_and_missing_recipe(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    empty = tmp_path / "egs" / "x" / "asr1"
    empty.mkdir(parents=True)
    assert results.main(["--recipe_dir", str(empty)]) == 0
    assert "No run records found." in (empty / "RESULTS.md").read_text()
    assert results.main(["--recipe_dir", str(tmp_path / "nope")]) == 1
    assert "recipe dir not found" in capsys.readouterr().err


def test_a_broken_record_is_a_one_line_error(recipe: Path, capsys: pytest.CaptureFixture) -> None:
    before = (recipe / "RESULTS.md").read_text() if (recipe / "RESULTS.md").exists() else None
    write(recipe / "records" / "broken.jsonl", "{oops\n")
    assert results.main(["--recipe_dir", str(recipe)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "broken.jsonl:1: not a run record" in err[0]
    assert ((recipe / "RESULTS.md").read_text() if (recipe / "RESULTS.md").exists() else None) == before


def test_cli_writes_atomically(recipe: Path) -> None:
    out = recipe / "RESULTS.md"
    proc = subprocess.run([sys.executable, "-m", "echo_plugin.recipe.results", "--recipe_dir", str(recipe)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert out.read_text().startswith("# Results\n\nGenerated by `python -m echo_plugin.recipe.results --recipe_dir ")
    assert not list(recipe.glob("*.tmp*"))


def test_a_change_the_overlay_overrides_leaves_it_fresh(recipe: Path) -> None:
    base = recipe / "conf/tuning/train_a.yaml"
    write(base, base.read_text().replace("num_blocks: 2", "num_blocks: 4"))  # train_b sets num_blocks itself
    assert results.main(["--recipe_dir", str(recipe)]) == 0
    summary = table((recipe / "RESULTS.md").read_text(), "## Summary")
    assert "**stale**" in summary[2] and "**stale**" not in summary[4]


def test_a_row_of_several_test_speakers_gets_its_interval(tmp_path: Path) -> None:
    """Two folds on one test set name (as the fold runner records them): the row pools both speakers and
    shows the two-level bootstrap's interval, which holds the pooled WER."""
    root = make_recipe(tmp_path / "egs" / "fsdd" / "asr1")
    train_and_score(root, "asr_a_l", "conf/tuning/train_a.yaml", {"lucas-1": "ONE TOO", "lucas-2": "FOUR FIVE"},
                    REFS, name="train_a", speaker_suffix=False)                               # 2 / 5
    train_and_score(root, "asr_a_n", "conf/tuning/train_a.yaml", {"nicolas-1": "SIX", "nicolas-2": "EIGHT"},
                    NIC, test="nicolas", name="train_a", speaker_suffix=False)                # 1 / 3
    assert results.main(["--recipe_dir", str(root)]) == 0
    row = table((root / "RESULTS.md").read_text(), "## Summary")[2].split("|")
    assert cell(row, "folds x seeds") == "2x1" and cell(row, "WER %") == "37.50"  # 3 errors / 8 words
    low, high = (float(x) for x in cell(row, "95% CI").split("-"))
    assert 0.0 <= low < 37.5 < high <= 100.0


def test_seeds_that_decoded_different_utterances_still_render(tmp_path: Path) -> None:
    """A seed rerun on changed data beside an old seed's record: the row is pooled, its interval 'n/a'."""
    root = make_recipe(tmp_path / "egs" / "fsdd" / "asr1")
    train_and_score(root, "asr_a_l", "conf/tuning/train_a.yaml", REFS, REFS, name="train_a", speaker_suffix=False)
    fewer = {"lucas-1": REFS["lucas-1"]}
    train_and_score(root, "asr_a_l1", "conf/tuning/train_a.yaml", fewer, fewer, seed=1, name="train_a",
                    speaker_suffix=False)
    train_and_score(root, "asr_a_n", "conf/tuning/train_a.yaml", NIC, NIC, test="nicolas", name="train_a",
                    speaker_suffix=False)
    assert results.main(["--recipe_dir", str(root)]) == 0
    row = table((root / "RESULTS.md").read_text(), "## Summary")[2].split("|")
    assert cell(row, "folds x seeds") == "2x2 (3 runs)" and cell(row, "95% CI") == "n/a"


def test_deployed_rows_sit_next_to_the_recipe_rows_with_their_ratio(recipe: Path) -> None:
    """The `_deployed` decode of a run against its first pass: pooled over the runs that have both, the ratio
    of the two WERs (1.00 for 0 against 0, inf for errors against 0); the second pass is left out."""
    train_and_score(recipe, "asr_a_s0", "conf/tuning/train_a.yaml", {"lucas-1": "ONE", "lucas-2": "FOUR FIVE SIX"},
                    REFS, name="train_a", decode_dir="decode_a_deployed")                  # 3 errors / 5
    train_and_score(recipe, "asr_a_n1", "conf/tuning/train_a.yaml", {"nicolas-1": "SIX SEVEN", "nicolas-2": "EIGHT X"},
                    NIC, test="nicolas", seed=1, name="train_a", decode_dir="decode_a_deployed")  # 1 / 3
    train_and_score(recipe, "asr_train_b", "conf/tuning/train_b.yaml", REFS, REFS, decode_dir="decode_a_deployed")
    train_and_score(recipe, "asr_a_s1", "conf/tuning/train_a.yaml", REFS, REFS, seed=1, name="train_a",
                    decode_dir="decode_a_spkadapt")                                           # not a deployed row
    assert results.main(["--recipe_dir", str(recipe)]) == 0
    rows = deployed_table((recipe / "RESULTS.md").read_text())
    assert rows[0] == "|" + "|".join(results.DEPLOYED_COLUMNS) + "|"
    assert rows[2:] == [
        # seed 0 alone is paired: its first pass 2/5 (seed 1's 0/5 is left out), deployed 3/5
        "|train_a|decode_a|test_connected_lucas|1 of 2|40.00 (2/5)|60.00 (3/5)|1.50|no|",
        # seed 1's first pass made no error, its deployed decode one: any error misses the target
        "|train_a|decode_a|test_connected_nicolas|1 of 2|0.00 (0/3)|33.33 (1/3)|inf|no|",
        "|train_b|decode_a|test_connected_lucas|1 of 1|0.00 (0/5)|0.00 (0/5)|1.00|yes|",
    ]


def test_a_config_without_a_deployed_decode_shows_dashes(recipe: Path) -> None:
    """No run decoded the packed model: the first pass pooled over all its runs, the deployed side a dash."""
    assert results.main(["--recipe_dir", str(recipe)]) == 0
    rows = deployed_table((recipe / "RESULTS.md").read_text())
    assert rows[2] == "|train_a|decode_a|test_connected_lucas|0 of 2|20.00 (2/10)|-|-|-|"
    assert len(rows) == 2 + 3


def test_the_ratio_divides_pooled_wers() -> None:
    def row(words: int, errors: int) -> results.Row:
        return results.Row("fsdd/asr1", {"utts": [["u", "s", words, errors, 0, 0]]}, False)

    assert results.wer_ratio([row(10, 3)], [row(10, 2)]) == pytest.approx(1.5)
    assert results.wer_ratio([row(10, 0)], [row(10, 0)]) == 1.0
    assert results.wer_ratio([row(10, 1)], [row(10, 0)]) == float("inf")
    assert results.wer_ratio([], [row(10, 2)]) is None


def test_cpu_time_is_pooled_within_one_setup_only() -> None:
    one, gpu = "cpu, 1 thread, 1 process", "cuda, 1 thread, 1 process"
    runs = [{"train_cpu_seconds": 600.0, "train_cpu_setup": one}, {"train_cpu_seconds": 720.0, "train_cpu_setup": one},
            {"train_cpu_seconds": None, "train_cpu_setup": None}, {}]  # unmeasured, and a record from before
    assert results.cpu_cell(runs) == "0:11:00"
    assert results.cpu_cell(runs + [{"train_cpu_seconds": 50.0, "train_cpu_setup": gpu}]) == "mixed setups"
    assert results.cpu_cell(runs[2:]) == "-"
