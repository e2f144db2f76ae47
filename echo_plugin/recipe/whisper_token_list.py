"""Stage 3 for Whisper token types: the token list of a pretrained Whisper vocabulary.

    python -m echo_plugin.recipe.whisper_token_list --token_type whisper_multilingual \
        --out_dir data/token_list/whisper_multilingual

Writes ``<out_dir>/tokens.txt``: ESPnet's exported Whisper vocabulary, one token string per
line, one line per id (51865 for ``whisper_multilingual``, 51864 for ``whisper_en``;
:func:`echo_plugin.text.whisper_tokens.token_list`). Nothing is trained: the vocabulary is the
checkpoint's, and every transcript can be written with it (byte-level BPE), so stage 3's text
check is not needed. The list does not depend on the prompt's language or task. An unchanged
file is left as it is.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from echo_plugin.recipe.io import atomic_write_text
from echo_plugin.text.whisper_tokens import MODEL_TYPES, token_list


def write_token_list(token_type: str, out_dir: Path) -> Path:
    """``out_dir/tokens.txt`` of the Whisper vocabulary ``token_type``; its path."""
    out = out_dir / "tokens.txt"
    text = "".join(f"{token}\n" for token in token_list(token_type))
    if not (out.is_file() and out.read_text(encoding="utf-8") == text):
        atomic_write_text(out, text)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--token_type", choices=MODEL_TYPES, required=True)
    parser.add_argument("--out_dir", type=Path, required=True)
    args = parser.parse_args(argv)
    print(write_token_list(args.token_type, args.out_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
