"""Stage 7: render RESULTS.md from the recipe's run records (``<recipe_dir>/records/*.jsonl``).

    python -m echo_plugin.recipe.results --recipe_dir egs/fsdd/asr1 --out egs/fsdd/asr1/RESULTS.md
    python -m echo_plugin.recipe.results --recipe_dir egs/fsdd/asr1 egs/librispeech_100/asr1 \
        --out RESULTS_ALL.md [--recipe_results true|false] \
        [--date YYYY-MM-DD] [--python_version X] [--torch_version Y]

The records (echo_plugin.recipe.records) are committed, so a fresh clone renders
the same tables; nothing is read from ``exp/`` and nothing from an older
RESULTS.md. ``--recipe_dir`` takes one or more dirs and may be repeated. With
several, the ``--out`` table holds every recipe's rows (with a recipe column)
and each recipe's own ``RESULTS.md`` is rewritten with its rows alone (unless
``--recipe_results false``).

The file: a header naming this command, the environment, a summary with one
row per (experiment, decode dir, test set) pooled over its folds and seeds,
with the cost columns (parameters, training wall-clock time, training CPU time,
peak training memory, decoding real-time factor: wall-clock time depends on what
else the machine ran, CPU time much less, so CPU time is the one to compare); the deployed model against the recipe's decode
(per experiment, first-pass decode dir and test set: the recipe's first-pass
WER, the WER of its ``<dir>_deployed`` decode, i.e. the packed model run file by
file through ``transcribe``, both pooled over the runs that have both, and their
ratio); a WER-by-SNR-band table when some decodes are SNR-stratified
(echo_plugin.recipe.snr_table); then every run (fold x seed) on its own row. A record whose config no longer gives its hash (the config or the
default it overlays changed since) is marked **stale**, in both tables.
"""
from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import platform
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from statistics import mean

from espnet2.utils.types import str2bool

from echo_plugin.recipe.bootstrap import wer_interval
from echo_plugin.recipe.compare import FIRST_PASS, RecordError, average_seeds, bootstrap_input
from echo_plugin.recipe.io import atomic_write_text
from echo_plugin.recipe.records import decode_label, decode_pass, is_stale, read_records
from echo_plugin.recipe.snr_table import snr_section
from echo_plugin.train.epoch_cpu import mean_in_one_setup

DASH = "-"
STALE = "**stale**"
SUMMARY_COLUMNS = [
    "experiment", "config", "params (M)", "epochs", "folds x seeds", "train wall", "train CPU", "peak mem (MB)",
    "decode", "test set", "WER %", "95% CI", "runs min-max", "word Sub/Del/Ins", "CER %", "RTF",
]
DEPLOYED_PASS = "deployed"  # records.decode_pass of a ``<dir>_deployed`` decode dir
DEPLOYED_TARGET = 1.15      # issue 19: the deployed WER at most 1.15x the recipe's first pass
DEPLOYED_COLUMNS = ["experiment", "decode", "test set", "paired runs", "recipe WER % (errors/words)",
                    "deployed WER % (errors/words)", "deployed/recipe", f"<= {DEPLOYED_TARGET:g}x"]
RUN_COLUMNS = ["experiment", "fold", "seed", "decode", "test set", "WER %", "word Sub/Del/Ins", "CER %", "RTF",
               "commit", "date"]


@dataclass
class Row:
    """One record as the tables show it."""

    recipe: str
    record: dict
    stale: bool

    @property
    def counts(self) -> tuple[int, int, int, int]:
        """(reference words, Sub, Del, Ins) over the record's utterances."""
        utts = self.record["utts"]
        return tuple(sum(u[k] for u in utts) for k in (2, 3, 4, 5))  # type: ignore[return-value]


def hms(seconds: float) -> str:
    """``h:mm:ss`` of a number of seconds."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def mean_of(values: list, form) -> str:
    """``form`` of the mean of the values that are not None, or a dash."""
    present = [v for v in values if v is not None]
    return form(mean(present)) if present else DASH


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["|" + "|".join(header) + "|", "|" + "|".join("---" for _ in header) + "|"] + [
        "|" + "|".join(row) + "|" for row in rows
    ]


def recipe_name(recipe_dir: Path) -> str:
    """``<corpus>/<recipe>`` as in ``egs/fsdd/asr1``."""
    resolved = recipe_dir.resolve()
    return f"{resolved.parent.name}/{resolved.name}"


def read_rows(recipe_dir: Path) -> list[Row]:
    """Every record of the recipe, with its stale flag."""
    return [Row(recipe_name(recipe_dir), r, is_stale(r, recipe_dir)) for r in read_records(recipe_dir / "records")]


def pooled_wer(rows: list[Row]) -> float:
    words = sum(r.counts[0] for r in rows)
    return 100 * sum(sum(r.counts[1:]) for r in rows) / words if words else 0.0


def wer_ci(records: list[dict]) -> str:
    """The 95% interval of a group's WER over its test speakers and their utterances (two-level bootstrap,
    seeds averaged per utterance: echo_plugin.recipe.bootstrap.wer_interval); "-" for one test speaker, where
    no interval over speakers exists (an anecdote, not evidence)."""
    named = [{"config_name": r["name"], **r} for r in records]  # compare's key for the experiment
    try:
        speakers = bootstrap_input(average_seeds(named).values())
    except (RecordError, TypeError):  # seeds that decoded different utterances, an utterance with no speaker
        return "n/a"  # the row is still pooled; CLAIMS.md / compare name the records at fault
    if len(speakers) < 2:
        return DASH
    _, low, high = wer_interval(speakers)
    return f"{low:.2f}-{high:.2f}"


def cpu_cell(records: list[dict]) -> str:
    """Mean training CPU time of the runs that measured it (``h:mm:ss``); ``mixed setups`` where they ran in
    different setups (device, threads, processes), whose CPU seconds do not compare; a dash where none did."""
    seconds, setup = mean_in_one_setup([(r["train_cpu_seconds"], r.get("train_cpu_setup")) for r in records
                                        if r.get("train_cpu_seconds") is not None])  # absent before it existed
    return "mixed setups" if setup == "mixed" else DASH if seconds is None else hms(seconds)


def summary_rows(rows: list[Row], with_recipe: bool) -> list[list[str]]:
    """One row per (recipe, experiment, decode dir, test set), pooled over its runs."""
    groups: dict[tuple, list[Row]] = {}
    for row in rows:
        r = row.record
        groups.setdefault((row.recipe, r["name"], decode_label(r), r["test_set"]), []).append(row)
    out = []
    for (recipe, name, decode, test_set), group in sorted(groups.items()):
        records = [g.record for g in group]
        folds = {r["fold"]["name"] for r in records}
        seeds = {r["seed"] for r in records}
        wers = [r["wer"] for r in records]
        totals = [sum(g.counts[k] for g in group) for k in (1, 2, 3)]
        config = records[0]["config_path"] + (f" {STALE}" if any(g.stale for g in group) else "")
        out.append(([recipe] if with_recipe else []) + [
            name, config,
            mean_of([r["params"] for r in records], lambda n: f"{n / 1e6:.2f}"),
            mean_of([r["epochs"] for r in records], lambda n: f"{n:g}"),
            f"{len(folds)}x{len(seeds)}" + (f" ({len(records)} runs)" if len(records) != len(folds) * len(seeds) else ""),
            mean_of([r["train_seconds"] for r in records], hms),
            cpu_cell(records),
            mean_of([r["peak_rss_mb"] for r in records], lambda m: f"{m:.0f}"),
            decode, test_set, f"{pooled_wer(group):.2f}", wer_ci(records), f"{min(wers):.2f}-{max(wers):.2f}",
            "/".join(str(t) for t in totals),
            mean_of([r["cer"] for r in records], lambda c: f"{c:.2f}"),
            mean_of([r["rtf"] for r in records], lambda x: f"{x:.4f}"),
        ])
    return out


def wer_cell(rows: list[Row]) -> str:
    """``WER % (errors/words)`` pooled over the rows, or a dash for none."""
    if not rows:
        return DASH
    words = sum(r.counts[0] for r in rows)
    return f"{pooled_wer(rows):.2f} ({sum(sum(r.counts[1:]) for r in rows)}/{words})"


def wer_ratio(deployed: list[Row], recipe: list[Row]) -> float | None:
    """Pooled deployed WER over pooled recipe WER; 1.0 when both are 0 (the same WER), ``inf`` when only the
    recipe's is 0 (any deployed error misses the target); None when either side has no rows."""
    if not deployed or not recipe:
        return None
    dep, rec = pooled_wer(deployed), pooled_wer(recipe)
    if rec == 0:
        return 1.0 if dep == 0 else float("inf")
    return dep / rec


def deployed_rows(rows: list[Row], with_recipe: bool) -> list[list[str]]:
    """One row per (recipe, experiment, first-pass decode dir, test set): its first-pass WER, the WER of its
    ``_deployed`` decode and their ratio, both pooled over the runs (fold, seed) that have both; where no run
    has both, each side is pooled over its own runs and the ratio is a dash."""
    # (recipe, experiment, first-pass decode label, test set) -> (fold, seed) -> pass -> rows
    groups: dict[tuple, dict[tuple, dict[str, list[Row]]]] = {}
    for row in rows:
        r = row.record
        pass_ = decode_pass(r["decode"]["dir"])
        if pass_ not in (FIRST_PASS, DEPLOYED_PASS):
            continue  # e.g. the speaker-adaptive second pass
        # the deployed decode of dir X is X_deployed, scored through the same normaliser
        first_dir = r["decode"]["dir"].removesuffix(f"_{DEPLOYED_PASS}")
        label = decode_label({**r, "decode": {**r["decode"], "dir": first_dir}})
        run = (r["fold"]["name"], str(r["seed"]))
        (groups.setdefault((row.recipe, r["name"], label, r["test_set"]), {})
         .setdefault(run, {FIRST_PASS: [], DEPLOYED_PASS: []})[pass_].append(row))
    out = []
    for (recipe, name, label, test_set), runs in sorted(groups.items()):
        paired = [by_pass for by_pass in runs.values() if all(by_pass.values())]
        n_recipe = sum(1 for by_pass in runs.values() if by_pass[FIRST_PASS])
        chosen = paired or list(runs.values())
        recipe_rows = [g for by_pass in chosen for g in by_pass[FIRST_PASS]]
        deployed = [g for by_pass in chosen for g in by_pass[DEPLOYED_PASS]]
        ratio = wer_ratio(deployed, recipe_rows) if paired else None
        stale = any(g.stale for by_pass in runs.values() for group in by_pass.values() for g in group)
        out.append(([recipe] if with_recipe else []) + [
            name + (f" {STALE}" if stale else ""), label, test_set, f"{len(paired)} of {n_recipe}",
            wer_cell(recipe_rows), wer_cell(deployed),
            DASH if ratio is None else f"{ratio:.2f}",
            DASH if ratio is None else ("yes" if ratio <= DEPLOYED_TARGET else "no"),
        ])
    return out


def run_rows(rows: list[Row], with_recipe: bool) -> list[list[str]]:
    """Every record on its own row."""
    out = []
    for row in sorted(rows, key=lambda g: (g.recipe, g.record["name"], g.record["fold"]["name"], str(g.record["seed"]),
                                           decode_label(g.record), g.record["test_set"])):
        r = row.record
        _, sub, dele, ins = row.counts
        git = r.get("git") or {}
        commit = (git.get("commit") or DASH)[:8] + ("+dirty" if git.get("dirty") else "")
        out.append(([row.recipe] if with_recipe else []) + [
            r["name"] + (f" {STALE}" if row.stale else ""),
            r["fold"]["name"] + ("*" if r["fold"].get("tuned_on") else ""),
            str(r["seed"]), decode_label(r), r["test_set"], f"{r['wer']:.2f}", f"{sub}/{dele}/{ins}",
            f"{r['cer']:.2f}", DASH if r.get("rtf") is None else f"{r['rtf']:.4f}", commit, r.get("date") or DASH,
        ])
    return out


def snr_cells(rows: list[Row]) -> list[tuple[str, str, str, str, str]]:
    """(experiment, decode dir, test set, folds x seeds, ``WER % (S/D/I)`` pooled over those runs) per
    (experiment, decode dir, test set), for the SNR table."""
    groups: dict[tuple[str, str, str], list[Row]] = {}
    for row in rows:
        r = row.record
        groups.setdefault((r["name"], decode_label(r), r["test_set"]), []).append(row)
    cells = []
    for (name, decode, test_set), group in groups.items():
        folds = {g.record["fold"]["name"] for g in group}
        seeds = {g.record["seed"] for g in group}
        sub, dele, ins = (sum(g.counts[k] for g in group) for k in (1, 2, 3))
        cells.append((name, decode, test_set, f"{len(folds)}x{len(seeds)}",
                      f"{pooled_wer(group):.2f} ({sub}/{dele}/{ins})"))
    return cells


def installed_version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return DASH


def environment(args: argparse.Namespace, rows: list[Row]) -> str:
    """The environment line: arguments first, then the newest record's env, then this interpreter."""
    newest = max(rows, key=lambda g: g.record.get("date") or "", default=None)
    env = newest.record.get("env") or {} if newest else {}
    python = args.python_version or env.get("python") or platform.python_version()
    torch = args.torch_version or env.get("torch") or installed_version("torch")
    date = args.date or (newest.record.get("date") if newest else None) or datetime.date.today().isoformat()
    return f"Environment: date {date}, python {python}, torch {torch}"


def render(command: str, env_line: str, rows: list[Row], with_recipe: bool) -> tuple[str, list[str]]:
    """The whole RESULTS.md, and the summary table's lines."""
    head = ["recipe"] if with_recipe else []
    summary = markdown_table(head + SUMMARY_COLUMNS, summary_rows(rows, with_recipe))
    lines = [
        "# Results",
        "",
        f"Generated by `{command}` from the run records (`records/*.jsonl`, echo_plugin.recipe.records). "
        "Do not edit this file by hand: rerun the command.",
        "",
        env_line,
        "",
        "WER is pooled over every run of a row (folds x seeds); `95% CI` is its interval over test speakers "
        "and their utterances (two-level bootstrap, 10000 draws, seeds averaged per utterance), given only where "
        "a row has two or more test speakers: a row of one speaker is an anecdote (`n/a`: its seeds decoded "
        "different utterances, see `compare`); `runs min-max` is the spread "
        f"of the runs' WERs. A row marked {STALE} was trained from a config that has changed since (its hash "
        "differs): rerun it. Folds marked * are the ones the recipe's choices were tuned on. `compare` and "
        "CLAIMS.md give intervals of differences (python -m echo_plugin.recipe.compare).",
        "",
        "## Summary",
        "",
        *summary,
        "",
    ]
    if not rows:
        lines += ["No run records found.", ""]
    else:
        lines += [
            "## Deployed model against the recipe's decode",
            "",
            "The packed model run on each file alone through `transcribe` (decode dir `<dir>_deployed`) against "
            "the recipe's first-pass decode `<dir>`, per experiment and test set. Both WERs are pooled over the "
            "`paired runs` (fold x seed decoded both ways, of the runs with a first-pass decode); where none is "
            "paired, each side is pooled over its own runs and the ratio is `-`. `deployed/recipe` divides the "
            "two WERs: 1.00 when both are 0, `inf` when only the recipe's is 0. The target (issue 19) is a "
            f"deployed WER at most {DEPLOYED_TARGET:g}x the first pass's; with few errors the ratio is noisy "
            "(read the error counts).",
            "",
            *markdown_table(head + DEPLOYED_COLUMNS, deployed_rows(rows, with_recipe)),
            "",
        ]
    lines += snr_section(snr_cells(rows))
    if rows:
        lines += ["## Runs", "", *markdown_table(head + RUN_COLUMNS, run_rows(rows, with_recipe)), ""]
    return "\n".join(lines), summary


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe_dir", type=Path, nargs="+", action="extend", required=True,
                        help="one or more recipe dirs (egs/<corpus>/asr1); may be repeated")
    parser.add_argument("--out", type=Path, default=None,
                        help="the Markdown file of all experiments (default: <recipe_dir>/RESULTS.md for one dir)")
    parser.add_argument("--recipe_results", type=str2bool, default=True,
                        help="with several recipe dirs, also rewrite each one's RESULTS.md (default true)")
    parser.add_argument("--date", default=None, help="date on the environment line (default: the newest record's)")
    parser.add_argument("--python_version", default=None, help="default: the newest record's, else this interpreter")
    parser.add_argument("--torch_version", default=None, help="default: the newest record's, else the installed torch")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    missing = [str(d) for d in args.recipe_dir if not d.is_dir()]
    if missing:
        print(f"results: error: recipe dir not found: {' '.join(missing)}", file=sys.stderr)
        return 1
    several = len(args.recipe_dir) > 1
    if args.out is None and not (several and args.recipe_results):
        if several:
            print("results: error: give --out, or leave --recipe_results true", file=sys.stderr)
            return 1
        args.out = args.recipe_dir[0] / "RESULTS.md"
    try:
        per_recipe = {recipe_dir: read_rows(recipe_dir) for recipe_dir in dict.fromkeys(args.recipe_dir)}
    except ValueError as e:
        print(f"results: error: {e}", file=sys.stderr)
        return 1
    rows = [row for own in per_recipe.values() for row in own]
    command = shlex.join(["python", "-m", "echo_plugin.recipe.results", *argv])
    env_line = environment(args, rows)
    if several and args.recipe_results:
        for recipe_dir, own in per_recipe.items():
            atomic_write_text(recipe_dir / "RESULTS.md", render(command, env_line, own, False)[0])
    text, summary = render(command, env_line, rows, several)
    if args.out is not None:
        atomic_write_text(args.out, text)
    print("\n".join(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
