"""Compare configs against a baseline from run records: paired bootstrap per test set, Holm-adjusted.

Run records are JSON lines files ``<records_dir>/*.jsonl``, one object per (experiment
run, decode dir, test set). The fields read here (others are ignored)::

    {"config_name": "train_asr_echo", "seed": 0,          # "name" where config_name is absent
     "fold": {"name": "test-lucas", "test": ["lucas"], "tuned_on": false, ...},
     "decode": {"dir": "decode_asr_ctc08_valid.acc.ave", "pass": "first"},
     "test_set": "test_connected",
     "utts": [[utt_id, speaker, n_ref_words, substitutions, deletions, insertions], ...]}

The config is ``config_name``, or ``name`` in records without it (echo_plugin.recipe.records
writes the config's file name there). Records are grouped by (config, decode pass, test set,
fold); within a group each
utterance's errors (S+D+I) are averaged over the seeds, whose reference word counts must
agree. A config is compared with the baseline on the folds both have (the others are
named under the table), by echo_plugin.recipe.bootstrap's two-level paired bootstrap
(speakers, then utterances within speaker). The p-values of one table (one test set) are
one Holm family. Folds whose ``fold.tuned_on`` is true (hyper-parameters were chosen on
them) are starred. After the tables, the baseline's spread: WER of each (fold, seed),
seed-to-seed and fold-to-fold standard deviations.

    python -m echo_plugin.recipe.compare --records egs/fsdd/asr1/records --baseline train_asr_echo \\
        [--configs a b ...] [--test_sets test_connected test_isolated] [--pass first] \\
        [--decode_dir DIR] [--n_boot 10000] [--seed 0] [--out compare.md]

A record file that cannot be read or a malformed record stops with one line
``compare: error: FILE:LINE: ...`` and exit status 2.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from echo_plugin.recipe.bootstrap import Comparison, Utts, holm, paired_bootstrap, spread, verdict
from echo_plugin.recipe.io import atomic_write_text
from echo_plugin.recipe.records import decode_label

DEFAULT_BASELINE = "train_asr_echo"
FIRST_PASS = "first"
SOURCE = "_source"          # key load_records adds: "file:line" of the record
ALPHA = 0.05


class RecordError(ValueError):
    """A record problem; the message is one line starting with ``file:line:`` where known."""


# ---------------------------------------------------------------- loading


def _check_record(rec: Any, where: str) -> None:
    """Raise RecordError unless ``rec`` has the fields this module reads, of the right types."""
    if not isinstance(rec, dict):
        raise RecordError(f"{where}: a record must be a JSON object, got {type(rec).__name__}")

    def need(obj: dict, key: str, kind: type | tuple[type, ...], name: str) -> Any:
        if key not in obj:
            raise RecordError(f"{where}: missing field '{name}'")
        value = obj[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise RecordError(f"{where}: field '{name}' has the wrong type ({type(value).__name__})")
        return value

    if "config_name" not in rec and isinstance(rec.get("name"), str):
        rec["config_name"] = rec["name"]
    need(rec, "config_name", str, "config_name")
    need(rec, "seed", int, "seed")
    need(rec, "test_set", str, "test_set")
    fold = need(rec, "fold", dict, "fold")
    need(fold, "name", str, "fold.name")
    if not isinstance(fold.get("tuned_on", False), bool):
        raise RecordError(f"{where}: field 'fold.tuned_on' must be true or false")
    decode = need(rec, "decode", dict, "decode")
    need(decode, "dir", str, "decode.dir")
    need(decode, "pass", str, "decode.pass")
    utts = need(rec, "utts", list, "utts")
    seen: set[str] = set()
    for i, row in enumerate(utts):
        if isinstance(row, list) and len(row) == 6 and row[1] is None:
            raise RecordError(f"{where}: utts[{i}] ('{row[0]}') has no speaker (not in the test set's utt2spk?)")
        if not (isinstance(row, list) and len(row) == 6 and isinstance(row[0], str) and isinstance(row[1], str)
                and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in row[2:])):
            raise RecordError(f"{where}: utts[{i}] is not [utt_id, speaker, n_ref, S, D, I] "
                              "(counts non-negative integers)")
        if row[0] in seen:
            raise RecordError(f"{where}: utterance '{row[0]}' listed twice")
        seen.add(row[0])


def load_records(records_dir: Path | str) -> list[dict]:
    """Every record of ``records_dir/*.jsonl`` (files in name order), each with ``_source`` = ``file:line``.

    Blank lines are skipped. Raises RecordError (``file:line: ...``) on a line that is not
    JSON or lacks a field this module reads, and when there is no record at all.
    """
    records_dir = Path(records_dir)
    if not records_dir.is_dir():
        raise RecordError(f"{records_dir}: no such records directory")
    records = []
    for path in sorted(records_dir.glob("*.jsonl")):
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise RecordError(f"{path}: cannot read: {err}") from None
        for lineno, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as err:
                raise RecordError(f"{where}: not valid JSON ({err.msg}, column {err.colno})") from None
            _check_record(rec, where)
            rec[SOURCE] = where
            records.append(rec)
    if not records:
        raise RecordError(f"{records_dir}: no records (*.jsonl)")
    return records


# ---------------------------------------------------------------- grouping and seed averaging


@dataclass
class FoldRun:
    """The records of one (config, decode pass, test set, fold), its utterance errors averaged over seeds."""

    config: str
    pass_: str
    test_set: str
    fold: str
    tuned_on: bool
    seed_wer: dict[int, float]                          # pooled WER of each seed's record
    utts: dict[str, tuple[str, int, float]]             # utt_id -> (speaker, n_ref, mean errors)
    sources: dict[int, str] = field(default_factory=dict)
    decode: str = ""                                    # decode dir [normaliser], the same for every seed

    @property
    def seeds(self) -> list[int]:
        return sorted(self.seed_wer)


RunKey = tuple[str, str, str, str]   # (config, pass, test set, fold)


def average_seeds(records: Iterable[dict], decode_dir: str | None = None) -> dict[RunKey, FoldRun]:
    """Group records by (config, pass, test set, fold) and average each utterance's errors over seeds.

    ``decode_dir``: keep only records of that decode dir (and of its second passes,
    ``<decode_dir>_<pass>``, e.g. ``..._spkadapt``). Raises RecordError when a
    (config, pass, test set, fold, seed) has two records, when the seeds of a group
    decoded different utterances, or when an utterance's reference word count differs
    between seeds, or when its seeds were trained from different configs (config hashes) or decoded
    differently (decode dir or scoring normaliser): averaging those would mix two systems.
    """
    grouped: dict[RunKey, dict[int, dict]] = {}
    for rec in records:
        if decode_dir is not None and rec["decode"]["dir"] not in (decode_dir,
                                                                   f"{decode_dir}_{rec['decode']['pass']}"):
            continue
        key = (rec["config_name"], rec["decode"]["pass"], rec["test_set"], rec["fold"]["name"])
        seeds = grouped.setdefault(key, {})
        other = seeds.get(rec["seed"])
        if other is not None:
            where = rec.get(SOURCE, "record")
            if other["decode"]["dir"] != rec["decode"]["dir"]:
                raise RecordError(
                    f"{where}: {key[0]} seed {rec['seed']} {key[2]} fold {key[3]} ({key[1]} pass) has two decode "
                    f"dirs, {other['decode']['dir']} ({other.get(SOURCE)}) and {rec['decode']['dir']}; "
                    "choose one with --decode_dir")
            raise RecordError(f"{where}: {key[0]} seed {rec['seed']} {key[2]} fold {key[3]} ({key[1]} pass, "
                              f"{rec['decode']['dir']}) is recorded twice (also {other.get(SOURCE)})")
        seeds[rec["seed"]] = rec

    runs = {}
    for key, by_seed in grouped.items():
        runs[key] = _fold_run(key, by_seed)
    return runs


def _fold_run(key: RunKey, by_seed: dict[int, dict]) -> FoldRun:
    config, pass_, test_set, fold = key
    seeds = sorted(by_seed)
    first = by_seed[seeds[0]]
    ref = {row[0]: (row[1], row[2]) for row in first["utts"]}
    sums = {u: 0.0 for u in ref}
    seed_wer, sources = {}, {}
    for seed in seeds:
        rec = by_seed[seed]
        where = rec.get(SOURCE, "record")
        for what, value in (("config hash", _hash), ("decode", decode_label)):
            if value(rec) != value(first):
                raise RecordError(f"{where}: {config} seed {seed} {test_set} fold {fold}: {what} {value(rec)} differs "
                                  f"from seed {seeds[0]}'s {value(first)} ({first.get(SOURCE)}); one system per "
                                  "row: re-run the stale seed or move its record out of the records dir")
        rows = {row[0]: row for row in rec["utts"]}
        missing, extra = sorted(set(ref) - set(rows)), sorted(set(rows) - set(ref))
        if missing or extra:
            example, side = (missing[0], "lacks") if missing else (extra[0], "adds")
            raise RecordError(f"{where}: {config} seed {seed} {test_set} fold {fold}: decoded utterances differ "
                              f"from seed {seeds[0]}'s ({first.get(SOURCE)}): {len(missing)} missing, "
                              f"{len(extra)} extra; it {side} '{example}'")
        errors = words = 0
        for utt, (_u, _spk, n_ref, sub, dele, ins) in rows.items():
            if n_ref != ref[utt][1]:
                raise RecordError(f"{where}: utterance '{utt}' ({config} {test_set} fold {fold}): {n_ref} reference "
                                  f"words in seed {seed}, {ref[utt][1]} in seed {seeds[0]} ({first.get(SOURCE)})")
            e = sub + dele + ins
            sums[utt] += e
            errors += e
            words += n_ref
        seed_wer[seed] = 100.0 * errors / words if words else math.nan
        sources[seed] = where
    utts = {u: (ref[u][0], ref[u][1], sums[u] / len(seeds)) for u in ref}
    tuned = any(bool(r["fold"].get("tuned_on", False)) for r in by_seed.values())
    return FoldRun(config, pass_, test_set, fold, tuned, seed_wer, utts, sources, decode_label(first))


def _hash(record: dict) -> str:
    return str(record.get("config_hash") or "unknown")


def bootstrap_input(runs: Iterable[FoldRun]) -> dict[str, Utts]:
    """speaker -> Utts over these folds; utterance ids become ``fold/utt`` so folds never collide.

    A speaker tested in several folds stays one cluster (all its utterances together).
    """
    by_spk: dict[str, dict[str, tuple[float, int]]] = {}
    for run in runs:
        for utt, (spk, n_ref, errors) in run.utts.items():
            by_spk.setdefault(spk, {})[f"{run.fold}/{utt}"] = (errors, n_ref)
    return {spk: Utts.from_dict(utts) for spk, utts in sorted(by_spk.items())}


# ---------------------------------------------------------------- one comparison


@dataclass
class Pairing:
    """A config against a baseline on one (pass, test set): the folds used and the bootstrap result."""

    config: str
    baseline: str
    pass_: str
    test_set: str
    common: list[str]
    only_config: list[str]
    only_baseline: list[str]
    config_seeds: list[int]            # number of seeds of each common fold
    baseline_seeds: list[int]
    tuned: list[str]                   # common folds marked tuned_on
    comparison: Comparison | None      # None: not run or no common fold
    config_decodes: list[str] = field(default_factory=list)    # decode labels of the common folds, sorted
    baseline_decodes: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        """``ok``, ``not run`` (a side has no record here) or ``no common folds``."""
        if self.comparison is not None:
            return "ok"
        if not (self.common or self.only_config) or not (self.common or self.only_baseline):
            return "not run"
        return "no common folds"


def folds_of(runs: dict[RunKey, FoldRun], config: str, pass_: str, test_set: str) -> dict[str, FoldRun]:
    return {k[3]: r for k, r in runs.items() if k[:3] == (config, pass_, test_set)}


def pair(runs: dict[RunKey, FoldRun], config: str, baseline: str, pass_: str, test_set: str,
         n_boot: int = 10000, seed: int = 0) -> Pairing:
    """Compare ``config`` with ``baseline`` on the folds of (pass, test set) both have."""
    mine, theirs = folds_of(runs, config, pass_, test_set), folds_of(runs, baseline, pass_, test_set)
    common = sorted(set(mine) & set(theirs))
    comparison = None
    if common:
        try:
            comparison = paired_bootstrap(bootstrap_input(mine[f] for f in common),
                                          bootstrap_input(theirs[f] for f in common), n_boot=n_boot, seed=seed)
        except ValueError as err:
            raise RecordError(f"{config} vs {baseline}, {test_set} ({pass_} pass): {err}") from None
    return Pairing(
        config, baseline, pass_, test_set, common,
        sorted(set(mine) - set(theirs)), sorted(set(theirs) - set(mine)),
        [len(mine[f].seed_wer) for f in common], [len(theirs[f].seed_wer) for f in common],
        [f for f in common if mine[f].tuned_on or theirs[f].tuned_on], comparison,
        sorted({mine[f].decode for f in common}), sorted({theirs[f].decode for f in common}),
    )


# ---------------------------------------------------------------- formatting


def fmt_num(x: float, digits: int = 2, sign: bool = False) -> str:
    if x is None or math.isnan(x):
        return "n/a"
    if math.isinf(x):
        return "+inf" if x > 0 else "-inf"
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def fmt_p(p: float) -> str:
    if p is None or not math.isfinite(p):
        return "n/a"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def fmt_diff(c: Comparison) -> str:
    return f"{fmt_num(c.diff, sign=True)} [{fmt_num(c.ci_low, sign=True)}, {fmt_num(c.ci_high, sign=True)}]"


def fmt_rel(c: Comparison) -> str:
    if not math.isfinite(c.rel):
        return "n/a"
    return (f"{fmt_num(c.rel, 1, True)}% [{fmt_num(c.rel_ci_low, 1, True)}, "
            f"{fmt_num(c.rel_ci_high, 1, True)}]")


def _seeds(counts: Sequence[int]) -> str:
    lo, hi = min(counts), max(counts)
    return str(lo) if lo == hi else f"{lo}-{hi}"


def fmt_folds(p: Pairing) -> str:
    """``5x1 vs 5x3`` (common folds x seeds, config vs baseline), ``*`` when a fold was tuned on."""
    if not p.common:
        return p.status
    n = len(p.common)
    star = " *" if p.tuned else ""
    return f"{n}x{_seeds(p.config_seeds)} vs {n}x{_seeds(p.baseline_seeds)}{star}"


def md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def pairing_notes(pairings: Iterable[Pairing]) -> list[str]:
    """Bullet lines: folds one side lacks (left out), decodes that differ, utterances one side lacks (left out)."""
    notes = []
    for p in pairings:
        if p.status == "no common folds":
            notes.append(f"- `{p.config}` vs `{p.baseline}`: no common folds (`{p.config}` has "
                         f"{', '.join(p.only_config)}; `{p.baseline}` has {', '.join(p.only_baseline)})")
        if p.comparison is None:
            continue
        if p.only_config or p.only_baseline:
            parts = []
            if p.only_config:
                parts.append(f"only `{p.config}` has {', '.join(p.only_config)}")
            if p.only_baseline:
                parts.append(f"only `{p.baseline}` has {', '.join(p.only_baseline)}")
            notes.append(f"- `{p.config}` vs `{p.baseline}`: unpaired folds left out ({'; '.join(parts)})")
        if p.config_decodes != p.baseline_decodes:
            notes.append(f"- `{p.config}` vs `{p.baseline}`: decoded differently (`{p.config}`: "
                         f"{', '.join(p.config_decodes)}; `{p.baseline}`: {', '.join(p.baseline_decodes)})")
        if p.comparison.n_unpaired_utts:
            notes.append(f"- `{p.config}` vs `{p.baseline}`: {p.comparison.n_unpaired_utts} utterances decoded "
                         "by only one of the two, left out")
    return notes


def tuned_footnote(pairings: Iterable[Pairing]) -> list[str]:
    tuned = sorted({f for p in pairings for f in p.tuned})
    if not tuned:
        return []
    return [f"\\* includes folds whose hyper-parameters were tuned on them (`fold.tuned_on`): "
            f"{', '.join(tuned)}; their WERs are optimistic."]


def method_lines(n_boot: int, seed: int, alpha: float) -> list[str]:
    return [
        f"Two-level paired bootstrap ({n_boot} replicates, RNG seed {seed}): speakers drawn with replacement, "
        "then utterances within each drawn speaker, the same draws for both systems; each utterance's errors "
        "are first averaged over the training seeds. Only the folds both configs have are used. "
        "diff = WER config - WER baseline in points, relative = diff / WER baseline, each with its 95% "
        f"percentile interval; p two-sided; Holm-adjusted over the rows of the table; verdict at alpha {alpha} "
        "on the adjusted p (\"better\": the config has fewer errors).",
        "",
    ]


COMPARE_HEADER = ["config", "folds x seeds", "WER config", "WER baseline", "diff [95% CI]", "relative [95% CI]",
                  "p", "Holm p", "verdict"]


def compare_table(pairings: list[Pairing], alpha: float = ALPHA) -> list[str]:
    """One test set's Markdown table (Holm over its compared rows), then notes and footnote."""
    ran = [p for p in pairings if p.comparison is not None]
    adjusted = dict(zip((id(p) for p in ran), holm([p.comparison.p_value for p in ran])))
    lines = [md_row(COMPARE_HEADER), md_row(["---"] * len(COMPARE_HEADER))]
    for p in pairings:
        c = p.comparison
        if c is None:
            lines.append(md_row([f"`{p.config}`", p.status] + ["-"] * 6 + [p.status]))
            continue
        adj = adjusted[id(p)]
        lines.append(md_row([f"`{p.config}`", fmt_folds(p), fmt_num(c.wer_a), fmt_num(c.wer_b), fmt_diff(c),
                             fmt_rel(c), fmt_p(c.p_value), fmt_p(adj), verdict(c, adj, alpha)]))
    lines += [""] + notes if (notes := pairing_notes(pairings)) else []
    lines += [""] + foot if (foot := tuned_footnote(pairings)) else []
    return lines


def spread_section(runs: dict[RunKey, FoldRun], baseline: str, pass_: str, test_sets: Sequence[str],
                   level: str = "##") -> list[str]:
    """The baseline's WER per (fold, seed) and its seed-to-seed and fold-to-fold spread, per test set."""
    lines = [f"{level} Baseline spread: `{baseline}` ({pass_} pass)", ""]
    any_rows = False
    for test_set in test_sets:
        folds = folds_of(runs, baseline, pass_, test_set)
        if not folds:
            continue
        any_rows = True
        seeds = sorted({s for r in folds.values() for s in r.seed_wer})
        header = ["fold"] + [f"seed {s}" for s in seeds] + ["mean"]
        lines += [f"{level}# {test_set}", "", md_row(header), md_row(["---"] * len(header))]
        per = {}
        for name in sorted(folds):
            run = folds[name]
            per.update({(name, s): w for s, w in run.seed_wer.items()})
            cells = [fmt_num(run.seed_wer[s]) if s in run.seed_wer else "-" for s in seeds]
            mean = sum(run.seed_wer.values()) / len(run.seed_wer)
            lines.append(md_row([name + (" *" if run.tuned_on else "")] + cells + [fmt_num(mean)]))
        sp = spread(per)
        n_multi = sum(1 for r in folds.values() if len(r.seed_wer) >= 2)
        lines.append("")
        if sp.seed_std is None:
            lines.append("- seed-to-seed spread: n/a (one seed per fold)")
        else:
            lines.append(f"- seed-to-seed spread: std {fmt_num(sp.seed_std)} points (mean over the {n_multi} folds "
                         f"with 2+ seeds), max-min {fmt_num(sp.seed_range)} (mean; largest "
                         f"{fmt_num(sp.seed_range_max)})")
        if sp.fold_std is None:
            lines.append("- fold-to-fold spread: n/a (one fold)")
        else:
            lines.append(f"- fold-to-fold spread: std {fmt_num(sp.fold_std)} points across the {len(folds)} "
                         "fold means")
        tuned = sorted(f for f, r in folds.items() if r.tuned_on)
        if tuned:
            lines.append(f"- \\* tuned on: {', '.join(tuned)}")
        lines.append("")
    if not any_rows:
        lines += [f"No records of `{baseline}` ({pass_} pass).", ""]
    return lines


def test_sets_of(runs: dict[RunKey, FoldRun], pass_: str) -> list[str]:
    return sorted({k[2] for k in runs if k[1] == pass_})


def render(runs: dict[RunKey, FoldRun], baseline: str, configs: Sequence[str], test_sets: Sequence[str],
           pass_: str = FIRST_PASS, n_boot: int = 10000, seed: int = 0, alpha: float = ALPHA) -> str:
    """The whole comparison report (Markdown)."""
    lines = [f"# WER against `{baseline}` ({pass_} pass)", ""] + method_lines(n_boot, seed, alpha)
    for test_set in test_sets:
        pairings = [pair(runs, c, baseline, pass_, test_set, n_boot, seed) for c in configs]
        lines += [f"## {test_set}", ""] + compare_table(pairings, alpha) + [""]
    lines += spread_section(runs, baseline, pass_, test_sets)
    return "\n".join(lines).rstrip("\n") + "\n"


# ---------------------------------------------------------------- CLI


def record_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """A parser holding the options of every report over the run records: --records and --decode_dir
    (which records), --n_boot, --seed and --alpha (the bootstrap's)."""
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=Path, required=True, help="directory of run records (*.jsonl)")
    parser.add_argument("--decode_dir", default=None,
                        help="only records of this decode dir (and its second passes, DIR_spkadapt)")
    parser.add_argument("--n_boot", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=0, help="bootstrap RNG seed")
    parser.add_argument("--alpha", type=float, default=ALPHA)
    return parser


def parse_record_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """``argv`` parsed by a :func:`record_parser`; a usage error (exit 2) unless --n_boot is positive."""
    args = parser.parse_args(argv)
    if args.n_boot < 1:
        parser.error("--n_boot must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    parser = record_parser("compare", __doc__)
    parser.add_argument("--baseline", default=DEFAULT_BASELINE)
    parser.add_argument("--configs", nargs="+", default=None,
                        help="configs to compare (default: every other config in the records)")
    parser.add_argument("--test_sets", nargs="+", default=None, help="default: every test set of the pass")
    parser.add_argument("--pass", dest="pass_", default=FIRST_PASS, help="decode pass (first, spkadapt)")
    parser.add_argument("--out", type=Path, default=None, help="also write the report here")
    args = parse_record_args(parser, argv)
    try:
        runs = average_seeds(load_records(args.records), args.decode_dir)
        if not any(k[0] == args.baseline and k[1] == args.pass_ for k in runs):
            raise RecordError(f"{args.records}: no records of the baseline {args.baseline} ({args.pass_} pass)")
        configs = args.configs or sorted({k[0] for k in runs if k[1] == args.pass_} - {args.baseline})
        test_sets = args.test_sets or test_sets_of(runs, args.pass_)
        text = render(runs, args.baseline, configs, test_sets, args.pass_, args.n_boot, args.seed, args.alpha)
        if args.out is not None:
            atomic_write_text(args.out, text)
    except (RecordError, OSError) as err:
        print(f"compare: error: {err}", file=sys.stderr)
        return 2
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
