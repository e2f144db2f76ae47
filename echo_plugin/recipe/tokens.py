"""Stage 3: the token list (char or sentencepiece) from a training text.

Sentencepiece trains the model; ESPnet's own ``tokenize_text`` counts tokens
and writes the token list in its format (``<blank>``, ``<unk>``, ..., ``<sos/eos>``).

    python -m echo_plugin.recipe.tokens --text dump/raw/train/text \
        --token_type bpe --nbpe 30 --out_dir data/token_list/bpe_unigram30
"""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import sentencepiece as spm
from espnet2.bin.tokenize_text import tokenize

from echo_plugin.recipe.io import atomic_file


def transcripts(text_file: Path) -> list[str]:
    """The transcript column of a Kaldi ``text`` file (utt id dropped)."""
    lines = []
    for line in text_file.read_text(encoding="utf-8").splitlines():
        _, _, words = line.partition(" ")
        lines.append(words.strip())
    return lines


def train_sentencepiece(text_file: Path, out_dir: Path, nbpe: int, bpemode: str) -> Path:
    """Train ``out_dir/bpe.model`` on the transcripts; returns its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        plain = Path(tmp) / "train.txt"
        plain.write_text("\n".join(transcripts(text_file)) + "\n", encoding="utf-8")
        spm.SentencePieceTrainer.train(
            input=str(plain),
            vocab_size=nbpe,
            model_type=bpemode,
            model_prefix=str(Path(tmp) / "bpe"),
            character_coverage=1.0,
            input_sentence_size=100_000_000,
            hard_vocab_limit=False,  # small corpora (smoke tests) may hold fewer pieces
            minloglevel=2,
        )
        for suffix in ("model", "vocab"):
            os.replace(Path(tmp) / f"bpe.{suffix}", out_dir / f"bpe.{suffix}")
    return out_dir / "bpe.model"


def write_token_list(text_file: Path, out_dir: Path, token_type: str, bpemodel: Path | None) -> Path:
    """Write ``out_dir/tokens.txt`` atomically with ESPnet's tokenize_text."""
    out = out_dir / "tokens.txt"
    with atomic_file(out) as tmp:
        tokenize(
            input=str(text_file), output=str(tmp), field="2-", delimiter=None,
            token_type=token_type, space_symbol="<space>", non_linguistic_symbols=None,
            bpemodel=None if bpemodel is None else str(bpemodel), log_level="WARNING",
            write_vocabulary=True, vocabulary_size=0, remove_non_linguistic_symbols=False,
            cutoff=0, add_symbol=["<blank>:0", "<unk>:1", "<sos/eos>:-1"],
            cleaner=None, g2p=None, add_nonsplit_symbol=[],
        )
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--text", type=Path, required=True, help="Kaldi text file of the training set")
    parser.add_argument("--token_type", choices=["char", "bpe"], required=True)
    parser.add_argument("--nbpe", type=int, default=30)
    parser.add_argument("--bpemode", choices=["unigram", "bpe"], default="unigram")
    parser.add_argument("--out_dir", type=Path, required=True)
    args = parser.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    bpemodel = None
    if args.token_type == "bpe":
        bpemodel = train_sentencepiece(args.text, args.out_dir, args.nbpe, args.bpemode)
    print(write_token_list(args.text, args.out_dir, args.token_type, bpemodel))


if __name__ == "__main__":
    main()
