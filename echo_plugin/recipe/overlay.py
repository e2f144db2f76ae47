"""Training configs as overlays of a base config.

A training YAML may hold a top-level key ``base: <path>`` (relative to the file
that names it). :func:`load_config` then reads the base (itself possibly an
overlay) and merges the file over it:

* mappings are merged key by key, recursively; the overlay's value wins;
* lists and scalars are replaced whole (an overlay that changes one entry of
  ``encoder_conf.layers`` carries the whole ``layers`` list);
* ``key: null`` in an overlay replaces the base's value with None (the key
  stays, with value None); it does not delete the key;
* a mapping holding ``_replace_: true`` replaces the base's mapping whole
  (the marker is dropped): ``frontend_conf: {_replace_: true, layers: 4}`` when
  the overlay's frontend takes none of the base frontend's options;
* the ``base`` key itself is dropped.

An overlay may also name ``apply: [<overlay>, ...]``: other overlays whose own changes (their
keys, not their base chain) are merged over the base, in order, before the file's own keys. One
mechanism's overlay of the filterbank base then serves the whisper front-end default too::

    base: train_asr_echo_whisper_frontend.yaml
    apply: [train_asr_echo_myelinated.yaml]     # its encoder layers, over the default

An applied overlay's base must be in the file's base chain (its changes are relative to that
config), and it may not itself ``apply`` others.

A config may also hold a top-level ``recipe:`` map: the stage runner's (asr.sh's) options
that training from it needs, merged through the base chain like any map. The pretrained
Whisper front end, for one, needs no feature statistics and no speed perturbation::

    recipe: {feats_normalize: none, speed_perturb_factors: "", speaker_adapt: false}

``run.sh`` passes them after its own defaults and before the user's options (the user's
win); ESPnet never sees the map (it is left out of the merged file and of the config hash:
what it changes in a run is recorded in the run options).

A config without ``base`` or ``recipe`` is returned as it is. ESPnet knows nothing of
``base``: the stage runner (asr.sh) trains from the merged file this module
writes::

    python -m echo_plugin.recipe.overlay --config conf/tuning/train_asr_echo_tied.yaml \\
        --out exp/asr_train_asr_echo_tied/asr_config.merged.yaml
    python -m echo_plugin.recipe.overlay --config conf/tuning/train_asr_echo_tied.yaml --print_hash
    python -m echo_plugin.recipe.overlay --config conf/tuning/train_asr_echo_whisper_frontend.yaml --recipe_args
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from echo_plugin.recipe.io import atomic_write_text

BASE_KEY = "base"
APPLY_KEY = "apply"
REPLACE_KEY = "_replace_"
RECIPE_KEY = "recipe"


class ConfigError(ValueError):
    """A config that cannot be loaded: bad base, base cycle, not a mapping."""


def read_yaml(path: Path) -> dict[str, Any]:
    """One YAML file as a mapping (an empty file is ``{}``), without resolving ``base``."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"no such config: {path}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a training config must be a mapping, not {type(data).__name__}")
    return data


def needs_merge(path: Path | str) -> bool:
    """True when ESPnet cannot read the file as it is: it holds ``base``, ``apply`` or ``recipe``."""
    return bool({BASE_KEY, APPLY_KEY, RECIPE_KEY} & read_yaml(Path(path)).keys())


def deep_merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """A new mapping: ``overlay`` merged over ``base`` (maps merged, everything else replaced)."""
    merged = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and value.get(REPLACE_KEY) is True:
            merged[key] = deep_merge({}, {k: v for k, v in value.items() if k != REPLACE_KEY})
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _load(path: Path, chain: list[Path]) -> dict[str, Any]:
    """The merged config of ``path``: its base chain, then its applied overlays, then its own keys."""
    config, _ = _load_with_chain(path, chain)
    return config


def _load_with_chain(path: Path, chain: list[Path]) -> tuple[dict[str, Any], list[Path]]:
    """The merged config of ``path`` and the resolved files of its base chain (``path`` first)."""
    resolved = path.resolve()
    if resolved in chain:
        names = " -> ".join(str(p) for p in [*chain[chain.index(resolved):], resolved])
        raise ConfigError(f"base cycle: {names}")
    config = read_yaml(path)
    applied = config.pop(APPLY_KEY, [])
    if BASE_KEY not in config:
        if applied:
            raise ConfigError(f"{path}: apply needs a base to apply the overlays to")
        return config, [resolved]
    base_name = config.pop(BASE_KEY)
    if not isinstance(base_name, str) or not base_name:
        raise ConfigError(f"{path}: base must be a file path, not {base_name!r}")
    base_path = path.parent / base_name
    if not base_path.is_file():
        raise ConfigError(f"{base_path} (base of {path}) does not exist")
    merged, base_chain = _load_with_chain(base_path, [*chain, resolved])
    for overlay in _applied_overlays(path, applied, base_chain):
        merged = deep_merge(merged, overlay)
    return deep_merge(merged, config), [resolved, *base_chain]


def _applied_overlays(path: Path, names: Any, base_chain: list[Path]) -> list[dict[str, Any]]:
    """The own keys of each overlay ``path`` applies, checked to be changes of a config in its base chain."""
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise ConfigError(f"{path}: apply must be a list of overlay file paths, not {names!r}")
    overlays = []
    for name in names:
        overlay_path = path.parent / name
        overlay = read_yaml(overlay_path)
        if APPLY_KEY in overlay:
            raise ConfigError(f"{overlay_path} (applied by {path}) applies overlays itself")
        base_name = overlay.pop(BASE_KEY, None)
        if not isinstance(base_name, str) or (overlay_path.parent / base_name).resolve() not in base_chain:
            raise ConfigError(f"{overlay_path} (applied by {path}) must be an overlay of a config in "
                              f"{path.name}'s base chain, not of {base_name!r}")
        overlays.append(overlay)
    return overlays


def load_config(path: Path | str) -> dict[str, Any]:
    """The training config of ``path`` with its ``base`` chain resolved and merged (``recipe`` left out)."""
    return {k: v for k, v in load_with_recipe(path).items() if k != RECIPE_KEY}


def load_with_recipe(path: Path | str) -> dict[str, Any]:
    """The merged config of ``path``, its ``recipe`` map included."""
    config = _load(Path(path), [])
    recipe = config.get(RECIPE_KEY, {})
    if not isinstance(recipe, dict):
        raise ConfigError(f"{path}: recipe must be a map of asr.sh options, not {type(recipe).__name__}")
    return config


def recipe_args(path: Path | str) -> list[str]:
    """The config's ``recipe`` map as asr.sh arguments: ``["--feats_normalize", "none", ...]``.

    Booleans are ``true``/``false``, lists are joined with spaces, null is the empty string.
    """
    args: list[str] = []
    for key, value in load_with_recipe(path).get(RECIPE_KEY, {}).items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, (list, tuple)):
            text = " ".join(str(v) for v in value)
        else:
            text = "" if value is None else str(value)
        if "\n" in text:
            raise ConfigError(f"{path}: recipe option {key} holds a line break")
        args += [f"--{key}", text]
    return args


def config_hash(config: dict[str, Any], run_options: dict[str, Any] | None = None) -> str:
    """``sha256:<hex>`` of the canonical JSON of the config (its ``recipe`` map left out) and the run options."""
    config = {k: v for k, v in config.items() if k != RECIPE_KEY}
    canonical = json.dumps({"config": config, "run_options": run_options or {}},
                           sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def merged_text(src: Path | str) -> str:
    """The merged config of ``src`` as YAML, after a one-line header naming the source and the hash."""
    config = load_config(src)
    body = yaml.safe_dump(config, sort_keys=False, default_flow_style=False, allow_unicode=True)
    return f"# merged from {src} by echo_plugin.recipe.overlay; config_hash {config_hash(config)}\n{body}"


def write_merged(src: Path | str, out: Path | str) -> None:
    """Write the merged config of ``src`` to ``out`` atomically; an unchanged file is left as it is
    (its mtime too: asr.sh compares it with the feature cache)."""
    text = merged_text(src)
    out = Path(out)
    if out.is_file() and out.read_text(encoding="utf-8") == text:
        return
    atomic_write_text(out, text)


def espnet_config(path: Path | str, work_dir: Path | str) -> Path:
    """A file ESPnet's ``--config`` reads: ``path`` itself without ``base`` or ``recipe``, else its
    merged copy written into ``work_dir``."""
    path = Path(path)
    if not needs_merge(path):
        return path
    out = Path(work_dir) / f"{path.stem}.merged.yaml"
    write_merged(path, out)
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, required=True, help="training config, possibly with base:")
    parser.add_argument("--out", type=Path, default=None, help="write the merged config here (default: stdout)")
    parser.add_argument("--print_hash", action="store_true", help="print the config_hash of the merged config only")
    parser.add_argument("--recipe_args", action="store_true",
                        help="print the config's recipe map as asr.sh arguments, one per line")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.out is not None:
            write_merged(args.config, args.out)
        if args.recipe_args:
            sys.stdout.write("".join(f"{arg}\n" for arg in recipe_args(args.config)))
        elif args.print_hash:
            print(config_hash(load_config(args.config)))
        elif args.out is None:
            sys.stdout.write(merged_text(args.config))
    except ConfigError as err:
        print(f"overlay: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
