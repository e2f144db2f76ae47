"""check_text against char and sentencepiece token lists."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import sentencepiece as spm

from echo_plugin.recipe import check_text

CHAR_TOKENS = ["<blank>", "<unk>", "<space>", "E", "N", "O", "T", "W", "<noise>", "<sos/eos>"]


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


@pytest.fixture
def char_list(tmp_path: Path) -> Path:
    return write_lines(tmp_path / "tokens.txt", CHAR_TOKENS)


def run(text: Path, token_list: Path, *extra: str) -> int:
    return check_text.main(["--text", str(text), "--token_list", str(token_list), *extra])


def test_char_ok(tmp_path: Path, char_list: Path, capsys: pytest.CaptureFixture):
    text = write_lines(tmp_path / "text", ["u1 ONE TWO", "u2 TEN"])
    assert run(text, char_list, "--token_type", "char") == 0
    assert capsys.readouterr().err == ""


def test_char_unknown_and_empty(tmp_path: Path, char_list: Path, capsys: pytest.CaptureFixture):
    text = write_lines(tmp_path / "text", ["u1 ONE", "u2 TWO THREE", "u3", "u4 né"])
    assert run(text, char_list, "--token_type", "char") == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3
    assert f"{text}: utterance 'u2'" in lines[0] and "'H' 'R'" in lines[0]
    assert f"{text}: utterance 'u3': empty transcript" in lines[1]
    assert "'u4'" in lines[2] and "'n' 'é'" in lines[2]


def test_char_space_needs_space_token(tmp_path: Path, capsys: pytest.CaptureFixture):
    tokens = write_lines(tmp_path / "tokens.txt", [t for t in CHAR_TOKENS if t != "<space>"])
    text = write_lines(tmp_path / "text", ["u1 ONE ONE"])
    assert run(text, tokens, "--token_type", "char") == 1
    assert "'<space>'" in capsys.readouterr().err


def test_char_non_linguistic_symbols_are_one_token(tmp_path: Path, char_list: Path, capsys):
    text = write_lines(tmp_path / "text", ["u1 <noise> ONE"])
    assert run(text, char_list, "--token_type", "char") == 1  # '<', 'i', 's' unknown as characters
    capsys.readouterr()
    nlsyms = write_lines(tmp_path / "nlsyms.txt", ["<noise>"])
    assert run(text, char_list, "--token_type", "char", "--non_linguistic_symbols", str(nlsyms)) == 0


def test_duplicate_id_is_a_fault(tmp_path: Path, char_list: Path, capsys: pytest.CaptureFixture):
    text = write_lines(tmp_path / "text", ["u1 ONE", "u1 TWO"])
    assert run(text, char_list, "--token_type", "char") == 1
    assert "duplicate utterance id 'u1'" in capsys.readouterr().err


def test_bad_token_list_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture):
    tokens = write_lines(tmp_path / "tokens.txt", ["A", "B"])
    text = write_lines(tmp_path / "text", ["u1 A"])
    assert run(text, tokens, "--token_type", "char") == 1
    assert "not an ESPnet token list" in capsys.readouterr().err


def test_bpe_unk_pieces(tmp_path: Path, capsys: pytest.CaptureFixture):
    train = write_lines(tmp_path / "train.txt", ["ONE TWO THREE", "FOUR FIVE SIX", "SEVEN EIGHT NINE ZERO OH"])
    spm.SentencePieceTrainer.train(
        input=str(train), vocab_size=24, model_type="unigram", model_prefix=str(tmp_path / "bpe"),
        character_coverage=1.0, minloglevel=2,
    )
    sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "bpe.model"))
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    tokens = write_lines(tmp_path / "tokens.txt", ["<blank>", "<unk>", *pieces[3:], "<sos/eos>"])
    text = write_lines(tmp_path / "text", ["a ONE TWO", "b ONE QUIZ", "c SIX"])
    assert run(text, tokens, "--token_type", "bpe", "--bpemodel", str(tmp_path / "bpe.model")) == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert f"{text}: utterance 'b'" in lines[0] and "'Q'" in lines[0]


def test_bpe_requires_model(tmp_path: Path, char_list: Path):
    with pytest.raises(SystemExit):
        run(tmp_path / "text", char_list, "--token_type", "bpe")


def test_cli(tmp_path: Path, char_list: Path):
    text = write_lines(tmp_path / "text", ["u9 WOW!"])
    proc = subprocess.run(
        [sys.executable, "-m", "echo_plugin.recipe.check_text", "--text", str(text),
         "--token_list", str(char_list), "--token_type", "char"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 1
    assert f"check_text: error: {text}: utterance 'u9': tokens not in {char_list}: '!'" in proc.stderr
