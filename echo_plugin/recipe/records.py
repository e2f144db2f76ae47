"""Run records: every scored decode as one line of data, committed beside the recipe.

    python -m echo_plugin.recipe.records run_info --exp_dir exp/asr_x --config conf/tuning/x.yaml \
        --option feats_normalize=speech_mvn --option speed_perturb_factors="0.9 1.0 1.1" ...
    python -m echo_plugin.recipe.records write --exp_dir exp/asr_x --data_root dump/raw \
        --train_set train_sp --valid_set dev --test_sets "test_isolated test_connected" \
        --decode_dirs "decode_a decode_a_spkadapt" --inference_config conf/decode.yaml \
        --records_dir records [--name x] [--folds conf/folds.yaml]

``run_info`` (after stage 5) writes ``<exp_dir>/run.json``: what can only be known
when the model is trained: the config as given (an overlay's path), the merged
config, the recipe options that change a run, their content hash, and the git
commit the code came from (with whether the tree was dirty).

``write`` (stage 7, after scoring) turns each ``<decode dir>/<test set>/score/scores.json``
into a record and stores it in ``<records_dir>/<name>.jsonl``, replacing the
record of the same (name, fold, seed, decode dir, test set). A record holds::

    schema, name, tag, config_path, config, run_options, config_hash, git {commit, dirty},
    seed, fold {name, train, dev, test, tuned_on}, epochs, params, train_seconds, train_cpu_seconds, train_cpu_setup,
    peak_rss_mb,
    env, decode {dir, pass, config_path, config, config_hash}, test_set, wer, cer, n_words,
    rtf, date, utts [[utt id, speaker, reference words, Sub, Del, Ins], ...]

The hash covers the merged config and the run options, not the fold or seed
(a record carries those apart). :func:`is_stale` recomputes it from the tree's
config: when the default moves on, every record trained from the old one is
shown as stale, never silently mixed with fresh rows.
"""
from __future__ import annotations

import argparse
import datetime
import fcntl
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterable, Iterator

import yaml

from echo_plugin.recipe.data_dir import parse_numbers, read_table
from echo_plugin.recipe.io import atomic_write_text
from echo_plugin.recipe.overlay import config_hash, load_config, recipe_args
from echo_plugin.train.epoch_cpu import train_cpu

SCHEMA = 1
SPEED_PREFIX = re.compile(r"^sp[0-9.]+-")  # speed-perturbed copies are their own speakers: sp0.9-george


def git_state(repo: Path) -> dict[str, Any]:
    """{commit, dirty} of the checkout holding ``repo`` (both None outside git)."""
    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                                  check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def run_info(config_path: str, recipe_dir: Path, run_options: dict) -> dict[str, Any]:
    """The run.json content of a training from ``config_path`` (relative to ``recipe_dir``)."""
    config = load_config(recipe_dir / config_path)
    return {
        "config_path": config_path,
        "config": config,
        "run_options": run_options,
        "config_hash": config_hash(config, run_options),
        "git": git_state(recipe_dir),
    }


def is_stale(record: dict, recipe_dir: Path) -> bool:
    """Whether the tree's config no longer gives the record's hash: its training config, with the record's
    run options as far as the config's ``recipe:`` map does not now set them otherwise (a config whose map
    turned speed perturbation off makes its speed-perturbed records stale)."""
    path = recipe_dir / record["config_path"]
    if not path.is_file():
        return True
    try:
        options = dict(record.get("run_options") or {})
        args = recipe_args(path)
        for key, value in zip(args[::2], args[1::2]):
            if key[2:] in options:
                options[key[2:]] = value
        return config_hash(load_config(path), options) != record["config_hash"]
    except (ValueError, OSError, yaml.YAMLError):
        return True


def speakers(data_dir: Path) -> list[str]:
    """The speakers of a data dir's utt2spk, speed-perturbed copies folded into their source."""
    return sorted({SPEED_PREFIX.sub("", spk) for spk in read_table(data_dir / "utt2spk").values()})


def fold_of(train: list[str], dev: list[str], test: list[str], folds_file: Path | None) -> dict[str, Any]:
    """The fold of these speakers: its entry in ``folds_file`` (matched by test and dev speakers), else a
    name made of them; ``tuned_on`` says whether the recipe's choices were made looking at its test speaker."""
    fold = {"name": f"test-{'+'.join(test)}_dev-{'+'.join(dev)}", "train": train, "dev": dev, "test": test,
            "tuned_on": False}
    if folds_file is not None and folds_file.is_file():
        for entry in (yaml.safe_load(folds_file.read_text(encoding="utf-8")) or {}).get("folds", []):
            if sorted(as_list(entry["test"])) == test and sorted(as_list(entry["dev"])) == dev:
                fold.update(name=entry["name"], tuned_on=bool(entry.get("tuned_on", False)))
    return fold


def as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def read_number(path: Path, parse=float) -> Any:
    """The file's number (the sum of its lines, for per-run files such as train_seconds); None when absent."""
    if not path.is_file():
        return None
    numbers = parse_numbers(path.read_text(encoding="utf-8"))
    return parse(sum(numbers)) if numbers else None


def peak_rss_mb(log: Path) -> float | None:
    """The largest ``max_rss_mb`` of the launcher's accounting lines in a job log."""
    if not log.is_file():
        return None
    values = [float(v) for v in re.findall(r"max_rss_mb=([0-9.]+)", log.read_text(encoding="utf-8", errors="replace"))]
    return max(values) if values else None


def decode_pass(decode_dir: str) -> str:
    """``spkadapt`` for the speaker-adaptive second pass, ``deployed`` for the packed model run file by file."""
    for name in ("spkadapt", "deployed"):
        if decode_dir.endswith(f"_{name}"):
            return name
    return "first"


def decode_label(record: dict) -> str:
    """The decode dir, and the scoring normaliser when there was one (``decode_x [whisper_digits]``): WERs
    scored through different normalisers are kept apart."""
    normalizer = record["decode"].get("normalizer") or "none"
    return record["decode"]["dir"] + ("" if normalizer == "none" else f" [{normalizer}]")


def build_records(args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    """One record per scored (decode dir, test set) of ``args.exp_dir``."""
    exp = args.exp_dir
    run = json.loads((exp / "run.json").read_text(encoding="utf-8"))
    trained = yaml.safe_load((exp / "config.yaml").read_text(encoding="utf-8")) or {}
    env_file = exp / "env.txt"
    env = dict(line.split(": ", 1) for line in env_file.read_text().splitlines() if ": " in line) if env_file.is_file() else {}
    decoding = load_config(args.inference_config) if args.inference_config else {}
    train = speakers(args.data_root / args.train_set)
    dev = speakers(args.data_root / args.valid_set)
    cpu_seconds, cpu_setup = train_cpu(exp, read_number(exp / "epochs", int))
    for test_set in args.test_sets.split():
        utt2spk = read_table(args.data_root / test_set / "utt2spk")
        fold = fold_of(train, dev, speakers(args.data_root / test_set), args.folds)
        for decode_dir in args.decode_dirs.split():
            scores_file = exp / decode_dir / test_set / "score" / "scores.json"
            if not scores_file.is_file():
                continue
            scores = json.loads(scores_file.read_text(encoding="utf-8"))
            yield {
                "schema": SCHEMA,
                "name": args.name or exp.name.removeprefix("asr_"),
                "tag": exp.name,
                **{k: run[k] for k in ("config_path", "config", "run_options", "config_hash", "git")},
                "seed": trained.get("seed"),
                "fold": fold,
                "epochs": read_number(exp / "epochs", int),
                "params": read_number(exp / "num_params", int),
                "train_seconds": read_number(exp / "train_seconds"),
                "train_cpu_seconds": cpu_seconds,
                "train_cpu_setup": cpu_setup,
                "peak_rss_mb": peak_rss_mb(exp / "train.log"),
                "env": env,
                "decode": {"dir": decode_dir, "pass": decode_pass(decode_dir),
                           "config_path": args.inference_config and str(args.inference_config),
                           "config": decoding, "config_hash": config_hash(decoding),
                           "normalizer": scores.get("normalizer", "none")},
                "test_set": test_set,
                "wer": scores["wer"]["error_rate"],
                "cer": scores["cer"]["error_rate"],
                "n_words": scores["wer"]["n_tokens"],
                "rtf": scores.get("rtf"),
                "date": datetime.date.today().isoformat(),
                "utts": [[utt, utt2spk.get(utt), *counts] for utt, *counts in scores["utterances"]],
            }


def record_key(record: dict) -> tuple:
    """(name, fold, seed, decode dir and normaliser, test set): one record each."""
    return (record["name"], record["fold"]["name"], record["seed"], decode_label(record), record["test_set"])


def read_records(records_dir: Path) -> list[dict]:
    """Every record of ``records_dir/*.jsonl``; ValueError naming file and line for a line that is not one."""
    records = []
    for path in sorted(records_dir.glob("*.jsonl")) if records_dir.is_dir() else []:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                record_key(record)
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise ValueError(f"{path}:{number}: not a run record ({e})") from None
            records.append(record)
    return records


def store(records: Iterable[dict], records_dir: Path) -> list[Path]:
    """Add records to ``<records_dir>/<name>.jsonl``, each replacing one of the same key; -> files written.
    Runs beside each other (the fold runner's jobs) take turns through a lock file."""
    by_file: dict[Path, list[dict]] = {}
    for record in records:
        by_file.setdefault(records_dir / f"{record['name']}.jsonl", []).append(record)
    records_dir.mkdir(parents=True, exist_ok=True)
    with open(records_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for path, new in by_file.items():
            merge_into(path, new)
    return list(by_file)


def merge_into(path: Path, new: list[dict]) -> None:
    """Rewrite ``path`` with ``new`` replacing its records of the same keys."""
    keys = {record_key(r) for r in new}
    kept = [r for r in read_records_file(path) if record_key(r) not in keys]
    merged = sorted(kept + new, key=lambda r: json.dumps(record_key(r)))
    atomic_write_text(path, "".join(json.dumps(r, sort_keys=True, separators=(",", ":")) + "\n" for r in merged))


def read_records_file(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("run_info", help="write <exp_dir>/run.json after training")
    info.add_argument("--exp_dir", type=Path, required=True)
    info.add_argument("--config", required=True, help="the config as given (relative to the recipe dir)")
    info.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                      help="a recipe option of the run (repeated)")
    info.add_argument("--recipe_dir", type=Path, default=Path("."))
    write = sub.add_parser("write", help="store the scored decodes of an experiment as records")
    write.add_argument("--exp_dir", type=Path, required=True)
    write.add_argument("--data_root", type=Path, required=True, help="dump/raw: the sets' formatted data dirs")
    write.add_argument("--train_set", required=True)
    write.add_argument("--valid_set", required=True)
    write.add_argument("--test_sets", required=True, help="space-separated")
    write.add_argument("--decode_dirs", required=True, help="space-separated, relative to --exp_dir")
    write.add_argument("--inference_config", type=Path, default=None)
    write.add_argument("--records_dir", type=Path, required=True)
    write.add_argument("--name", default=None, help="the records' name (default: the tag without asr_)")
    write.add_argument("--folds", type=Path, default=None, help="the recipe's fold list (conf/folds.yaml)")
    args = parser.parse_args(argv)
    try:
        if args.command == "run_info":
            options = dict(item.split("=", 1) for item in args.option)
            info_doc = run_info(args.config, args.recipe_dir, options)
            atomic_write_text(args.exp_dir / "run.json", json.dumps(info_doc, indent=1, sort_keys=True) + "\n")
            return 0
        if not (args.exp_dir / "run.json").is_file():
            raise ValueError(f"{args.exp_dir}/run.json: missing (written after training by stage 5)")
        written = store(build_records(args), args.records_dir)
        print(f"records: {', '.join(str(p) for p in written) or 'no scored decodes'}")
        return 0
    except (ValueError, OSError, KeyError, json.JSONDecodeError) as e:
        print(f"records: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
