"""A recipe dir with a trained-and-scored experiment, turned into run records as stage 5 and 7 do."""
from __future__ import annotations

from pathlib import Path

from echo_plugin.recipe import records, score
from echo_plugin.train.epoch_cpu import write_epoch_cpu

BASE = "encoder: echo\nencoder_conf: {output_size: 16, num_blocks: 2}\nseed: 0\n"
FOLDS = """folds:
  - {name: test-lucas, test: lucas, dev: nicolas, train: [george, jackson]}
  - {name: test-nicolas, test: nicolas, dev: lucas, train: [george, jackson], tuned_on: true}
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def data_dir(path: Path, speaker_of: dict[str, str], texts: dict[str, str] | None = None) -> Path:
    write(path / "utt2spk", "".join(f"{u} {s}\n" for u, s in sorted(speaker_of.items())))
    if texts is not None:
        write(path / "text", "".join(f"{u} {t}\n" for u, t in sorted(texts.items())))
        write(path / "utt2dur", "".join(f"{u} 1.0\n" for u in sorted(texts)))
    return path


def make_recipe(root: Path) -> Path:
    """egs/fsdd/asr1 with a base config, an overlay of it, the fold list and stage 2's data dirs."""
    write(root / "conf" / "tuning" / "train_a.yaml", BASE)
    write(root / "conf" / "tuning" / "train_b.yaml", "base: train_a.yaml\nencoder_conf: {num_blocks: 3}\n")
    write(root / "conf" / "decode.yaml", "beam_size: 4\nctc_weight: 0.8\n")
    write(root / "conf" / "folds.yaml", FOLDS)
    raw = root / "dump" / "raw"
    data_dir(raw / "train_sp",
             {"g1": "george", "sp0.9-g1": "sp0.9-george", "j1": "jackson", "sp1.1-j1": "sp1.1-jackson"})
    for _test, dev in (("lucas", "nicolas"), ("nicolas", "lucas")):
        data_dir(raw / f"dev_{dev}", {f"{dev}-1": dev})
    return root


def train_and_score(root: Path, tag: str, config: str, hyps: dict[str, str], refs: dict[str, str],
                    test: str = "lucas", seed: int = 0, test_set: str = "test_connected",
                    decode_dir: str = "decode_a", name: str | None = None, options: tuple[str, ...] = (),
                    speaker_suffix: bool = True) -> Path:
    """An exp dir as stages 5-7 leave it, and its records stored under <root>/records
    (the test set is named <test_set>_<speaker> unless ``speaker_suffix`` is false)."""
    dev = "nicolas" if test == "lucas" else "lucas"
    if speaker_suffix:
        test_set = f"{test_set}_{test}"
    raw = root / "dump" / "raw"
    data_dir(raw / test_set, {u: test for u in refs}, refs)
    exp = root / "exp" / tag
    write(exp / "config.yaml", f"seed: {seed}\nencoder: echo\n")
    write(exp / "epochs", "6\n")
    write(exp / "num_params", "2890000\n")
    write(exp / "train_seconds", "600\n61\n")
    for epoch in range(1, 7):  # what EchoTrainer writes after each epoch: 50 CPU seconds each
        write_epoch_cpu(exp, epoch, 50.0, "cpu, 1 thread, 1 process")
    write(exp / "env.txt", "python: 3.11.9\ntorch: 2.12.1\n")
    write(exp / "train.log", "# Accounting: time=300.00 max_rss_mb=812.5\n# Accounting: time=361.00 max_rss_mb=790.0\n")
    assert records.main(["run_info", "--exp_dir", str(exp), "--config", config, "--recipe_dir", str(root),
                         *[a for o in options for a in ("--option", o)]]) == 0
    set_dir = exp / decode_dir / test_set
    hyp = write(set_dir / "text", "".join(f"{u} {t}\n" for u, t in sorted(hyps.items())))
    write(set_dir / "decode_seconds", "0.5\n")
    assert score.main(["--ref", str(raw / test_set / "text"), "--hyp", str(hyp),
                       "--out_dir", str(set_dir / "score"), "--decode_seconds", str(set_dir / "decode_seconds"),
                       "--utt2dur", str(raw / test_set / "utt2dur")]) == 0
    assert records.main(["write", "--exp_dir", str(exp), "--data_root", str(raw), "--train_set", "train_sp",
                         "--valid_set", f"dev_{dev}", "--test_sets", test_set, "--decode_dirs", decode_dir,
                         "--inference_config", str(root / "conf" / "decode.yaml"),
                         "--records_dir", str(root / "records"), "--folds", str(root / "conf" / "folds.yaml"),
                         *(["--name", name] if name else [])]) == 0
    return exp
