"""A packed model works wherever it is unpacked, also when its files were packed through links."""
from __future__ import annotations

from pathlib import Path

import yaml

from echo_plugin.inference.packed_paths import point_at_packed_files
from echo_plugin.inference.transcriber import load
from test.inference.tiny_pack import babble, pack_tiny, write_wav


def test_config_paths_are_pointed_at_the_one_stored_file_that_ends_with_them(tmp_path: Path) -> None:
    root = tmp_path / "unpacked"
    bpe = root / "work" / "wt" / "folds" / "test-a" / "data" / "token_list" / "bpe.model"
    stats = root / "elsewhere" / "exp" / "stats" / "feats_stats.npz"  # ESPnet stores an absolute path so
    twins = [root / "a" / "x" / "same.npz", root / "b" / "x" / "same.npz"]
    for f in (bpe, stats, *twins):
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("x")
    config = root / "exp" / "config.yaml"
    config.parent.mkdir(parents=True)
    config.write_text(yaml.safe_dump({
        "bpemodel": "data/token_list/bpe.model",                    # packed through a link: another stored name
        "normalize_conf": {"stats_file": "/elsewhere/exp/stats/feats_stats.npz"},  # absolute on the packer
        "ambiguous": "x/same.npz", "token_type": "bpe", "unknown": "data/nothing.txt",
        "already": str(stats), "shorter": "stats/feats_stats.npz",
    }))
    point_at_packed_files(config, root)
    fixed = yaml.safe_load(config.read_text())
    assert fixed["bpemodel"] == str(bpe)
    assert fixed["normalize_conf"]["stats_file"] == str(stats)
    assert fixed["ambiguous"] == "x/same.npz" and fixed["unknown"] == "data/nothing.txt"
    assert fixed["token_type"] == "bpe" and fixed["already"] == str(stats) and fixed["shorter"] == str(stats)


def test_a_packed_model_loads_after_its_original_files_are_gone(tmp_path: Path) -> None:
    """ESPnet's unpack leaves an absolute stats path pointing at the packing machine; the model must not need it."""
    work = tmp_path / "recipe"
    work.mkdir()
    archive = pack_tiny(work)
    (work / "pooled_stats.npz").unlink()  # the model moved to another machine
    transcriber = load(archive, cache_dir=tmp_path / "unpacked")
    stats_file = yaml.safe_load(transcriber.train_config.read_text())["normalize_conf"]["stats_file"]
    assert Path(stats_file).is_file() and Path(stats_file).is_relative_to(tmp_path / "unpacked")
    wav = write_wav(tmp_path / "a.wav", babble(1.5, seed=1))
    assert isinstance(transcriber.transcribe(str(wav)).text, str)
