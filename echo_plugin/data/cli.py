"""The command line every corpus preparation shares: INFO logging, one run, a one-line error, a summary."""
from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
Result = TypeVar("Result")


def run_corpus_cli(parser: argparse.ArgumentParser, argv: Sequence[str] | None,
                   prepare: Callable[[argparse.Namespace], Result],
                   summary: Callable[[argparse.Namespace, Result], Iterable[str]],
                   errors: tuple[type[Exception], ...]) -> int:
    """Log at INFO, parse ``argv``, run ``prepare(args)`` and print ``summary(args, result)`` line by line; 0.

    One of ``errors`` raised by ``prepare`` ends the program: exit status 1 and ``error: <message>`` on
    stderr, the message naming the file or option at fault. Other exceptions propagate.
    """
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    args = parser.parse_args(argv)
    try:
        result = prepare(args)
    except errors as err:
        parser.exit(1, f"error: {err}\n")
    for line in summary(args, result):
        print(line)
    return 0
