"""Stage 7: collect experiments' scores into a RESULTS.md.

    python -m echo_plugin.recipe.results --recipe_dir egs/fsdd/asr1 --out egs/fsdd/asr1/RESULTS.md
    python -m echo_plugin.recipe.results --recipe_dir egs/fsdd/asr1 egs/librispeech_100/asr1 \
        --out RESULTS_ALL.md [--recipe_results true|false] \
        [--date YYYY-MM-DD] [--python_version X] [--torch_version Y]

``--recipe_dir`` takes one or more dirs and may be repeated. With several, the
``--out`` table holds every experiment of every recipe (with a recipe column)
and each recipe's own ``<recipe_dir>/RESULTS.md`` is rewritten with its
experiments alone (unless ``--recipe_results false``); ``--out`` may then be
left out. With one recipe dir only ``--out`` (default ``<recipe_dir>/RESULTS.md``)
is written, as asr.sh's stage 7 does.

An experiment is a dir ``<recipe_dir>/exp/<asr_tag>/`` holding a
``config.yaml`` (not one of ESPnet's ``collect_stats`` runs), an
``asr_config_path`` or a ``decode_*`` dir. Of it, this reads (each optional:
a missing or unreadable piece shows as ``-``, with a warning when unreadable):

- ``config.yaml``: ESPnet's dumped training config (encoder, decoder, frontend, config);
- ``asr_config_path``: the config file asr.sh was given (else config.yaml's ``config``);
- ``train_seconds``: one number per line, one per training run, summed;
- ``num_params``: the trainable parameter count; ``epochs``: epochs trained;
- ``env.txt``: ``key: value`` lines; ``python`` and ``torch`` fill the
  environment line unless given as arguments (else this interpreter's versions);
- ``decode_*/<set>/score/scores.json``: written by echo_plugin.recipe.score.

Experiments the file being replaced shows whose exp dir is not here (a fresh clone,
a machine that ran only some configs) are carried over from it unchanged, and named
in a note under the header (``--keep_missing false`` drops them; see
echo_plugin.recipe.results_keep).

Writes ``--out`` atomically: a header naming this command, the environment,
a summary table with one row per (experiment, decode dir, test set), sorted,
then a WER-by-SNR-band table when some decodes are SNR-stratified
(echo_plugin.recipe.snr_table), then ESPnet-style WER and CER tables per experiment. The summary table is
also printed.
"""
from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import platform
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import yaml

from echo_plugin.recipe.data_dir import atomic_write_text, parse_numbers
from echo_plugin.recipe.results_keep import Key, Previous, kept_keys, kept_snr_cells, kept_summary_rows, read_previous
from echo_plugin.recipe.score import TABLE_HEADER, table_row
from echo_plugin.recipe.snr_table import snr_section

T = TypeVar("T")
DASH = "-"
SUMMARY_COLUMNS = [
    "experiment", "config", "params (M)", "epochs", "train time", "decode", "test set",
    "WER %", "word Sub/Del/Ins", "CER %", "RTF",
]
SCORE_KEYS = {"n_sentences", "n_tokens", "correct", "substitutions", "deletions", "insertions", "error_rate",
              "sentence_error_rate"}


@dataclass
class Decode:
    """The scores of one test set decoded in one decode dir."""

    decode_dir: str
    test_set: str
    scores: dict | None


@dataclass
class Experiment:
    """What RESULTS.md shows of one ``exp/<asr_tag>/`` dir."""

    recipe: str
    tag: str
    config_file: str | None
    model: dict[str, str]
    num_params: int | None
    epochs: int | None
    train_seconds: float | None
    env: dict[str, str]
    decodes: list[Decode] = field(default_factory=list)


def read_optional(path: Path, parse: Callable[[str], T]) -> T | None:
    """``parse`` of the file's text; None when absent or unreadable (with a warning)."""
    if not path.is_file():
        return None
    try:
        return parse(path.read_text(encoding="utf-8"))
    except (ValueError, KeyError, TypeError, yaml.YAMLError) as e:
        print(f"results: warning: {path}: unreadable, shown as '-': {e}", file=sys.stderr)
        return None


def parse_mapping(text: str) -> dict:
    """A YAML document that must be a mapping (ESPnet's config.yaml)."""
    value = yaml.safe_load(text)
    if not isinstance(value, dict):
        raise ValueError("not a YAML mapping")
    return value


def parse_env(text: str) -> dict[str, str]:
    """``key: value`` lines of env.txt."""
    pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {key.strip(): value.strip() for key, value in pairs}


def parse_scores(text: str) -> dict:
    """scores.json as echo_plugin.recipe.score writes it; ValueError/KeyError when not."""
    scores = json.loads(text)
    for measure in ("wer", "cer"):
        lacking = SCORE_KEYS - scores[measure].keys()
        if lacking:
            raise ValueError(f"'{measure}' lacks {sorted(lacking)}")
    return scores


def is_experiment(exp_dir: Path, config: dict | None) -> bool:
    """Whether ``exp_dir`` is a training experiment (not a stats dir or stray folder)."""
    if config is not None and config.get("collect_stats"):
        return False
    return config is not None or (exp_dir / "asr_config_path").is_file() or any(exp_dir.glob("decode_*/"))


def read_decodes(exp_dir: Path) -> list[Decode]:
    """Every ``decode_*/<set>/`` of an experiment, with its scores when present."""
    return [
        Decode(set_dir.parent.name, set_dir.name, read_optional(set_dir / "score" / "scores.json", parse_scores))
        for set_dir in sorted(exp_dir.glob("decode_*/*/"))
    ]


def read_experiment(recipe: str, exp_dir: Path) -> Experiment | None:
    """The experiment in ``exp_dir``, or None when it is not one."""
    config = read_optional(exp_dir / "config.yaml", parse_mapping)
    if not is_experiment(exp_dir, config):
        return None
    config = config or {}
    config_file = read_optional(exp_dir / "asr_config_path", str.strip) or config.get("config")
    return Experiment(
        recipe=recipe,
        tag=exp_dir.name,
        config_file=config_file,
        model={key: str(config[key]) for key in ("frontend", "encoder", "decoder") if config.get(key)},
        num_params=read_optional(exp_dir / "num_params", int),
        epochs=read_optional(exp_dir / "epochs", int),
        train_seconds=read_optional(exp_dir / "train_seconds", lambda text: sum(parse_numbers(text))),
        env=read_optional(exp_dir / "env.txt", parse_env) or {},
        decodes=read_decodes(exp_dir),
    )


def recipe_name(recipe_dir: Path) -> str:
    """``<corpus>/<recipe>`` as in ``egs/fsdd/asr1``."""
    resolved = recipe_dir.resolve()
    return f"{resolved.parent.name}/{resolved.name}"


def read_experiments(recipe_dirs: list[Path]) -> list[Experiment]:
    """The experiments of every recipe dir, sorted by recipe and tag."""
    experiments = []
    for recipe_dir in recipe_dirs:
        for exp_dir in sorted((recipe_dir / "exp").glob("*/")):
            experiment = read_experiment(recipe_name(recipe_dir), exp_dir)
            if experiment is not None:
                experiments.append(experiment)
    return sorted(experiments, key=lambda e: (e.recipe, e.tag))


def hms(seconds: float) -> str:
    """``h:mm:ss`` of a number of seconds."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def shown(value: T | None, form: Callable[[T], str] = str) -> str:
    """``form(value)``, or a dash for a missing value."""
    return DASH if value is None else form(value)


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Lines of a Markdown table."""
    return ["|" + "|".join(header) + "|", "|" + "|".join("---" for _ in header) + "|"] + [
        "|" + "|".join(row) + "|" for row in rows
    ]


def score_cells(scores: dict | None) -> list[str]:
    """WER %, word Sub/Del/Ins, CER % and RTF cells of a decode's scores."""
    if scores is None:
        return [DASH] * 4
    wer, cer = scores["wer"], scores["cer"]
    return [
        f"{wer['error_rate']:.2f}",
        f"{wer['substitutions']}/{wer['deletions']}/{wer['insertions']}",
        f"{cer['error_rate']:.2f}",
        shown(scores.get("rtf"), lambda r: f"{r:.4f}"),
    ]


def experiment_key(e: Experiment, with_recipe: bool) -> Key:
    """The key results_keep files an experiment under."""
    return (e.recipe, e.tag) if with_recipe else (e.tag,)


def summary_rows(experiments: list[Experiment], with_recipe: bool) -> list[list[str]]:
    """One row per (experiment, decode dir, test set); a row of dashes for an undecoded experiment."""
    rows = []
    for e in experiments:
        head = [e.recipe] if with_recipe else []
        head += [
            e.tag,
            shown(e.config_file),
            shown(e.num_params, lambda n: f"{n / 1e6:.2f}"),
            shown(e.epochs),
            shown(e.train_seconds, hms),
        ]
        for d in e.decodes or [Decode(DASH, DASH, None)]:
            rows.append(head + [d.decode_dir, d.test_set] + score_cells(d.scores))
    return rows


def detail_section(e: Experiment, with_recipe: bool) -> list[str]:
    """The per-experiment part: its settings and ESPnet-style WER and CER tables."""
    model = ", ".join(f"{k}={v}" for k, v in e.model.items()) or DASH
    lines = [
        f"## {e.recipe}/{e.tag}" if with_recipe else f"## {e.tag}",
        "",
        f"- config: {shown(e.config_file)}",
        f"- model: {model}",
        f"- params: {shown(e.num_params, lambda n: f'{n:,}')}; epochs: {shown(e.epochs)}; "
        f"training time: {shown(e.train_seconds, hms)}",
    ]
    scored = [d for d in e.decodes if d.scores is not None]
    if not scored:
        return lines + ["", "No scored decodes.", ""]
    for measure in ("wer", "cer"):
        lines += ["", f"### {measure.upper()}", "", *TABLE_HEADER]
        lines += [table_row(f"{d.decode_dir}/{d.test_set}", d.scores[measure]) for d in scored]
    return lines + [""]


def environment(args: argparse.Namespace, experiments: list[Experiment]) -> str:
    """The environment line: arguments first, then an experiment's env.txt, then this interpreter."""
    env = next((e.env for e in experiments if e.env), {})
    python = args.python_version or env.get("python") or platform.python_version()
    torch = args.torch_version or env.get("torch") or installed_version("torch")
    date = args.date or datetime.date.today().isoformat()
    return f"Environment: date {date}, python {python}, torch {torch}"


def installed_version(package: str) -> str:
    """The installed version of ``package``, or a dash."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return DASH


def render(command: str, env_line: str, experiments: list[Experiment], with_recipe: bool,
           previous: Previous | None = None) -> tuple[str, list[str]]:
    """The whole RESULTS.md, and the summary table's lines.

    ``previous``: the file this one replaces; its experiments that are not in
    ``experiments`` are carried over unchanged (echo_plugin.recipe.results_keep).
    """
    previous = previous or Previous()
    if not experiments and previous.env_line:
        env_line = previous.env_line  # every row is carried over: so is the environment they ran in
    header = (["recipe"] if with_recipe else []) + SUMMARY_COLUMNS
    kept = kept_keys(previous, {experiment_key(e, with_recipe) for e in experiments})
    blocks = {experiment_key(e, with_recipe): (summary_rows([e], with_recipe), detail_section(e, with_recipe))
              for e in experiments}
    blocks.update({key: (kept_summary_rows(previous, key, header), previous.details.get(key, [])) for key in kept})
    order = sorted(blocks)
    summary = markdown_table(header, [row for key in order for row in blocks[key][0]])
    note = []
    if kept:
        names = ", ".join(f"`{'/'.join(key)}`" for key in kept)
        note = [f"Carried over from the previous version of this file, their exp dirs not being here: {names}. "
                "Rerun one to refresh it; `--keep_missing false` drops them.", ""]
    lines = [
        "# Results",
        "",
        f"Generated by `{command}`. Do not edit this file by hand: rerun the command.",
        "",
        env_line,
        "",
        *note,
        "## Summary",
        "",
        *summary,
        "",
    ]
    if not blocks:
        lines += ["No experiments found.", ""]
    lines += snr_section(experiments, kept_snr_cells(previous, kept))
    for key in order:
        lines += blocks[key][1]
    return "\n".join(lines), summary


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe_dir", type=Path, nargs="+", action="extend", required=True,
                        help="one or more recipe dirs (egs/<corpus>/asr1); may be repeated")
    parser.add_argument("--out", type=Path, default=None,
                        help="the Markdown file of all experiments (default: <recipe_dir>/RESULTS.md for one dir)")
    parser.add_argument("--recipe_results", type=str2bool, default=True,
                        help="with several recipe dirs, also rewrite each one's RESULTS.md (default true)")
    parser.add_argument("--keep_missing", type=str2bool, default=True,
                        help="carry over the rows of experiments the file being replaced shows whose exp dir "
                             "is not here (default true)")
    parser.add_argument("--date", default=None, help="date on the environment line (default today)")
    parser.add_argument("--python_version", default=None, help="default: env.txt, else this interpreter")
    parser.add_argument("--torch_version", default=None, help="default: env.txt, else the installed torch")
    return parser.parse_args(argv)


def str2bool(value: str) -> bool:
    """``true``/``false`` as asr.sh passes them."""
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got '{value}'")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    missing = [str(d) for d in args.recipe_dir if not d.is_dir()]
    if missing:
        print(f"results: error: recipe dir not found: {' '.join(missing)}", file=sys.stderr)
        return 1
    several = len(args.recipe_dir) > 1
    if args.out is None and not (several and args.recipe_results):
        if several:
            print("results: error: give --out, or leave --recipe_results true", file=sys.stderr)
            return 1
        args.out = args.recipe_dir[0] / "RESULTS.md"
    per_recipe = {recipe_dir: read_experiments([recipe_dir]) for recipe_dir in dict.fromkeys(args.recipe_dir)}
    experiments = sorted((e for own in per_recipe.values() for e in own), key=lambda e: (e.recipe, e.tag))
    command = shlex.join(["python", "-m", "echo_plugin.recipe.results", *argv])
    env_line = environment(args, experiments)

    def previous(path: Path | None, with_recipe: bool) -> Previous:
        return read_previous(path, with_recipe) if args.keep_missing and path is not None else Previous()

    if several and args.recipe_results:
        for recipe_dir, own in per_recipe.items():
            out = recipe_dir / "RESULTS.md"
            atomic_write_text(out, render(command, env_line, own, False, previous(out, False))[0])
    text, summary = render(command, env_line, experiments, several, previous(args.out, several))
    if args.out is not None:
        atomic_write_text(args.out, text)
    print("\n".join(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
