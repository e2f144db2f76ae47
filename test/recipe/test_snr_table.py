"""RESULTS.md's WER-by-SNR-band table, over a fake exp tree scored by echo_plugin.recipe.score."""
from __future__ import annotations

from pathlib import Path

from echo_plugin.recipe import results
from echo_plugin.recipe.snr_sets import band_name
from echo_plugin.recipe.snr_table import band_order, split_band
from test.recipe.test_results import scored, write

REFS = ["u1 ONE TWO THREE", "u2 FOUR FIVE"]


def test_split_band_inverts_the_snr_set_names() -> None:
    for band in ("clean", "20", "0", "-5", "7.5"):
        assert split_band(band_name("test_connected", band)) == ("test_connected", band)
    assert split_band("test_connected") is None
    assert split_band("test_snrx") is None
    assert band_order(["0", "clean", "20", "-5", "10"]) == ["clean", "20", "10", "0", "-5"]


def test_results_pivot_the_bands_of_each_experiment(tmp_path: Path) -> None:
    root = tmp_path / "egs" / "fsdd" / "asr1"
    noisy = root / "exp" / "asr_noisy"
    write(noisy / "config.yaml", "encoder: echo\n")
    decode = noisy / "decode_asr"
    scored(decode / "test_clean", REFS, REFS)                                         # 0 errors
    scored(decode / "test_snr20", REFS, ["u1 ONE TWO", "u2 FOUR FIVE"])               # 1 deletion
    scored(decode / "test_snr0", REFS, ["u1 ONE TOO THREE SIX", "u2 FOUR"])           # S1 D1 I1
    plain = root / "exp" / "asr_plain"
    write(plain / "config.yaml", "encoder: echo\n")
    scored(plain / "decode_asr" / "test", REFS, REFS)
    scored(plain / "decode_asr" / "test_snr10", REFS, ["u1 ONE TWO THREE", "u2 FIVE"])

    assert results.main(["--recipe_dir", str(root), "--date", "2026-12-01"]) == 0
    lines = (root / "RESULTS.md").read_text().splitlines()
    start = lines.index("## WER by SNR band")
    assert lines.index("## Summary") < start < lines.index("## asr_noisy")
    table = lines[start + 4 : lines.index("", start + 4)]
    assert table[0] == "|experiment|decode|test set|clean|20 dB|10 dB|0 dB|"
    assert table[2:] == [
        "|asr_noisy|decode_asr|test|0.00 (0/0/0)|20.00 (0/1/0)|-|60.00 (1/1/1)|",
        "|asr_plain|decode_asr|test|-|-|20.00 (0/1/0)|-|",
    ]


def test_no_section_without_snr_sets(tmp_path: Path) -> None:
    root = tmp_path / "egs" / "fsdd" / "asr1"
    exp = root / "exp" / "asr_plain"
    write(exp / "config.yaml", "encoder: echo\n")
    scored(exp / "decode_asr" / "test_isolated", REFS, REFS)
    assert results.main(["--recipe_dir", str(root)]) == 0
    assert "SNR band" not in (root / "RESULTS.md").read_text()
