"""The fold runner's orchestration: folds x seeds, one preparation per fold, recorded runs skipped,
each run's options. run.sh here is a stand-in that logs its arguments and stores a record as stage 7 would."""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from echo_plugin.recipe import folds
from echo_plugin.recipe.records import read_records

FOLDS = """folds:
  - {name: test-a, test: a, dev: b, train: [c, d]}
  - {name: test-b, test: b, dev: c, train: [a, d]}
seeds: [0, 1]
"""
FAKE_RUN = r"""#!/usr/bin/env python3
import json, os, re, sys
from pathlib import Path
args = sys.argv[1:]
opt = lambda k: args[args.index(k) + 1] if k in args else None
for log in ("calls.jsonl", Path("records").resolve().parent / "all_calls.jsonl"):  # per fold, in order
    with open(log, "a") as f:
        f.write(json.dumps({"cwd": os.getcwd(), "args": args}) + "\n")
if os.environ.get("FAIL_SEED", "none") == opt("--seed"):
    sys.exit(1)
if opt("--stage") == "5":
    fold = Path.cwd().name
    # as asr.sh: with SNR bands (the config's recipe map or --snr_test_sets) only the bands are decoded
    found = re.search(r"snr_test_sets: *'([^']*)'", Path(opt("--asr_config")).read_text())
    bands = (opt("--snr_test_sets") or (found[1] if found else "")).split()
    for test_set in [f"{s}_{'clean' if b == 'clean' else 'snr' + b}" for s in opt("--test_sets").split()
                     for b in bands] or opt("--test_sets").split():
        rec = {"name": opt("--record_name"), "fold": {"name": fold}, "seed": int(opt("--seed")),
               "decode": {"dir": "decode_x", "pass": "first"}, "test_set": test_set}
        Path("records", f"{rec['name']}-{fold}-{rec['seed']}-{test_set}.jsonl").write_text(json.dumps(rec) + "\n")
"""


def recipe(tmp_path: Path) -> Path:
    root = tmp_path / "asr1"
    (root / "conf" / "tuning").mkdir(parents=True)
    (root / "conf" / "folds.yaml").write_text(FOLDS)
    (root / "conf" / "tuning" / "x.yaml").write_text("seed: 0\n")
    run = root / "run.sh"
    run.write_text(FAKE_RUN)
    run.chmod(run.stat().st_mode | stat.S_IEXEC)
    for name in ("asr.sh", "path.sh", "cmd.sh"):
        (root / name).write_text("")
    return root


def calls(root: Path) -> list[dict]:
    found = []
    for log in root.glob("folds/*/calls.jsonl"):
        found += [json.loads(line) for line in log.read_text().splitlines()]
    return found


def test_every_fold_and_seed_once_and_each_fold_prepared_once(tmp_path: Path) -> None:
    root = recipe(tmp_path)
    assert folds.main(["--recipe_dir", str(root), "--config", "conf/tuning/x.yaml", "--jobs", "2",
                       "--", "--speaker_adapt", "false"]) == 0
    made = calls(root)
    prepare = [c for c in made if c["args"][:4] == ["--stage", "1", "--stop_stage", "4"]]
    train = [c for c in made if c["args"][:2] == ["--stage", "5"]]
    assert sorted(Path(c["cwd"]).name for c in prepare) == ["test-a", "test-b"]
    assert "--fold_opts" in prepare[0]["args"]
    opts = {Path(c["cwd"]).name: c["args"][c["args"].index("--fold_opts") + 1] for c in prepare}
    assert opts == {"test-a": "--train_speakers c,d --dev_speakers b --test_speakers a",
                    "test-b": "--train_speakers a,d --dev_speakers c --test_speakers b"}
    runs = sorted((Path(c["cwd"]).name, c["args"][c["args"].index("--seed") + 1]) for c in train)
    assert runs == [("test-a", "0"), ("test-a", "1"), ("test-b", "0"), ("test-b", "1")]
    for c in train:
        a = c["args"]
        assert a[a.index("--asr_tag") + 1] == f"x_seed{a[a.index('--seed') + 1]}"
        assert a[a.index("--record_name") + 1] == "x" and a[-2:] == ["--speaker_adapt", "false"]
        assert a[a.index("--train_threads") + 1] == str(max(1, min(2, (os.cpu_count() or 1) // 2)))
        # each run packs its model and scores the deployed path too (stage 8)
        assert a[a.index("--stop_stage") + 1] == "8" and a[a.index("--score_deployed") + 1] == "true"
    # the fold dirs share the recipe's records through a link
    assert (root / "folds" / "test-a" / "records").resolve() == (root / "records").resolve()
    assert len(read_records(root / "records")) == 2 * 2 * 2


def test_recorded_runs_are_skipped_and_a_failure_fails_the_command(tmp_path: Path, monkeypatch) -> None:
    root = recipe(tmp_path)
    monkeypatch.setenv("FAIL_SEED", "1")
    assert folds.main(["--recipe_dir", str(root), "--config", "conf/tuning/x.yaml", "--folds", "test-a",
                       "--seeds", "0", "1"]) == 1
    assert len(calls(root)) == 1 + 2
    monkeypatch.delenv("FAIL_SEED")
    assert folds.main(["--recipe_dir", str(root), "--config", "conf/tuning/x.yaml", "--folds", "test-a"]) == 0
    rerun = calls(root)[3:]  # only the failed seed again; the fold stays prepared
    assert [(c["args"][1], c["args"][c["args"].index("--seed") + 1]) for c in rerun] == [("5", "1")]
    assert folds.main(["--recipe_dir", str(root), "--config", "conf/tuning/x.yaml", "--folds", "test-a"]) == 0
    assert len(calls(root)) == 4


def test_runs_go_seed_by_seed_over_every_fold_and_no_deployed_stops_at_stage_7(tmp_path: Path) -> None:
    root = recipe(tmp_path)
    assert folds.main(["--recipe_dir", str(root), "--config", "conf/tuning/x.yaml", "--no_deployed"]) == 0
    made = [json.loads(line) for line in (root / "all_calls.jsonl").read_text().splitlines()]
    train = [c["args"] for c in made if c["args"][:2] == ["--stage", "5"]]
    order = [(c["args"][c["args"].index("--seed") + 1], Path(c["cwd"]).name) for c in made
             if c["args"][:2] == ["--stage", "5"]]
    assert order == [("0", "test-a"), ("0", "test-b"), ("1", "test-a"), ("1", "test-b")]
    assert all(a[a.index("--stop_stage") + 1] == "7" and "--score_deployed" not in a for a in train)


def test_each_fold_is_prepared_with_the_config_once_per_config(tmp_path: Path) -> None:
    root = recipe(tmp_path)
    (root / "conf" / "tuning" / "y.yaml").write_text("base: x.yaml\nrecipe: {speed_perturb_factors: ''}\n")
    for config in ("x", "y", "x"):
        assert folds.main(["--recipe_dir", str(root), "--config", f"conf/tuning/{config}.yaml",
                           "--folds", "test-a", "--seeds", "0"]) == 0
    prepare = [c["args"] for c in calls(root) if c["args"][:2] == ["--stage", "1"]]
    # x, then y (its recipe options may change the data): each config's preparation once
    assert [a[a.index("--asr_config") + 1] for a in prepare] == ["conf/tuning/x.yaml", "conf/tuning/y.yaml"]


def test_several_configs_run_one_after_another_each_with_its_records(tmp_path: Path, capsys) -> None:
    root = recipe(tmp_path)
    (root / "conf" / "tuning" / "y.yaml").write_text("base: x.yaml\nseed: 1\n")
    assert folds.main(["--recipe_dir", str(root), "--config", "conf/tuning/x.yaml", "conf/tuning/y.yaml",
                       "--seeds", "0", "--jobs", "2"]) == 0
    made = [json.loads(line) for line in (root / "all_calls.jsonl").read_text().splitlines()]
    trained = [c["args"][c["args"].index("--record_name") + 1] for c in made if c["args"][:2] == ["--stage", "5"]]
    assert trained == ["x", "x", "y", "y"]  # every fold of x before y starts
    assert {(r["name"], r["fold"]["name"]) for r in read_records(root / "records")} == {
        (n, f) for n in ("x", "y") for f in ("test-a", "test-b")}
    assert folds.main(["--recipe_dir", str(root), "--config", "conf/tuning/x.yaml", "conf/tuning/y.yaml",
                       "--name", "z"]) == 2
    assert "--name names the records of one config" in capsys.readouterr().err


def test_a_config_with_snr_bands_is_done_when_its_bands_are_recorded(tmp_path: Path) -> None:
    """asr.sh decodes only the SNR bands of a config that asks for them: those records make the run done."""
    root = recipe(tmp_path)
    (root / "conf" / "tuning" / "n.yaml").write_text("base: x.yaml\nrecipe: {snr_test_sets: 'clean 10 0'}\n")
    run = ["--recipe_dir", str(root), "--config", "conf/tuning/n.yaml", "--folds", "test-a", "--seeds", "0"]
    assert folds.main(run) == 0
    assert {r["test_set"] for r in read_records(root / "records")} == {
        f"test_{kind}_{band}" for kind in ("isolated", "connected") for band in ("clean", "snr10", "snr0")}
    assert folds.main(run) == 0
    assert len([c for c in calls(root) if c["args"][:2] == ["--stage", "5"]]) == 1   # recorded: not run again
    assert folds.main([*run, "--", "--snr_test_sets", "5"]) == 0                      # other bands: runs
    assert len([c for c in calls(root) if c["args"][:2] == ["--stage", "5"]]) == 2
    assert folds.scored_test_sets(root / "conf" / "tuning" / "x.yaml", ["t"], []) == ["t"]
