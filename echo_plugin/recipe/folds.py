"""Run one config over a recipe's speaker folds x seeds: the cross-validation behind CLAIMS.md.

    cd egs/fsdd/asr1
    python -m echo_plugin.recipe.folds --config conf/tuning/train_asr_echo.yaml [--seeds 0 1 2] \
        [--folds test-lucas test-george] [--jobs 2] [--work_dir folds] [-- <run.sh options>]
    python -m echo_plugin.recipe.folds --config conf/tuning/a.yaml conf/tuning/b.yaml ...   # one after another

The folds and seeds come from ``conf/folds.yaml`` (``folds: [{name, test, dev, train}]``,
``seeds: [...]``). Each fold gets its own copy of the recipe under
``<work_dir>/<fold>/`` (links to the recipe's scripts, ``conf/`` and ``records/``;
its own ``data/``, ``dump/`` and ``exp/``), prepared once per config (stages 1-4 with
``--fold_opts "--train_speakers ... --dev_speakers ..."`` and ``--asr_config``, whose
``recipe:`` options may change the data: no speed perturbation for a pretrained front end).
Each (fold, seed) then
trains, decodes and scores (stages 5-7) as ``exp/asr_<config>_seed<N>``, then packs the
model and scores the deployed path (stage 8, ``--score_deployed``; ``--no_deployed`` skips it);
stages 7 and 8 store their records in the recipe's ``records/<config>.jsonl``. Runs go
seed by seed over all folds, so the first seed's five folds are there first.

Resumable: a run whose records are all there is skipped, a run that was stopped
resumes from its last finished epoch (ESPnet's checkpoint.pth). ``--jobs N`` runs
N trainings beside each other with ``cores / N`` threads each.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import yaml

from echo_plugin.recipe.overlay import RECIPE_KEY, load_with_recipe
from echo_plugin.recipe.records import read_records
from echo_plugin.recipe.snr_sets import band_name

LINKED = ("run.sh", "asr.sh", "cmd.sh", "path.sh", "utils", "local", "conf", "records")


@dataclass(frozen=True)
class Fold:
    name: str
    test: list[str]
    dev: list[str]
    train: list[str]

    @property
    def data_opts(self) -> str:
        """local/data.sh options that make this fold's data dirs."""
        return (f"--train_speakers {','.join(self.train)} --dev_speakers {','.join(self.dev)}"
                f" --test_speakers {','.join(self.test)}")


def as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def read_folds(path: Path) -> tuple[list[Fold], list[int]]:
    """The folds and seeds of a recipe's fold list."""
    doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    folds = [Fold(f["name"], as_list(f["test"]), as_list(f["dev"]), as_list(f["train"])) for f in doc.get("folds", [])]
    if not folds:
        raise ValueError(f"{path}: no folds")
    return folds, [int(s) for s in doc.get("seeds", [0])]


def fold_dir(recipe_dir: Path, work_dir: Path, fold: Fold) -> Path:
    """``<work_dir>/<fold>``: a copy of the recipe made of links, with its own data, dump and exp."""
    path = work_dir / fold.name
    path.mkdir(parents=True, exist_ok=True)
    (recipe_dir / "records").mkdir(exist_ok=True)
    for name in LINKED:
        link = path / name
        if not link.is_symlink() and (recipe_dir / name).exists():
            link.symlink_to((recipe_dir / name).resolve())
    return path


def done(records: list[dict], name: str, fold: Fold, seed: int, test_sets: list[str]) -> bool:
    """Whether every first-pass test set of the run has its record."""
    have = {r["test_set"] for r in records
            if r["name"] == name and r["fold"]["name"] == fold.name and r["seed"] == seed
            and r["decode"]["pass"] == "first"}
    return set(test_sets) <= have


def scored_test_sets(config: Path, test_sets: list[str], run_args: list[str]) -> list[str]:
    """The test set names a run's records carry: each set, or its SNR bands (``<set>_clean``,
    ``<set>_snr10``, ...) when the config's recipe map or ``--snr_test_sets`` among the run options
    asks for them (asr.sh then decodes only the bands)."""
    if "--snr_test_sets" in run_args[:-1]:
        bands = run_args[run_args.index("--snr_test_sets") + 1]
    else:
        bands = load_with_recipe(config).get(RECIPE_KEY, {}).get("snr_test_sets") or ""
    bands = " ".join(map(str, bands)) if isinstance(bands, list) else str(bands)
    return [band_name(s, b) for s in test_sets for b in bands.split()] if bands.split() else list(test_sets)


def run_sh(cwd: Path, args: list[str], log: Path) -> int:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a", encoding="utf-8") as handle:
        return subprocess.run(["./run.sh", *args], cwd=cwd, stdout=handle, stderr=subprocess.STDOUT).returncode


def run_config(config: str, name: str, recipe: Path, folds: list[Fold], seeds: list[int],
               args: argparse.Namespace) -> bool:
    """Every (fold, seed) of one config not recorded yet, ``args.jobs`` at a time; -> whether all succeeded."""
    test_sets = scored_test_sets(recipe / config, args.test_sets.split(), args.run_args)
    threads = max(1, min(2, (os.cpu_count() or 1) // max(1, args.jobs)))
    work = recipe / args.work_dir
    prepared: dict[str, threading.Lock] = {f.name: threading.Lock() for f in folds}
    records = read_records(recipe / "records")
    runs = [(f, s) for s in seeds for f in folds if not done(records, name, f, s, test_sets)]
    skipped = len(folds) * len(seeds) - len(runs)
    print(f"folds: {name}: {len(runs)} runs to do, {skipped} already recorded", flush=True)

    def one(fold: Fold, seed: int) -> bool:
        cwd = fold_dir(recipe, work, fold)
        # stages 1-4 once per fold and config, before its first training (with the config's
        # recipe options: a pretrained front end's fold has no speed-perturbed copies)
        marker = cwd / f".prepared-{Path(config).stem}"
        with prepared[fold.name]:
            if not marker.is_file():
                if run_sh(cwd, ["--stage", "1", "--stop_stage", "4", "--fold_opts", fold.data_opts,
                                "--asr_config", config, "--test_sets", args.test_sets, *args.run_args],
                          cwd / "logs" / "prepare.log"):
                    print(f"FAILED: prepare {fold.name} ({cwd}/logs/prepare.log)", flush=True)
                    return False
                marker.touch()
        tag = f"{name}_seed{seed}"
        log = cwd / "logs" / f"{tag}.log"
        last = ["--stop_stage", "7"] if args.no_deployed else ["--stop_stage", "8", "--score_deployed", "true"]
        code = run_sh(cwd, ["--stage", "5", *last, "--asr_config", config, "--asr_tag", tag,
                            "--seed", str(seed), "--record_name", name, "--train_threads", str(threads),
                            "--test_sets", args.test_sets, *args.run_args], log)
        print(f"{'done' if code == 0 else 'FAILED'}: {name} {fold.name} seed {seed} ({log})", flush=True)
        return code == 0

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        outcomes = list(pool.map(lambda run: one(*run), runs))
    return all(outcomes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, nargs="+",
                        help="training config(s), relative to the recipe dir; several run one after another")
    parser.add_argument("--recipe_dir", type=Path, default=Path("."))
    parser.add_argument("--fold_list", type=Path, default=Path("conf/folds.yaml"), help="relative to the recipe dir")
    parser.add_argument("--folds", nargs="*", default=None, help="fold names (default: all)")
    parser.add_argument("--seeds", nargs="*", type=int, default=None, help="default: the fold list's")
    parser.add_argument("--name", default=None, help="the records' name (default: the config's file name)")
    parser.add_argument("--test_sets", default="test_isolated test_connected")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--no_deployed", action="store_true", help="stop at stage 7 (no packing, no deployed path)")
    parser.add_argument("--work_dir", type=Path, default=Path("folds"), help="relative to the recipe dir")
    parser.add_argument("run_args", nargs="*", help="after --: more run.sh options for every run")
    args = parser.parse_args(argv)
    recipe = args.recipe_dir.resolve()
    if args.name is not None and len(args.config) > 1:
        print("folds: error: --name names the records of one config; give one --config with it", file=sys.stderr)
        return 2
    try:
        folds, seeds = read_folds(recipe / args.fold_list)
    except (OSError, ValueError, KeyError) as e:
        print(f"folds: error: {e}", file=sys.stderr)
        return 2
    if args.folds:
        unknown = sorted(set(args.folds) - {f.name for f in folds})
        if unknown:
            print(f"folds: error: no fold {', '.join(unknown)} in {args.fold_list}", file=sys.stderr)
            return 2
        folds = [f for f in folds if f.name in args.folds]
    seeds = args.seeds if args.seeds is not None else seeds
    # one config after another (all of one config's runs first: its claim is complete before the next starts)
    outcomes = [run_config(config, args.name or Path(config).stem, recipe, folds, seeds, args)
                for config in args.config]
    return 0 if all(outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
