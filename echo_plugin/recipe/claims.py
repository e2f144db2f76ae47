"""CLAIMS.md: each design claim next to the evidence the run records hold for it.

The spec (``egs/fsdd/asr1/conf/claims.yaml``) is a YAML list; each item::

    - claim: pitch-aware rotary beats standard rotary
      config: train_asr_echo_pitch_rope      # compared config (conf/tuning/ name without .yaml)
      baseline: train_asr_echo               # optional, this is the default
      expect: better                         # verdict of config vs baseline that supports the claim
      source: seed 04                        # where the claim comes from

Every claim is one comparison of echo_plugin.recipe.compare (two-level paired bootstrap
over the folds both configs have, errors averaged over seeds). One table per test set and
decode pass (first pass; then the speaker-adaptive second pass, ``decode.pass ==
"spkadapt"``, when records of it exist); the claims of a table that could be compared are
one Holm family. CLAIMS.md opens with a summary (a row per claim that ran: each test set's
effect and what it says), then the tables (the claims that ran), then one list of the claims
not run yet. The "supported" column reads the verdict against ``expect``:

* ``supported``: the verdict is ``expect``;
* ``contradicted``: the verdict is the opposite one (``better`` for ``worse`` and back);
* ``not shown at this budget``: no detectable difference with these folds and seeds;
* ``not run``: the records lack the config or the baseline here, or they share no fold;
* ``anecdote (k test speakers): points to <verdict>``: fewer than ``MIN_SPEAKERS`` test speakers
  in common (folds that share a test speaker count once). One speaker's bootstrap interval
  covers only the sampling of that speaker's utterances, not the speaker-to-speaker spread the
  claim is about, so it supports nothing.

    python -m echo_plugin.recipe.claims --records egs/fsdd/asr1/records \\
        --spec egs/fsdd/asr1/conf/claims.yaml --out egs/fsdd/asr1/CLAIMS.md [--n_boot 10000] [--seed 0]

The output depends only on the records, the spec and the options: the header names the
newest record's ``date`` field (records without one show "unknown"), not the clock.
Errors (records, spec) are one line ``claims: error: ...`` and exit status 2.
"""
from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from echo_plugin.recipe.bootstrap import BETTER, NO_DIFFERENCE, WORSE, holm, verdict
from echo_plugin.recipe.compare import (
    ALPHA,
    DEFAULT_BASELINE,
    FIRST_PASS,
    FoldRun,
    Pairing,
    RecordError,
    RunKey,
    average_seeds,
    fmt_diff,
    fmt_folds,
    fmt_num,
    fmt_p,
    fmt_rel,
    load_records,
    md_row,
    pair,
    pairing_notes,
    parse_record_args,
    record_parser,
    spread_section,
    tuned_footnote,
)
from echo_plugin.recipe.io import atomic_write_text
from echo_plugin.train.epoch_cpu import mean_in_one_setup

SPKADAPT_PASS = "spkadapt"
DEFAULT_TEST_SETS = ("test_connected", "test_isolated")
SUPPORTED, CONTRADICTED, NOT_SHOWN, NOT_RUN = "supported", "contradicted", "not shown at this budget", "not run"
PASS_TITLES = {FIRST_PASS: "First pass", SPKADAPT_PASS: "Speaker-adaptive second pass"}
SPEC_KEYS = {"claim", "config", "baseline", "expect", "source"}


class SpecError(ValueError):
    """A problem in the claims spec; one line."""


@dataclass(frozen=True)
class Claim:
    claim: str
    config: str
    baseline: str
    expect: str      # better | worse: the verdict of config vs baseline that supports the claim
    source: str


def load_spec(path: Path | str) -> list[Claim]:
    """The claims of a spec file; SpecError (one line, naming the item) on anything malformed."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise SpecError(f"{path}: {' '.join(str(err).split())}") from None
    if not isinstance(data, list) or not data:
        raise SpecError(f"{path}: expected a non-empty list of claims")
    claims = []
    for i, item in enumerate(data, start=1):
        where = f"{path}: claim {i}"
        if not isinstance(item, dict):
            raise SpecError(f"{where}: expected a mapping with claim, config, expect, source")
        unknown = sorted(set(item) - SPEC_KEYS)
        if unknown:
            raise SpecError(f"{where}: unknown key(s) {', '.join(map(str, unknown))}")
        for key in ("claim", "config", "expect"):
            if not isinstance(item.get(key), str) or not item[key].strip():
                raise SpecError(f"{where}: '{key}' must be a non-empty string")
        if item["expect"] not in (BETTER, WORSE):
            raise SpecError(f"{where}: expect must be '{BETTER}' or '{WORSE}', got '{item['expect']}'")
        baseline = item.get("baseline", DEFAULT_BASELINE)
        source = item.get("source", "")
        if not isinstance(baseline, str) or not isinstance(source, str):
            raise SpecError(f"{where}: 'baseline' and 'source' must be strings")
        if baseline == item["config"]:
            raise SpecError(f"{where}: config and baseline are both {baseline}")
        claims.append(Claim(item["claim"], item["config"], baseline, item["expect"], source))
    return claims


MIN_SPEAKERS = 3  # test speakers in common before a verdict counts as evidence


def support(verdict_: str | None, expect: str, n_speakers: int = MIN_SPEAKERS) -> str:
    """The "supported" column: the verdict of config vs baseline read against the claim's ``expect``
    (an anecdote when the comparison has fewer than ``MIN_SPEAKERS`` test speakers)."""
    if verdict_ is None:
        return NOT_RUN
    if n_speakers < MIN_SPEAKERS:
        return f"anecdote ({n_speakers} test speaker{'s' if n_speakers != 1 else ''}): points to {verdict_}"
    if verdict_ == expect:
        return SUPPORTED
    if verdict_ == NO_DIFFERENCE:
        return NOT_SHOWN
    return CONTRADICTED


@dataclass
class ClaimRow:
    claim: Claim
    pairing: Pairing
    adjusted_p: float | None = None
    verdict: str | None = None

    @property
    def supported(self) -> str:
        comparison = self.pairing.comparison
        return support(self.verdict, self.claim.expect, comparison.n_speakers if comparison else 0)


def evaluate(runs: dict[RunKey, FoldRun], claims: Sequence[Claim], pass_: str, test_set: str,
             n_boot: int = 10000, seed: int = 0, alpha: float = ALPHA) -> list[ClaimRow]:
    """One table's rows: each claim's comparison, Holm over the claims that could be compared."""
    cache: dict[tuple[str, str], Pairing] = {}
    rows = []
    for claim in claims:
        key = (claim.config, claim.baseline)
        if key not in cache:
            cache[key] = pair(runs, claim.config, claim.baseline, pass_, test_set, n_boot, seed)
        rows.append(ClaimRow(claim, cache[key]))
    ran = [r for r in rows if r.pairing.comparison is not None]
    for row, adj in zip(ran, holm([r.pairing.comparison.p_value for r in ran])):
        row.adjusted_p = adj
        row.verdict = verdict(row.pairing.comparison, adj, alpha)
    return rows


HEADER = ["claim", "config vs baseline", "expects", "folds x seeds", "WER config", "WER baseline",
          "effect (abs) [95% CI]", "effect (rel) [95% CI]", "Holm p", "verdict", "supported"]


def claim_label(claim: Claim) -> str:
    return claim.claim + (f" ({claim.source})" if claim.source else "")


def claims_table(rows: Sequence[ClaimRow]) -> list[str]:
    """One test set's table: the claims that ran (the others are listed once, under "Not run yet")."""
    ran = [row for row in rows if row.pairing.comparison is not None]
    if not ran:
        return ["No claim has records for this test set yet."]
    lines = [md_row(HEADER), md_row(["---"] * len(HEADER))]
    for row in ran:
        c, p = row.pairing.comparison, row.pairing
        names = f"`{row.claim.config}` vs `{row.claim.baseline}`"
        lines.append(md_row([claim_label(row.claim), names, row.claim.expect, fmt_folds(p), fmt_num(c.wer_a),
                             fmt_num(c.wer_b), fmt_diff(c), fmt_rel(c), fmt_p(row.adjusted_p), row.verdict,
                             row.supported]))
    pairings = list({id(r.pairing): r.pairing for r in rows}.values())
    lines += [""] + notes if (notes := pairing_notes(pairings)) else []
    lines += [""] + foot if (foot := tuned_footnote(pairings)) else []
    return lines


def trained_params(records: Sequence[dict]) -> dict[str, int]:
    """{config name: trained parameters} from the records that say (the largest where runs differ)."""
    params: dict[str, int] = {}
    for record in records:
        if isinstance(record.get("params"), int):
            name = record["config_name"]
            params[name] = max(params.get(name, 0), record["params"])
    return params


def fmt_params(params: dict[str, int], name: str) -> str:
    return f"{params[name] / 1e6:.2f}" if name in params else "?"


def cpu_per_epoch(records: Sequence[dict]) -> dict[str, tuple[float | None, str | None]]:
    """{config name: (mean training CPU seconds per epoch over its runs (fold, seed), their setup)} from the
    records that have the measurement (``train_cpu_seconds``: CPU time does not depend on what ran beside
    the training); (None, "mixed") for a config whose runs ran in different setups, which do not compare."""
    runs: dict[str, dict[tuple, tuple[float, str | None]]] = {}
    for record in records:
        cpu, epochs = record.get("train_cpu_seconds"), record.get("epochs")
        if isinstance(cpu, (int, float)) and isinstance(epochs, int) and epochs > 0:
            run = (record["fold"]["name"], record.get("seed"))  # a run's records (one per decode) count once
            runs.setdefault(record["config_name"], {})[run] = (cpu / epochs, record.get("train_cpu_setup"))
    return {name: mean_in_one_setup(list(per_run.values())) for name, per_run in runs.items()}


def fmt_cpu(cpu: dict[str, tuple[float | None, str | None]], config: str, baseline: str) -> str:
    """``config vs baseline`` CPU seconds per epoch; ? where unmeasured, mixed where setups differ."""
    def one(name: str) -> str:
        seconds, setup = cpu.get(name, (None, None))
        return "mixed" if setup == "mixed" else "?" if seconds is None else f"{seconds:.0f}"

    setups = {cpu[name][1] for name in (config, baseline) if name in cpu}
    return f"{one(config)} vs {one(baseline)}" + (" (different setups)" if len(setups) > 1 else "")


def summary_table(tables: dict[str, list[ClaimRow]], params: dict[str, int] | None = None,
                  cpu: dict[str, tuple[float | None, str | None]] | None = None) -> list[str]:
    """The claims that ran in any of a pass's tables, a row each: the parameters (M) and training CPU seconds
    per epoch of config and baseline, then per test set WER config vs baseline, the effect with its interval
    and what it says of the claim."""
    params, cpu = params or {}, cpu or {}
    test_sets = list(tables)
    claims = list(tables[test_sets[0]]) if test_sets else []
    header = ["claim", "config vs baseline", "params (M)", "train CPU s/epoch"] + test_sets
    lines = [md_row(header), md_row(["---"] * len(header))]
    for i, first in enumerate(claims):
        rows = [tables[t][i] for t in test_sets]
        if all(r.pairing.comparison is None for r in rows):
            continue
        cells = []
        for row in rows:
            c = row.pairing.comparison
            cells.append("-" if c is None else
                         f"{fmt_num(c.wer_a)} vs {fmt_num(c.wer_b)}, {fmt_diff(c)}, {fmt_folds(row.pairing)}: "
                         f"**{row.supported}**")
        config, baseline = first.claim.config, first.claim.baseline
        sizes = f"{fmt_params(params, config)} vs {fmt_params(params, baseline)}"
        lines.append(md_row([claim_label(first.claim), f"`{config}` vs `{baseline}`", sizes,
                             fmt_cpu(cpu, config, baseline), *cells]))
    return lines if len(lines) > 2 else ["No claim has records yet."]


def not_run_list(claims: Sequence[Claim], tables: dict[tuple[str, str], list[ClaimRow]]) -> list[str]:
    """Claims without a comparison in any table, a line each."""
    idle = [claim for i, claim in enumerate(claims)
            if all(rows[i].pairing.comparison is None for rows in tables.values())]
    return [f"- {claim_label(c)}: `{c.config}` vs `{c.baseline}`" for c in idle]


def newest_date(records: Sequence[dict]) -> str:
    """The largest ``date`` field of the records (ISO 8601 strings sort by time), else ``unknown``."""
    dates = [str(r["date"]) for r in records if r.get("date")]
    return max(dates) if dates else "unknown (the records carry no date field)"


Tables = dict[tuple[str, str], list[ClaimRow]]  # (pass, test set) -> one row per claim, in spec order


def passes_of(runs: dict[RunKey, FoldRun]) -> list[str]:
    """The first pass, then the speaker-adaptive one where records of it exist."""
    return [FIRST_PASS] + ([SPKADAPT_PASS] if any(k[1] == SPKADAPT_PASS for k in runs) else [])


def evaluate_tables(runs: dict[RunKey, FoldRun], claims: Sequence[Claim], test_sets: Sequence[str] = DEFAULT_TEST_SETS,
                    n_boot: int = 10000, seed: int = 0, alpha: float = ALPHA) -> Tables:
    """Every table's rows: each pass x test set."""
    return {(pass_, test_set): evaluate(runs, claims, pass_, test_set, n_boot, seed, alpha)
            for pass_ in passes_of(runs) for test_set in test_sets}


def support_counts(tables: Tables) -> dict[str, int]:
    """How many rows of the tables say each "supported" value (anecdotes counted as one kind)."""
    counts: dict[str, int] = {}
    for rows in tables.values():
        for row in rows:
            status = "anecdote" if row.supported.startswith("anecdote") else row.supported
            counts[status] = counts.get(status, 0) + 1
    return counts


def render(records: Sequence[dict], runs: dict[RunKey, FoldRun], claims: Sequence[Claim], command: str,
           test_sets: Sequence[str] = DEFAULT_TEST_SETS, n_boot: int = 10000, seed: int = 0,
           alpha: float = ALPHA, tables: Tables | None = None, spec_name: str = "the claims spec") -> str:
    """CLAIMS.md's text (``tables``: the evaluated rows, when the caller has them already; ``spec_name``:
    the spec file, named in the header)."""
    passes = passes_of(runs)
    tables = tables if tables is not None else evaluate_tables(runs, claims, test_sets, n_boot, seed, alpha)
    lines = [
        "# Claims and evidence",
        "",
        f"<!-- Generated file: edit {spec_name} and regenerate, do not edit by hand. -->",
        f"Generated by `{command}` from the run records; newest record: {newest_date(records)}.",
        "",
        "Each claim of the design notes is one comparison of the config with its baseline: a two-level paired "
        f"bootstrap ({n_boot} replicates, RNG seed {seed}; speakers, then utterances within speaker) over the "
        "folds both have, each utterance's errors averaged over the training seeds. Effect = WER config - WER "
        "baseline (points; relative: / WER baseline) with 95% percentile intervals; Holm-adjusted p over the "
        f"claims of the table that ran; verdict at alpha {alpha}. \"expects\" is the verdict that supports the "
        f"claim; \"{SUPPORTED}\" / \"{CONTRADICTED}\" when the verdict is that one / the opposite one, "
        f"\"{NOT_SHOWN}\" when no difference is detectable with these folds and seeds, \"{NOT_RUN}\" when the "
        "records lack either config (or they share no fold).",
        "",
    ]
    lines += ["## Summary (first pass)", "",
              "Each claim that has records: trained parameters (millions) and training CPU seconds per epoch (mean "
              "over the runs that measured it; ? where none did, mixed where they ran in different setups) of "
              "config and baseline, then per test set WER config vs baseline, the effect in points [95% CI], "
              "folds x seeds (config vs baseline), and what it says of the claim. The tables below give every "
              "number; RESULTS.md the training and decoding cost.", ""]
    lines += summary_table({t: tables[(FIRST_PASS, t)] for t in test_sets}, trained_params(records),
                           cpu_per_epoch(records)) + [""]
    for pass_ in passes:
        lines += [f"## {PASS_TITLES.get(pass_, pass_)}", ""]
        for test_set in test_sets:
            lines += [f"### {test_set} ({pass_} pass)", ""] + claims_table(tables[(pass_, test_set)]) + [""]
    idle = not_run_list(claims, tables)
    if idle:
        lines += [f"## Not run yet ({len(idle)} of {len(claims)} claims)", "",
                  "No records of the config, or of its baseline, on a common fold:", ""] + idle + [""]
    tuned = sorted({r.fold for r in runs.values() if r.tuned_on})
    if tuned:
        lines += [f"Folds tuned on (hyper-parameters chosen on them; starred above): {', '.join(tuned)}.", ""]
    baselines = sorted({c.baseline for c in claims}, key=lambda b: (b != DEFAULT_BASELINE, b))
    for baseline in baselines:
        for pass_ in passes:
            if any(k[0] == baseline and k[1] == pass_ for k in runs):
                lines += spread_section(runs, baseline, pass_, test_sets)
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = record_parser("claims", __doc__)
    parser.add_argument("--spec", type=Path, required=True, help="claims spec (YAML list)")
    parser.add_argument("--out", type=Path, default=None, help="write CLAIMS.md here (else print it)")
    parser.add_argument("--test_sets", nargs="+", default=list(DEFAULT_TEST_SETS))
    args = parse_record_args(parser, argv)
    command = f"python -m echo_plugin.recipe.claims --records {args.records} --spec {args.spec}"
    command += f" --out {args.out}" if args.out is not None else ""
    if list(args.test_sets) != list(DEFAULT_TEST_SETS):
        command += " --test_sets " + " ".join(args.test_sets)
    command += f" --decode_dir {args.decode_dir}" if args.decode_dir else ""
    command += f" --n_boot {args.n_boot} --seed {args.seed}"
    command += f" --alpha {args.alpha}" if args.alpha != ALPHA else ""
    try:
        claims = load_spec(args.spec)
        records = load_records(args.records)
        runs = average_seeds(records, args.decode_dir)
        tables = evaluate_tables(runs, claims, args.test_sets, args.n_boot, args.seed, args.alpha)
        text = render(records, runs, claims, command, args.test_sets, args.n_boot, args.seed, args.alpha, tables,
                      spec_name=str(args.spec))
        counts = support_counts(tables)
        if args.out is not None:
            atomic_write_text(args.out, text)
    except (SpecError, RecordError, OSError) as err:
        print(f"claims: error: {err}", file=sys.stderr)
        return 2
    if args.out is None:
        print(text, end="")
    else:
        print(f"claims: {args.out}: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
