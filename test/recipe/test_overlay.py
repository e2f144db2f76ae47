"""Config overlays: base chains, deep merge, config_hash, the CLI and asr.sh's merged config."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from echo_plugin.recipe import overlay
from echo_plugin.recipe.overlay import ConfigError, config_hash, load_config
from test.recipe.recipe_helpers import copy_recipe, recipe_env

BASE = {
    "encoder": "echo",
    "encoder_conf": {"output_size": 144, "layers": [{"num": 6, "attention": "standard"}],
                     "rotary": {"type": "standard", "conf": {"theta": 10000.0}}},
    "specaug_conf": {"freq_mask_width_range": [0, 8]},
    "seed": 0,
}


def write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def base(tmp_path: Path) -> Path:
    return write(tmp_path / "base.yaml", BASE)


def test_a_config_without_base_is_unchanged(base: Path) -> None:
    assert load_config(base) == BASE


def test_maps_are_merged_deeply_and_the_overlay_wins(base: Path, tmp_path: Path) -> None:
    over = write(tmp_path / "o.yaml", {"base": "base.yaml", "encoder_conf": {"rotary": {"conf": {"theta": 500.0}},
                                                                             "frame_shift": 0.01}})
    merged = load_config(over)
    assert merged["encoder_conf"]["rotary"] == {"type": "standard", "conf": {"theta": 500.0}}
    assert merged["encoder_conf"]["frame_shift"] == 0.01
    assert merged["encoder_conf"]["output_size"] == 144
    assert merged["encoder_conf"]["layers"] == BASE["encoder_conf"]["layers"]
    assert "base" not in merged and merged["seed"] == 0


def test_lists_are_replaced_whole(base: Path, tmp_path: Path) -> None:
    layers = [{"num": 3, "attention": "adaptive"}]
    merged = load_config(write(tmp_path / "o.yaml", {"base": "base.yaml", "encoder_conf": {"layers": layers},
                                                     "specaug_conf": {"freq_mask_width_range": [2]}}))
    assert merged["encoder_conf"]["layers"] == layers
    assert merged["specaug_conf"]["freq_mask_width_range"] == [2]


def test_scalars_are_replaced_and_a_map_may_become_a_scalar(base: Path, tmp_path: Path) -> None:
    merged = load_config(write(tmp_path / "o.yaml", {"base": "base.yaml", "seed": 7, "encoder": "dual",
                                                     "specaug_conf": "none"}))
    assert (merged["seed"], merged["encoder"], merged["specaug_conf"]) == (7, "dual", "none")


def test_null_replaces_and_keeps_the_key(base: Path, tmp_path: Path) -> None:
    merged = load_config(write(tmp_path / "o.yaml", {"base": "base.yaml", "seed": None,
                                                     "encoder_conf": {"rotary": None}}))
    assert "seed" in merged and merged["seed"] is None
    assert merged["encoder_conf"]["rotary"] is None and merged["encoder_conf"]["output_size"] == 144


def test_a_map_marked_replace_replaces_the_base_map_whole(base: Path, tmp_path: Path) -> None:
    merged = load_config(write(tmp_path / "o.yaml", {"base": "base.yaml", "encoder_conf": {
        "_replace_": True, "output_size": 256, "rotary": {"type": "none"}}}))
    assert merged["encoder_conf"] == {"output_size": 256, "rotary": {"type": "none"}}
    nested = load_config(write(tmp_path / "n.yaml", {"base": "base.yaml", "encoder_conf": {
        "rotary": {"_replace_": True, "type": "mel"}}}))
    assert nested["encoder_conf"]["rotary"] == {"type": "mel"} and nested["encoder_conf"]["output_size"] == 144


def test_a_chain_of_two_bases_resolves_relative_to_each_file(base: Path, tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub" / "mid.yaml", {"base": "../base.yaml", "seed": 1, "encoder_conf": {"output_size": 96}})
    top = write(tmp_path / "sub" / "top.yaml", {"base": "mid.yaml", "seed": 2})
    merged = load_config(top)
    assert merged["seed"] == 2 and merged["encoder_conf"]["output_size"] == 96
    assert merged["encoder_conf"]["layers"] == BASE["encoder_conf"]["layers"] and "base" not in merged


def test_a_base_cycle_is_an_error_naming_the_files(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", {"base": "b.yaml", "seed": 1})
    write(tmp_path / "b.yaml", {"base": "a.yaml", "seed": 2})
    with pytest.raises(ConfigError, match="cycle") as err:
        load_config(tmp_path / "a.yaml")
    assert "a.yaml" in str(err.value) and "b.yaml" in str(err.value)
    write(tmp_path / "self.yaml", {"base": "self.yaml"})
    with pytest.raises(ConfigError, match="self.yaml -> .*self.yaml"):
        load_config(tmp_path / "self.yaml")


def test_a_missing_base_is_an_error_naming_it(tmp_path: Path) -> None:
    over = write(tmp_path / "o.yaml", {"base": "nowhere.yaml", "seed": 1})
    with pytest.raises(ConfigError, match=r"nowhere\.yaml \(base of .*o\.yaml\) does not exist"):
        load_config(over)


def test_config_hash_is_stable_under_key_order_and_sees_values_and_run_options() -> None:
    a = {"seed": 0, "encoder_conf": {"output_size": 144, "num_blocks": 6}}
    b = {"encoder_conf": {"num_blocks": 6, "output_size": 144}, "seed": 0}
    assert config_hash(a) == config_hash(b) == config_hash(a, {})
    assert config_hash(a).startswith("sha256:") and len(config_hash(a)) == len("sha256:") + 64
    assert config_hash(a) != config_hash({**a, "seed": 1})
    assert config_hash(a, {"ngpu": 1}) != config_hash(a) != config_hash(a, {"ngpu": 2})
    assert config_hash(a, {"ngpu": 1, "fs": 8000}) == config_hash(b, {"fs": 8000, "ngpu": 1})


def test_cli_writes_the_merged_config_with_a_header(base: Path, tmp_path: Path, capsys) -> None:
    over = write(tmp_path / "o.yaml", {"base": "base.yaml", "seed": 3})
    out = tmp_path / "exp" / "merged.yaml"
    assert overlay.main(["--config", str(over), "--out", str(out)]) == 0
    text = out.read_text()
    first = text.splitlines()[0]
    assert first == f"# merged from {over} by echo_plugin.recipe.overlay; config_hash {config_hash(load_config(over))}"
    assert yaml.safe_load(text) == {**BASE, "seed": 3}
    assert overlay.main(["--config", str(over), "--print_hash"]) == 0
    assert capsys.readouterr().out == f"{config_hash({**BASE, 'seed': 3})}\n"
    assert not list(out.parent.glob(".*tmp*"))  # written through a renamed temporary file


def test_cli_leaves_an_unchanged_merged_file_alone(base: Path, tmp_path: Path) -> None:
    over = write(tmp_path / "o.yaml", {"base": "base.yaml", "seed": 3})
    out = tmp_path / "merged.yaml"
    overlay.main(["--config", str(over), "--out", str(out)])
    stamp = out.stat().st_mtime_ns - 10_000_000_000
    os.utime(out, ns=(stamp, stamp))
    overlay.main(["--config", str(over), "--out", str(out)])
    assert out.stat().st_mtime_ns == stamp  # asr.sh's feature cache compares against it
    write(over, {"base": "base.yaml", "seed": 4})
    overlay.main(["--config", str(over), "--out", str(out)])
    assert out.stat().st_mtime_ns > stamp and yaml.safe_load(out.read_text())["seed"] == 4


def test_cli_reports_a_bad_base(tmp_path: Path, capsys) -> None:
    over = write(tmp_path / "o.yaml", {"base": "gone.yaml"})
    assert overlay.main(["--config", str(over), "--out", str(tmp_path / "m.yaml")]) == 1
    assert "gone.yaml" in capsys.readouterr().err and not (tmp_path / "m.yaml").exists()


def test_espnet_config_is_the_file_itself_without_base(base: Path, tmp_path: Path) -> None:
    assert overlay.espnet_config(base, tmp_path / "w") == base
    over = write(tmp_path / "o.yaml", {"base": "base.yaml", "seed": 5})
    merged = overlay.espnet_config(over, tmp_path / "w")
    assert merged.parent == tmp_path / "w" and yaml.safe_load(merged.read_text())["seed"] == 5


def test_asr_sh_trains_from_the_merged_config_of_an_overlay(tmp_path: Path) -> None:
    """asr.sh before any stage: an overlay is merged into exp/asr_<tag>/asr_config.merged.yaml; a whole config
    is used as it is (no merged file)."""
    root = copy_recipe(tmp_path)
    write(root / "conf" / "tiny_seed3.yaml", {"base": "train_asr_echo_tiny.yaml", "seed": 3})
    for config in ("conf/tiny_seed3.yaml", "conf/train_asr_echo_tiny.yaml"):
        subprocess.run(["./asr.sh", "--asr_config", config, "--stage", "9", "--stop_stage", "0"],
                       cwd=root, env=recipe_env(), check=True, capture_output=True, text=True)
    merged = root / "exp" / "asr_tiny_seed3" / "asr_config.merged.yaml"
    assert merged.read_text().startswith("# merged from conf/tiny_seed3.yaml by echo_plugin.recipe.overlay")
    assert yaml.safe_load(merged.read_text()) == {**load_config(root / "conf" / "train_asr_echo_tiny.yaml"), "seed": 3}
    assert not (root / "exp" / "asr_train_asr_echo_tiny").exists()


def test_a_recipe_map_gives_asr_sh_options_and_never_reaches_espnet(base: Path, tmp_path: Path, capsys) -> None:
    """The recipe: map merges through the base chain, becomes asr.sh arguments (bools as true/false, lists
    joined, null and "" empty), and is left out of the merged config and of its hash."""
    write(base, {**BASE, "recipe": {"feats_normalize": "speaker_mvn", "speed_perturb_factors": [0.9, 1.0, 1.1],
                                    "speaker_adapt": True}})
    over = write(tmp_path / "o.yaml", {"base": "base.yaml", "seed": 3,
                                       "recipe": {"speed_perturb_factors": "", "speaker_adapt": False,
                                                  "stats_config": None}})
    assert overlay.recipe_args(base) == ["--feats_normalize", "speaker_mvn",
                                         "--speed_perturb_factors", "0.9 1.0 1.1", "--speaker_adapt", "true"]
    assert overlay.recipe_args(over) == ["--feats_normalize", "speaker_mvn", "--speed_perturb_factors", "",
                                         "--speaker_adapt", "false", "--stats_config", ""]
    assert load_config(over) == {**BASE, "seed": 3}
    assert config_hash(overlay.load_with_recipe(over)) == config_hash({**BASE, "seed": 3})
    assert overlay.main(["--config", str(over), "--recipe_args"]) == 0
    assert capsys.readouterr().out.split("\n") == [*overlay.recipe_args(over), ""]
    # a whole config holding a recipe map is merged too (ESPnet would refuse the key)
    merged = overlay.espnet_config(base, tmp_path / "w")
    assert merged != base and "recipe" not in yaml.safe_load(merged.read_text())
    assert overlay.recipe_args(write(tmp_path / "plain.yaml", BASE)) == []


def test_a_recipe_map_that_is_not_a_map_is_an_error(tmp_path: Path, capsys) -> None:
    bad = write(tmp_path / "bad.yaml", {**BASE, "recipe": ["--fs", "8000"]})
    assert overlay.main(["--config", str(bad), "--recipe_args"]) == 1
    assert "recipe must be a map" in capsys.readouterr().err


def test_apply_merges_another_overlays_own_changes_over_the_base(base: Path, tmp_path: Path) -> None:
    """One mechanism overlay of the root serves a second base: its keys, not its base chain, are applied."""
    write(tmp_path / "mech.yaml", {"base": "base.yaml", "encoder_conf": {"layers": [{"num": 3, "attention": "myel"}]}})
    write(tmp_path / "front.yaml", {"base": "base.yaml", "frontend": "whisper", "encoder_conf": {"output_size": 96}})
    both = load_config(write(tmp_path / "both.yaml", {"base": "front.yaml", "apply": ["mech.yaml"], "seed": 3}))
    assert both == {**load_config(tmp_path / "front.yaml"), "seed": 3,
                    "encoder_conf": {**load_config(tmp_path / "front.yaml")["encoder_conf"],
                                     "layers": [{"num": 3, "attention": "myel"}]}}
    assert both["frontend"] == "whisper" and both["encoder_conf"]["output_size"] == 96
    assert overlay.needs_merge(tmp_path / "both.yaml")


def test_apply_refuses_an_overlay_of_a_config_outside_the_base_chain(base: Path, tmp_path: Path) -> None:
    write(tmp_path / "other.yaml", {"seed": 9})
    write(tmp_path / "mech.yaml", {"base": "other.yaml", "seed": 1})
    write(tmp_path / "front.yaml", {"base": "base.yaml", "frontend": "whisper"})
    with pytest.raises(ConfigError, match="mech.yaml.*base chain"):
        load_config(write(tmp_path / "both.yaml", {"base": "front.yaml", "apply": ["mech.yaml"]}))
    with pytest.raises(ConfigError, match="apply must be a list"):
        load_config(write(tmp_path / "bad.yaml", {"base": "front.yaml", "apply": "mech.yaml"}))
    with pytest.raises(ConfigError, match="needs a base"):
        load_config(write(tmp_path / "nobase.yaml", {"apply": ["mech.yaml"]}))
