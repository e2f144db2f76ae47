"""RESULTS.md's WER-by-SNR-band table, from run records of SNR-stratified test sets."""
from __future__ import annotations

from pathlib import Path

from echo_plugin.recipe import results
from echo_plugin.recipe.snr_sets import band_name
from echo_plugin.recipe.snr_table import band_order, snr_section, split_band
from test.recipe.records_fixture import make_recipe, train_and_score

REFS = {"lucas-1": "ONE TWO THREE", "lucas-2": "FOUR FIVE"}


def test_split_band_inverts_the_snr_set_names() -> None:
    for band in ("clean", "20", "0", "-5", "7.5"):
        assert split_band(band_name("test_connected", band)) == ("test_connected", band)
    assert split_band("test_connected") is None
    assert split_band("test_snrx") is None
    assert band_order(["0", "clean", "20", "-5", "10"]) == ["clean", "20", "10", "0", "-5"]


def test_results_pivot_the_bands_of_each_experiment(tmp_path: Path) -> None:
    root = make_recipe(tmp_path / "egs" / "fsdd" / "asr1")
    for band, hyps in (("clean", REFS), ("snr20", {"lucas-1": "ONE TWO", "lucas-2": "FOUR FIVE"}),
                       ("snr0", {"lucas-1": "ONE TOO THREE SIX", "lucas-2": "FOUR"})):
        train_and_score(root, "asr_noisy", "conf/tuning/train_a.yaml", hyps, REFS, test_set=f"test_{band}",
                        name="noisy", speaker_suffix=False)
    train_and_score(root, "asr_plain", "conf/tuning/train_a.yaml", {"lucas-1": "ONE TWO THREE", "lucas-2": "FIVE"},
                    REFS, test_set="test_snr10", name="plain", speaker_suffix=False)
    # a second fold of "noisy" (test speaker nicolas), clean and 0 dB only: pooled with the first, never
    # in place of it
    nic = {"nicolas-1": "SIX SEVEN", "nicolas-2": "EIGHT"}
    for band, hyps in (("clean", {"nicolas-1": "SIX", "nicolas-2": "EIGHT"}), ("snr0", nic)):
        train_and_score(root, "asr_noisy_nic", "conf/tuning/train_a.yaml", hyps, nic, test="nicolas",
                        test_set=f"test_{band}", name="noisy", speaker_suffix=False)
    assert results.main(["--recipe_dir", str(root)]) == 0
    lines = (root / "RESULTS.md").read_text().splitlines()
    start = lines.index("## WER by SNR band")
    assert lines.index("## Summary") < start < lines.index("## Runs")
    table = lines[start + 4 : lines.index("", start + 4)]
    assert table[0] == "|experiment|decode|test set|folds x seeds|clean|20 dB|10 dB|0 dB|"
    assert table[2:] == [
        "|noisy|decode_a|test|1x1|-|20.00 (0/1/0)|-|-|",
        # clean: 0 errors of 5 words (lucas) + 1 of 3 (nicolas); 0 dB: 3 of 5 + 0 of 3
        "|noisy|decode_a|test|2x1|12.50 (0/1/0)|-|-|37.50 (1/1/1)|",
        "|plain|decode_a|test|1x1|-|-|20.00 (0/1/0)|-|",
    ]


def test_no_section_without_snr_sets() -> None:
    assert snr_section([("x", "decode_a", "test_isolated", "1x1", "1.00 (1/0/0)")]) == []
