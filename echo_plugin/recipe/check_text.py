"""Check that every transcript can be written with a token list.

    python -m echo_plugin.recipe.check_text --text data/dev/text \
        --token_list data/token_list/char/tokens.txt --token_type char|bpe \
        [--bpemodel data/token_list/bpe_unigram30/bpe.model] \
        [--non_linguistic_symbols data/nlsyms.txt]

The token list is ESPnet's: one token per line, ``<blank>`` first, then
``<unk>``, ..., ``<sos/eos>`` last. Transcripts are split as ESPnet does:
for ``char``, into characters with a space as the token ``<space>`` and each
non-linguistic symbol (one per line of ``--non_linguistic_symbols``) as one
token; for ``bpe``, into sentencepiece pieces (``--non_linguistic_symbols``
is not used: the model holds its own user symbols). A fault, printed on its
own line naming the text file and the utterance, is an empty transcript,
a duplicate utterance id, a line that is not UTF-8 (named by its line
number), or a token that is not in the list (for bpe also a piece
sentencepiece maps to unk). Exits 1 on any fault.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import sentencepiece as spm

from echo_plugin.recipe.data_dir import (
    DataDirError,
    fault,
    read_table_faults,
    read_text_lines,
    run_reporting_faults,
)

Tokenizer = Callable[[str], list[str]]
UnkTest = Callable[[str], bool]


def read_token_list(path: Path) -> set[str]:
    """The tokens of an ESPnet token list; ValueError when it is not in that format."""
    tokens = [line.strip() for line in read_text_lines(path) if line.strip()]
    if not tokens or tokens[0] != "<blank>" or tokens[-1] != "<sos/eos>":
        raise ValueError(f"{path}: not an ESPnet token list (<blank> first, <sos/eos> last)")
    return set(tokens)


def read_symbols(path: Path | None) -> list[str]:
    """The non-linguistic symbols, one per line (none without a file)."""
    if path is None:
        return []
    return [line.strip() for line in read_text_lines(path) if line.strip()]


def char_tokenizer(symbols: list[str]) -> Tokenizer:
    """ESPnet's char split: symbols whole, a space as ``<space>``, else one character."""

    def tokenize(text: str) -> list[str]:
        tokens = []
        while text:
            symbol = next((s for s in symbols if text.startswith(s)), None)
            token = symbol or ("<space>" if text[0] == " " else text[0])
            tokens.append(token)
            text = text[len(symbol or text[0]):]
        return tokens

    return tokenize


def bpe_tokenizer(model: Path) -> tuple[Tokenizer, UnkTest]:
    """Sentencepiece's split, and a test for pieces it maps to unk."""
    sp = spm.SentencePieceProcessor(model_file=str(model))
    return (lambda text: sp.encode(text, out_type=str)), (lambda piece: sp.piece_to_id(piece) == sp.unk_id())


def unknown_tokens(tokens: list[str], known: set[str], is_unk: UnkTest) -> list[str]:
    """The distinct tokens, in order of appearance, that the token list cannot represent."""
    return list(dict.fromkeys(t for t in tokens if t not in known or is_unk(t)))


def check_text(text_path: Path, token_list: Path, tokenize: Tokenizer, is_unk: UnkTest) -> list[str]:
    """The faults of every transcript in ``text_path``."""
    known = read_token_list(token_list)
    text, faults = read_table_faults(text_path)
    for uttid in sorted(text):
        if not text[uttid]:
            faults.append(fault(text_path, uttid, "empty transcript"))
            continue
        unknown = unknown_tokens(tokenize(text[uttid]), known, is_unk)
        if unknown:
            shown = " ".join(repr(t) for t in unknown)
            faults.append(fault(text_path, uttid, f"tokens not in {token_list}: {shown}"))
    return faults


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--text", type=Path, required=True, help="Kaldi text file to check")
    parser.add_argument("--token_list", type=Path, required=True, help="ESPnet token list (tokens.txt)")
    parser.add_argument("--token_type", choices=["char", "bpe"], required=True)
    parser.add_argument("--bpemodel", type=Path, default=None, help="sentencepiece model (bpe only)")
    parser.add_argument("--non_linguistic_symbols", type=Path, default=None, help="symbols kept whole (char only)")
    args = parser.parse_args(argv)
    if args.token_type == "bpe" and args.bpemodel is None:
        parser.error("--token_type bpe needs --bpemodel")
    return args


def make_tokenizer(args: argparse.Namespace) -> tuple[Tokenizer, UnkTest]:
    """The split for ``--token_type`` and its test for unk tokens."""
    if args.token_type == "bpe":
        return bpe_tokenizer(args.bpemodel)
    return char_tokenizer(read_symbols(args.non_linguistic_symbols)), (lambda token: False)


def require_fit(args: argparse.Namespace) -> None:
    """Check ``--text`` against ``--token_list``; DataDirError holding every fault."""
    faults = check_text(args.text, args.token_list, *make_tokenizer(args))
    if faults:
        raise DataDirError(faults)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    status = run_reporting_faults("check_text", lambda: require_fit(args), (OSError, ValueError))
    if status == 0:
        print(f"check_text: {args.text}: every transcript fits {args.token_list}")
    return status


if __name__ == "__main__":
    sys.exit(main())
