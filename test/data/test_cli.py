"""run_corpus_cli: the one command-line body of the corpus preparations."""
from __future__ import annotations

import argparse
from pathlib import Path
from types import ModuleType

import pytest

from echo_plugin.data import synthetic_digits, world_voices
from echo_plugin.data.cli import run_corpus_cli


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="prep")
    p.add_argument("--n", type=int, required=True)
    return p


def prepare(args: argparse.Namespace) -> list[int]:
    """``args.n`` numbers; ValueError naming the option for a negative one, KeyError for zero."""
    if args.n < 0:
        raise ValueError(f"--n must be >= 0, got {args.n}")
    if args.n == 0:
        raise KeyError("zero")
    return list(range(args.n))


def summary(args: argparse.Namespace, numbers: list[int]) -> list[str]:
    return [f"{x}\tof {args.n}" for x in numbers]


def test_the_summary_is_printed_line_by_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_corpus_cli(parser(), ["--n", "2"], prepare, summary, (ValueError,)) == 0
    assert capsys.readouterr().out == "0\tof 2\n1\tof 2\n"


def test_a_listed_error_is_one_line_and_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        run_corpus_cli(parser(), ["--n", "-1"], prepare, summary, (ValueError,))
    assert exit_.value.code == 1
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", "error: --n must be >= 0, got -1\n")


def test_an_unlisted_error_propagates() -> None:
    with pytest.raises(KeyError):
        run_corpus_cli(parser(), ["--n", "0"], prepare, summary, (ValueError,))


@pytest.mark.parametrize("module, options, message", [
    (synthetic_digits, ["--n_voices", "0"], "n_voices and n_takes must be >= 1"),
    (world_voices, ["--fsdd_root", "nowhere"], "no FSDD 'recordings' folder in 'nowhere'"),
])
def test_extra_corpus_commands_fail_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str], module: ModuleType,
                                                options: list[str], message: str) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        module.main(["--out_dir", "corpus", *options])
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "corpus").exists()
