"""Stage 7: score a decode dir's hypotheses against the references with jiwer.

    python -m echo_plugin.recipe.score --ref data/test/text \
        --hyp exp/<tag>/decode_<cfg>/test/text --out_dir exp/<tag>/decode_<cfg>/test/score \
        [--decode_seconds exp/<tag>/decode_<cfg>/test/decode_seconds \
         --utt2dur dump/raw/test/utt2dur] [--normalizer none|whisper|whisper_digits]

Transcripts are compared as written (case-sensitive) after collapsing runs
of whitespace (``--normalizer none``, the default), or after a normaliser applied
to both sides: ``whisper`` is openai-whisper's ``EnglishTextNormalizer`` (Whisper's
own evaluation: lower case, no punctuation, numbers as digits, so ``5.`` and ``FIVE``
agree), ``whisper_digits`` that and then every digit string spelled digit by digit
(``12`` -> ``one two``: for digit corpora, where ``ONE TWO`` and ``1, 2`` must agree;
:mod:`echo_plugin.text.whisper_normalize`). Word measures split at spaces. Character
measures follow ESPnet's convention: every character is a token and each space is
the token ``<space>``, so a missing space counts as one deletion.

A reference utterance without a hypothesis is scored against an empty
hypothesis (all deletions) and listed in a warning; a hypothesis for an
utterance not in ``--ref``, a duplicate id or an empty reference (also one the
normaliser empties) is an error (exit 1). ``--decode_seconds`` holds one number per line (one per decoding
job); their sum over the ``--utt2dur`` seconds of the reference utterances
is the real-time factor.

Writes ``<out_dir>/scores.json``::

    {"wer": {n_sentences, n_tokens, correct, substitutions, deletions,
             insertions, error_rate, sentence_error_rate},
     "cer": {... the same ...}, "rtf", "decode_seconds", "audio_seconds",
     "missing_hypotheses": [uttid, ...], "ref", "hyp", "normalizer",
     "utterances": [[uttid, ref words, S, D, I], ...]}

(rates in %, 2 decimals; rtf, decode_seconds and audio_seconds are null
without the two optional files) and ``<out_dir>/result.txt``: the totals and
the word alignment of every utterance with an error.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jiwer

from echo_plugin.recipe.data_dir import (
    DataDirError,
    fault,
    read_numbers,
    read_table,
    report_faults,
)
from echo_plugin.recipe.io import atomic_write_text

SHOWN_MISSING = 20


def _whisper() -> Callable[[str], str]:
    from echo_plugin.text.whisper_normalize import whisper_english

    return whisper_english()


def _whisper_digits() -> Callable[[str], str]:
    from echo_plugin.text.whisper_normalize import whisper_english_digits

    return whisper_english_digits()


NORMALIZERS: dict[str, Callable[[], Callable[[str], str]] | None] = {
    "none": None,
    "whisper": _whisper,
    "whisper_digits": _whisper_digits,
}
"""``--normalizer`` name -> a factory of the function applied to references and hypotheses (None: as written)."""
TABLE_HEADER = ["|dataset|Snt|Wrd|Corr|Sub|Del|Ins|Err|S.Err|", "|---|---|---|---|---|---|---|---|---|"]


@dataclass
class Pairs:
    """Reference and hypothesis transcripts, aligned by utterance id."""

    uttids: list[str]
    refs: list[str]
    hyps: list[str]
    missing: list[str]  # reference utterances without a hypothesis


def normalize(text: str) -> str:
    """Collapse whitespace runs to one space and strip the ends."""
    return " ".join(text.split())


def char_tokens(text: str) -> str:
    """ESPnet's character tokens, space separated, with a space as ``<space>``."""
    return " ".join("<space>" if c == " " else c for c in normalize(text))


def read_pairs(ref_path: Path, hyp_path: Path) -> Pairs:
    """Pair the transcripts; DataDirError for unknown hypotheses or empty references."""
    refs, hyps = read_table(ref_path), read_table(hyp_path)
    unknown = sorted(hyps.keys() - refs.keys())
    faults = [fault(hyp_path, u, f"hypothesis for an utterance not in {ref_path}") for u in unknown]
    faults += [fault(ref_path, u, "empty reference transcript") for u in sorted(refs) if not normalize(refs[u])]
    if not refs:
        faults.append(f"{ref_path}: no utterances")
    if faults:
        raise DataDirError(faults)
    uttids = sorted(refs)
    return Pairs(
        uttids,
        [normalize(refs[u]) for u in uttids],
        [normalize(hyps.get(u, "")) for u in uttids],
        sorted(refs.keys() - hyps.keys()),
    )


def apply_normalizer(pairs: Pairs, name: str, ref_path: Path) -> Pairs:
    """References and hypotheses through the ``name`` normaliser; DataDirError for references it empties."""
    factory = NORMALIZERS[name]
    if factory is None:
        return pairs
    norm = factory()
    refs = [normalize(norm(r)) for r in pairs.refs]
    emptied = [fault(ref_path, u, f"reference '{r}' is empty after the {name} normalizer")
               for u, r, n in zip(pairs.uttids, pairs.refs, refs) if not n]
    if emptied:
        raise DataDirError(emptied)
    return Pairs(pairs.uttids, refs, [normalize(norm(h)) for h in pairs.hyps], pairs.missing)


def measures(refs: list[str], hyps: list[str]) -> tuple[dict, jiwer.WordOutput]:
    """The scores.json measures of token strings, and jiwer's alignment output."""
    out = jiwer.process_words(refs, hyps)
    n_tokens = out.hits + out.substitutions + out.deletions
    errors = out.substitutions + out.deletions + out.insertions
    wrong_sentences = sum(r.split() != h.split() for r, h in zip(refs, hyps))
    return {
        "n_sentences": len(refs),
        "n_tokens": n_tokens,
        "correct": out.hits,
        "substitutions": out.substitutions,
        "deletions": out.deletions,
        "insertions": out.insertions,
        "error_rate": round(100 * errors / n_tokens, 2),
        "sentence_error_rate": round(100 * wrong_sentences / len(refs), 2),
    }, out


def utterance_errors(uttids: list[str], words: jiwer.WordOutput) -> list[list]:
    """[utt id, reference words, substitutions, deletions, insertions] per utterance of the alignment."""
    rows = []
    for uttid, ref, chunks in zip(uttids, words.references, words.alignments):
        count = {"substitute": 0, "delete": 0, "insert": 0}
        for c in chunks:
            if c.type in count:
                if c.type == "insert":
                    count[c.type] += c.hyp_end_idx - c.hyp_start_idx
                else:
                    count[c.type] += c.ref_end_idx - c.ref_start_idx
        rows.append([uttid, len(ref), count["substitute"], count["delete"], count["insert"]])
    return rows


def audio_seconds(utt2dur: Path, uttids: list[str]) -> float:
    """Total duration of ``uttids``; DataDirError naming any utterance utt2dur lacks."""
    durations = read_table(utt2dur)
    missing = [fault(utt2dur, u, "no duration") for u in uttids if u not in durations]
    if missing:
        raise DataDirError(missing)
    return sum(float(durations[u]) for u in uttids)


def table_row(label: str, m: dict) -> str:
    """One ESPnet-style detailed row: counts, then % of reference tokens / sentences."""

    def pct(count: int) -> str:
        return f"{100 * count / m['n_tokens']:.1f}"

    return (
        f"|{label}|{m['n_sentences']}|{m['n_tokens']}|{pct(m['correct'])}|{pct(m['substitutions'])}"
        f"|{pct(m['deletions'])}|{pct(m['insertions'])}|{m['error_rate']:.1f}|{m['sentence_error_rate']:.1f}|"
    )


def render_alignment(uttid: str, ref: list[str], hyp: list[str], chunks: list) -> str:
    """REF/HYP/EVAL lines for one utterance (``***`` marks a gap, S/D/I the errors)."""
    columns: list[tuple[str, str, str]] = []
    for c in chunks:
        r, h = ref[c.ref_start_idx : c.ref_end_idx], hyp[c.hyp_start_idx : c.hyp_end_idx]
        if c.type == "equal":
            columns += [(w, w, "") for w in r]
        elif c.type == "substitute":
            columns += [(a, b, "S") for a, b in zip(r, h)]
        elif c.type == "delete":
            columns += [(a, "***", "D") for a in r]
        else:
            columns += [("***", b, "I") for b in h]
    widths = [max(len(a), len(b)) for a, b, _ in columns]
    lines = [f"id: {uttid}"]
    for name, k in (("REF", 0), ("HYP", 1), ("EVAL", 2)):
        lines.append(f"{name + ':':5} " + " ".join(col[k].ljust(w) for col, w in zip(columns, widths)).rstrip())
    return "\n".join(lines)


def result_text(scores: dict, pairs: Pairs, words: jiwer.WordOutput) -> str:
    """The human-readable report: totals, missing hypotheses, alignments of wrong utterances."""
    lines = [
        f"reference:  {scores['ref']}",
        f"hypothesis: {scores['hyp']}",
        f"normalizer: {scores['normalizer']}",
        "",
        *TABLE_HEADER,
        table_row("WER", scores["wer"]),
        table_row("CER", scores["cer"]),
        "",
        f"RTF: {scores['rtf'] if scores['rtf'] is not None else '-'}",
    ]
    if pairs.missing:
        lines += ["", f"Missing hypotheses, scored as empty ({len(pairs.missing)}): {' '.join(pairs.missing)}"]
    wrong = [i for i, (r, h) in enumerate(zip(words.references, words.hypotheses)) if r != h]
    lines += ["", f"Utterances with errors ({len(wrong)}), word alignment:"]
    for i in wrong:
        lines += ["", render_alignment(pairs.uttids[i], words.references[i], words.hypotheses[i], words.alignments[i])]
    return "\n".join(lines) + "\n"


def score(args: argparse.Namespace) -> tuple[dict, Pairs, jiwer.WordOutput]:
    """Compute scores.json's content for the arguments."""
    pairs = apply_normalizer(read_pairs(args.ref, args.hyp), args.normalizer, args.ref)
    wer, words = measures(pairs.refs, pairs.hyps)
    cer, _ = measures([char_tokens(r) for r in pairs.refs], [char_tokens(h) for h in pairs.hyps])
    decode = sum(read_numbers(args.decode_seconds)) if args.decode_seconds else None
    audio = audio_seconds(args.utt2dur, pairs.uttids) if args.utt2dur else None
    scores = {
        "wer": wer,
        "cer": cer,
        "rtf": round(decode / audio, 4) if decode is not None and audio else None,
        "decode_seconds": decode,
        "audio_seconds": round(audio, 3) if audio is not None else None,
        "missing_hypotheses": pairs.missing,
        "ref": str(args.ref),
        "hyp": str(args.hyp),
        "normalizer": args.normalizer,
        "utterances": utterance_errors(pairs.uttids, words),
    }
    return scores, pairs, words


def warn_missing(missing: list[str], hyp: Path) -> None:
    """One warning line listing reference utterances without a hypothesis."""
    shown = " ".join(missing[:SHOWN_MISSING]) + (" ..." if len(missing) > SHOWN_MISSING else "")
    print(f"score: warning: {hyp}: {len(missing)} utterances have no hypothesis, scored as empty: {shown}",
          file=sys.stderr)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ref", type=Path, required=True, help="Kaldi text file of references")
    parser.add_argument("--hyp", type=Path, required=True, help="Kaldi text file of hypotheses")
    parser.add_argument("--out_dir", type=Path, required=True, help="where scores.json and result.txt go")
    parser.add_argument("--decode_seconds", type=Path, default=None, help="decoding seconds, one per line")
    parser.add_argument("--utt2dur", type=Path, default=None, help="utterance durations, for the RTF")
    parser.add_argument("--normalizer", choices=sorted(NORMALIZERS), default="none",
                        help="text normaliser for both sides (default none: as written; see above)")
    args = parser.parse_args(argv)
    if (args.decode_seconds is None) != (args.utt2dur is None):
        parser.error("--decode_seconds and --utt2dur go together")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        scores, pairs, words = score(args)
    except DataDirError as e:
        return report_faults("score", e.faults)
    except (OSError, ValueError, ImportError) as e:
        return report_faults("score", [str(e)])
    if pairs.missing:
        warn_missing(pairs.missing, args.hyp)
    atomic_write_text(args.out_dir / "scores.json", json.dumps(scores, indent=2) + "\n")
    atomic_write_text(args.out_dir / "result.txt", result_text(scores, pairs, words))
    name = args.hyp.parent.name
    print("\n".join([*TABLE_HEADER, table_row(f"{name} WER", scores["wer"]), table_row(f"{name} CER", scores["cer"])]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
