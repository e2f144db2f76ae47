"""FSDD preparation: splits, connected-digit composition, Kaldi dirs, reruns, download, data.sh."""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from echo_plugin.data import fsdd
from echo_plugin.data.fsdd import (
    DATA_DIRS,
    DIGIT_WORDS,
    PrepConfig,
    assign_splits,
    check_corpus,
    download_fsdd,
    find_recordings,
    prepare_fsdd,
)

REPO = Path(__file__).resolve().parents[2]
SHARED_FSDD = REPO.parent / "shared" / "data" / "fsdd"
DATA_SH = REPO / "egs" / "fsdd" / "asr1" / "local" / "data.sh"
SPEAKERS = ("george", "jackson", "lucas", "nicolas", "yweweler")
TAKES = 3
SMALL = PrepConfig(n_connected_train=12, n_connected_dev=4, n_connected_test=6)
MS = 8  # samples per millisecond at 8 kHz


# ----------------------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Takes 0..TAKES-1 of the shared real recordings, 5 speakers x 10 digits."""
    if not (SHARED_FSDD / "recordings").is_dir():
        pytest.fail(f"the shared FSDD copy is missing: {SHARED_FSDD}")
    root = tmp_path_factory.mktemp("fsdd_small")
    (root / "recordings").mkdir()
    for spk in SPEAKERS:
        for digit in range(10):
            for index in range(TAKES):
                name = f"{digit}_{spk}_{index}.wav"
                shutil.copy(SHARED_FSDD / "recordings" / name, root / "recordings" / name)
    return root


@pytest.fixture(scope="module")
def prepared(small_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Output dir of one preparation of the small corpus with the SMALL config."""
    out = tmp_path_factory.mktemp("prepared") / "data"
    prepare_fsdd(small_corpus, out, SMALL)
    return out


def read_table(path: Path) -> list[tuple[str, str]]:
    """(key, rest of line) for every line of a Kaldi table file."""
    return [tuple(line.split(maxsplit=1)) for line in path.read_text().splitlines()]


def byte_sorted(keys: list[str]) -> bool:
    return keys == sorted(keys, key=str.encode)


def snapshot(out: Path) -> dict[str, bytes]:
    """Every file under ``out`` by relative path, with ``out`` itself masked in the contents."""
    return {
        str(p.relative_to(out)): p.read_bytes().replace(str(out).encode(), b"<OUT>")
        for p in sorted(out.rglob("*"))
        if p.is_file()
    }


def file_states(out: Path) -> dict[str, tuple[int, int]]:
    """(inode, mtime) of everything under ``out``."""
    return {str(p): (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.rglob("*")}


def write_wav(path: Path, n: int = 80, rate: int = 8000, channels: int = 1) -> None:
    sf.write(str(path), np.zeros((n, channels), dtype=np.int16), rate, subtype="PCM_16")


# ----------------------------------------------------------------------------- corpus and splits


def test_find_recordings_parses_every_file(small_corpus: Path) -> None:
    recs = find_recordings(small_corpus)
    assert len(recs) == len(SPEAKERS) * 10 * TAKES
    assert recs == sorted(recs)
    first = recs[0]
    assert (first.speaker, first.digit, first.index, first.path.name) == ("george", 0, 0, "0_george_0.wav")
    assert first.utt_id == "george-iso-0-00"


@pytest.mark.parametrize("bad", ["george_0_1.wav", "0_george_01.wav", "10_george_1.wav", "0-george-1.wav"])
def test_bad_file_name_is_named_in_the_error(tmp_path: Path, bad: str) -> None:
    (tmp_path / "recordings").mkdir()
    write_wav(tmp_path / "recordings" / "0_george_0.wav")
    write_wav(tmp_path / "recordings" / bad)
    with pytest.raises(ValueError, match=re.escape(bad)):
        find_recordings(tmp_path)


def test_missing_or_empty_recordings_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="'recordings' folder"):
        find_recordings(tmp_path)
    (tmp_path / "recordings").mkdir()
    with pytest.raises(FileNotFoundError, match="no .wav recordings"):
        find_recordings(tmp_path)


def test_unlisted_speakers_go_to_test() -> None:
    speakers = [*SPEAKERS, "theo"]
    assert assign_splits(speakers, PrepConfig()) == {
        "george": "train", "jackson": "train", "yweweler": "train",
        "nicolas": "dev", "lucas": "test", "theo": "test",
    }


def test_listed_speaker_without_recordings_is_an_error() -> None:
    with pytest.raises(ValueError, match="nicolas"):
        assign_splits(["george", "jackson", "yweweler", "lucas"], PrepConfig())


def test_speaker_in_two_splits_is_rejected() -> None:
    with pytest.raises(ValueError, match="'george' is listed for both train and dev"):
        PrepConfig(dev_speakers=("george",))


def test_splits_are_speaker_disjoint(prepared: Path) -> None:
    speakers = {name: {spk for _, spk in read_table(prepared / name / "utt2spk")} for name in DATA_DIRS}
    assert speakers["train"] == {"george", "jackson", "yweweler"}
    assert speakers["dev"] == {"nicolas"}
    assert speakers["test_isolated"] == speakers["test_connected"] == {"lucas"}
    for name in DATA_DIRS:  # the audio too: every source recording is by the utterance's speaker
        comp = prepared / "local" / "connected_wav" / name / fsdd.COMPOSITION_FILE
        for row in map(json.loads, comp.read_text().splitlines() if comp.exists() else []):
            spk = row["utt_id"].split("-")[0]
            assert {fsdd.parse_recording_name(Path(s)).speaker for s in row["sources"]} == {spk}
            assert spk in speakers[name]


# ----------------------------------------------------------------------------- Kaldi data dirs


def test_data_dirs_are_sorted_and_consistent(prepared: Path) -> None:
    n_iso = {"train": 3, "dev": 1, "test_isolated": 1, "test_connected": 0}
    n_conn = {"train": SMALL.n_connected_train, "dev": SMALL.n_connected_dev,
              "test_isolated": 0, "test_connected": SMALL.n_connected_test}
    for name in DATA_DIRS:
        tables = {f: read_table(prepared / name / f) for f in ("wav.scp", "text", "utt2spk")}
        keys = [k for k, _ in tables["wav.scp"]]
        assert byte_sorted(keys) and len(set(keys)) == len(keys), name
        for f, rows in tables.items():
            assert [k for k, _ in rows] == keys, f"{name}/{f} has other utterance ids than wav.scp"
        assert len(keys) == n_iso[name] * 10 * TAKES + n_conn[name], name
        utt2spk = dict(tables["utt2spk"])
        assert all(utt.startswith(spk + "-") for utt, spk in utt2spk.items())
        spk2utt = read_table(prepared / name / "spk2utt")
        assert byte_sorted([s for s, _ in spk2utt])
        inverted = {utt: spk for spk, utts in spk2utt for utt in utts.split()}
        assert inverted == utt2spk
        assert all(byte_sorted(utts.split()) for _, utts in spk2utt)
        for utt, wav in tables["wav.scp"]:
            assert Path(wav).is_absolute() and Path(wav).is_file(), f"{name}: {utt} -> {wav}"


def test_isolated_transcripts_match_file_names(prepared: Path) -> None:
    for name in ("train", "dev", "test_isolated"):
        text = dict(read_table(prepared / name / "text"))
        for utt, wav in read_table(prepared / name / "wav.scp"):
            if "-iso-" in utt:
                rec = fsdd.parse_recording_name(Path(wav))
                assert utt == f"{rec.speaker}-iso-{rec.digit}-{rec.index:02d}"
                assert text[utt] == DIGIT_WORDS[rec.digit]


def test_connected_audio_is_sources_plus_gaps(prepared: Path) -> None:
    inner_gaps = []
    for name in ("train", "dev", "test_connected"):
        text = dict(read_table(prepared / name / "text"))
        wavs = dict(read_table(prepared / name / "wav.scp"))
        comp_file = prepared / "local" / "connected_wav" / name / fsdd.COMPOSITION_FILE
        comp = {row["utt_id"]: row for row in map(json.loads, comp_file.read_text().splitlines())}
        assert sorted(comp) == sorted(u for u in wavs if "-conn-" in u)
        for utt, row in comp.items():
            words = text[utt].split()
            assert 3 <= len(words) <= 7, utt
            sources = [fsdd.parse_recording_name(Path(s)) for s in row["sources"]]
            assert [DIGIT_WORDS[r.digit] for r in sources] == words, utt
            lead, *inner, trail = row["gaps"]
            assert len(inner) == len(sources) - 1
            assert 0 <= lead <= 100 * MS and 0 <= trail <= 100 * MS, utt
            assert all(50 * MS <= g <= 250 * MS for g in inner), utt
            inner_gaps += inner
            assert sf.info(wavs[utt]).subtype == "PCM_16"
            audio, rate = sf.read(wavs[utt], dtype="int16")
            assert rate == 8000 and audio.ndim == 1
            parts = [sf.read(str(r.path), dtype="int16")[0] for r in sources]
            assert len(audio) == sum(map(len, parts)) + lead + sum(inner) + trail == row["num_samples"], utt
            assert not audio[:lead].any()
            pos = lead
            for part, gap in zip(parts, [*inner, trail]):
                np.testing.assert_array_equal(audio[pos:pos + len(part)], part, err_msg=utt)
                pos += len(part)
                assert not audio[pos:pos + gap].any(), f"{utt}: gap after a digit is not silent"
                pos += gap
    assert len(set(inner_gaps)) > 1, "gaps should be random"


def test_speakers_take_turns_in_connected_utterances(prepared: Path) -> None:
    speakers = [spk for utt, spk in read_table(prepared / "train" / "utt2spk") if "-conn-" in utt]
    counts = {spk: speakers.count(spk) for spk in set(speakers)}
    assert max(counts.values()) - min(counts.values()) <= 1, counts


# ----------------------------------------------------------------------------- determinism and reruns


def test_same_seed_gives_identical_output(small_corpus: Path, prepared: Path, tmp_path: Path) -> None:
    again = tmp_path / "data"
    prepare_fsdd(small_corpus, again, SMALL)
    assert snapshot(again) == snapshot(prepared)


def test_other_seed_changes_only_connected_utterances(small_corpus: Path, prepared: Path, tmp_path: Path) -> None:
    other = tmp_path / "data"
    prepare_fsdd(small_corpus, other, replace(SMALL, seed=1))
    assert (other / "test_isolated" / "text").read_text() == (prepared / "test_isolated" / "text").read_text()
    for name in ("train", "dev", "test_connected"):
        assert (other / name / "text").read_text() != (prepared / name / "text").read_text(), name


def test_rerun_is_a_no_op_and_changed_args_rebuild(small_corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "data"
    prepare_fsdd(small_corpus, out, SMALL)
    before = file_states(out)
    prepare_fsdd(small_corpus, out, SMALL)
    assert file_states(out) == before
    prepare_fsdd(small_corpus, out, replace(SMALL, n_connected_dev=5))
    assert sum("-conn-" in u for u, _ in read_table(out / "dev" / "text")) == 5


def test_missing_wav_makes_the_output_incomplete(small_corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "data"
    prepare_fsdd(small_corpus, out, SMALL)
    lost = out / "local" / "connected_wav" / "dev" / "nicolas-conn-00000.wav"
    lost.unlink()
    prepare_fsdd(small_corpus, out, SMALL)
    assert lost.is_file()


def test_interrupted_run_leaves_no_half_written_dir(
    small_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "data"
    prepare_fsdd(small_corpus, out, SMALL)
    old_train = (out / "train" / "text").read_text()
    real_write, calls = sf.write, []

    def failing_write(*args, **kwargs):
        calls.append(args[0])
        if len(calls) > 3:
            raise OSError("disk full")
        real_write(*args, **kwargs)

    monkeypatch.setattr(fsdd.sf, "write", failing_write)
    fresh = tmp_path / "fresh"
    with pytest.raises(OSError, match="disk full"):
        prepare_fsdd(small_corpus, fresh, SMALL)
    assert not (fresh / "train").exists() and not (fresh / "local" / "connected_wav" / "train").exists()
    assert not list(fresh.rglob(".*.tmp-*"))

    calls.clear()
    reseeded = replace(SMALL, seed=1)
    with pytest.raises(OSError, match="disk full"):
        prepare_fsdd(small_corpus, out, reseeded)
    assert not (out / "local" / "fsdd_prep.json").exists()
    assert (out / "train" / "text").read_text() == old_train
    assert not list(out.rglob(".*.tmp-*")) and not list(out.rglob(".*.old-*"))

    monkeypatch.setattr(fsdd.sf, "write", real_write)
    (out / ".dev.tmp-99999").mkdir()  # as left behind by a killed run
    prepare_fsdd(small_corpus, out, reseeded)
    assert not (out / ".dev.tmp-99999").exists()
    assert (out / "train" / "text").read_text() != old_train
    assert (out / "local" / "fsdd_prep.json").is_file()


def test_max_takes_keeps_only_lower_takes(small_corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "data"
    prepare_fsdd(small_corpus, out, replace(SMALL, max_takes=2))
    n_iso = 0
    for name in DATA_DIRS:
        for utt, wav in read_table(out / name / "wav.scp"):
            if "-iso-" in utt:
                n_iso += 1
                assert fsdd.parse_recording_name(Path(wav)).index < 2
        comp = out / "local" / "connected_wav" / name / fsdd.COMPOSITION_FILE
        for row in map(json.loads, comp.read_text().splitlines() if comp.exists() else []):
            assert all(fsdd.parse_recording_name(Path(s)).index < 2 for s in row["sources"])
    assert n_iso == len(SPEAKERS) * 10 * 2


def test_wrong_sample_rate_names_utterance_and_file(small_corpus: Path, tmp_path: Path) -> None:
    root = tmp_path / "fsdd"
    shutil.copytree(small_corpus, root)
    write_wav(root / "recordings" / "7_lucas_1.wav", rate=16000)
    with pytest.raises(ValueError, match=r"lucas-iso-7-01: .*7_lucas_1\.wav' is 16000 Hz"):
        prepare_fsdd(root, tmp_path / "data", SMALL)


# ----------------------------------------------------------------------------- download


NO_MANIFEST: dict[str, str] = {}  # fake corpora: the shipped manifest lists the real recordings (test_fsdd_manifest)


def make_archive(server: Path, commit: str, speakers: int, takes: int, *, drop: str = "", extra: str = "") -> str:
    """A fake upstream tar.gz for ``commit``; returns a file:// url template."""
    top = server / "src" / f"free-spoken-digit-dataset-{commit}"
    (top / "recordings").mkdir(parents=True)
    (top / "README.md").write_text("fake FSDD\n")
    for spk in [f"spk{i}" for i in range(speakers)]:
        for digit in range(10):
            for index in range(takes):
                name = f"{digit}_{spk}_{index}.wav"
                if name != drop:
                    write_wav(top / "recordings" / name)
    with tarfile.open(server / f"{commit}.tar.gz", "w:gz") as tar:
        tar.add(top, arcname=top.name)
        if extra:
            info = tarfile.TarInfo(extra)
            info.size = 4
            tar.addfile(info, io.BytesIO(b"evil"))
    return f"file://{server}/{{commit}}.tar.gz"


def test_download_extracts_checks_and_skips_when_present(tmp_path: Path) -> None:
    url = make_archive(tmp_path / "server", "c0ffee", speakers=2, takes=2)
    root = download_fsdd(tmp_path / "dl", commit="c0ffee", url_template=url, n_speakers=2, n_takes=2,
                         manifest=NO_MANIFEST)
    assert root == (tmp_path / "dl" / "free-spoken-digit-dataset-c0ffee").resolve()
    assert len(find_recordings(root)) == 2 * 10 * 2
    (tmp_path / "server" / "c0ffee.tar.gz").unlink()  # a second download would fail now
    assert download_fsdd(tmp_path / "dl", commit="c0ffee", url_template=url, n_speakers=2, n_takes=2,
                         manifest=NO_MANIFEST) == root
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == [root.name]


def test_download_rejects_wrong_counts(tmp_path: Path) -> None:
    url = make_archive(tmp_path / "server", "bad", speakers=2, takes=2, drop="3_spk1_1.wav")
    with pytest.raises(ValueError, match=r"expected 40 recordings .* found 39; missing \[\('spk1', 3, 1\)\]"):
        download_fsdd(tmp_path / "dl", commit="bad", url_template=url, n_speakers=2, n_takes=2, manifest=NO_MANIFEST)
    assert list((tmp_path / "dl").iterdir()) == []  # no archive, no half-extracted copy
    with pytest.raises(ValueError, match="expected 6 speakers, found 2"):
        download_fsdd(tmp_path / "dl", commit="bad", url_template=url, manifest=NO_MANIFEST)


def test_download_rejects_members_outside_dest(tmp_path: Path) -> None:
    url = make_archive(tmp_path / "server", "evil", speakers=1, takes=1, extra="../escaped.wav")
    with pytest.raises(ValueError, match="outside"):
        download_fsdd(tmp_path / "dl", commit="evil", url_template=url, n_speakers=1, n_takes=1, manifest=NO_MANIFEST)
    assert not (tmp_path / "escaped.wav").exists()


def test_check_corpus_rejects_stereo(tmp_path: Path) -> None:
    (tmp_path / "recordings").mkdir()
    for digit in range(10):
        write_wav(tmp_path / "recordings" / f"{digit}_ann_0.wav", channels=2 if digit == 4 else 1)
    with pytest.raises(ValueError, match=r"ann-iso-4-00: .*4_ann_0\.wav' is 8000 Hz with 2 channel"):
        check_corpus(tmp_path, n_speakers=1, n_takes=1)


# ----------------------------------------------------------------------------- local/data.sh


def run_data_sh(script: Path, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(REPO),
        "OMP_NUM_THREADS": "1",
    }
    return subprocess.run([str(script), *args], cwd=cwd, env=env, capture_output=True, text=True)


def copy_recipe_script(recipe: Path) -> Path:
    (recipe / "local").mkdir(parents=True)
    return Path(shutil.copy2(DATA_SH, recipe / "local" / "data.sh"))


def count_lines(path: Path) -> int:
    return len(path.read_text().splitlines())


def test_data_sh_prepares_the_recipe_data(tmp_path: Path) -> None:
    recipe = tmp_path / "asr1"
    script = copy_recipe_script(recipe)
    args = ["--fsdd_root", str(SHARED_FSDD), "--max_takes", "2", "--n_connected_train", "6",
            "--n_connected_dev", "3", "--n_connected_test", "4", "--seed", "1"]
    proc = run_data_sh(script, args, recipe)
    assert proc.returncode == 0, proc.stderr
    counts = {name: count_lines(recipe / "data" / name / "wav.scp") for name in DATA_DIRS}
    assert counts == {"train": 66, "dev": 23, "test_isolated": 20, "test_connected": 4}
    stamp = json.loads((recipe / "data" / "local" / "fsdd_prep.json").read_text())
    assert (stamp["config"]["seed"], stamp["config"]["max_takes"]) == (1, 2)


def speakers_of(data_dir: Path) -> set[str]:
    return {line.split()[1] for line in (data_dir / "utt2spk").read_text().splitlines()}


def test_data_sh_takes_another_dev_fold(tmp_path: Path) -> None:
    recipe = tmp_path / "asr1"
    script = copy_recipe_script(recipe)
    args = ["--fsdd_root", str(SHARED_FSDD), "--max_takes", "1", "--n_connected_train", "3",
            "--n_connected_dev", "1", "--n_connected_test", "1",
            "--train_speakers", "jackson,yweweler,nicolas", "--dev_speakers", "george"]
    proc = run_data_sh(script, args, recipe)
    assert proc.returncode == 0, proc.stderr
    data = recipe / "data"
    assert speakers_of(data / "train") == {"jackson", "yweweler", "nicolas"}
    assert speakers_of(data / "dev") == {"george"}
    assert speakers_of(data / "test_isolated") == {"lucas"}
    stamp = json.loads((data / "local" / "fsdd_prep.json").read_text())
    assert stamp["config"]["dev_speakers"] == ["george"]


def test_data_sh_finds_the_shared_copy_beside_the_repository(tmp_path: Path) -> None:
    script = copy_recipe_script(tmp_path / "repo" / "egs" / "fsdd" / "asr1")
    (tmp_path / "shared" / "data").mkdir(parents=True)
    (tmp_path / "shared" / "data" / "fsdd").symlink_to(SHARED_FSDD)
    recipe = script.parent.parent
    proc = run_data_sh(script, ["--max_takes", "1", "--n_connected_train", "3",
                                "--n_connected_dev", "1", "--n_connected_test", "1"], recipe)
    assert proc.returncode == 0, proc.stderr
    stamp = json.loads((recipe / "data" / "local" / "fsdd_prep.json").read_text())
    assert stamp["fsdd_root"] == str(SHARED_FSDD.resolve())


def test_data_sh_rejects_unknown_options(tmp_path: Path) -> None:
    script = copy_recipe_script(tmp_path / "asr1")
    proc = run_data_sh(script, ["--bogus", "1"], tmp_path / "asr1")
    assert proc.returncode != 0 and "unknown option '--bogus'" in proc.stderr
    proc = run_data_sh(script, ["--seed"], tmp_path / "asr1")
    assert proc.returncode != 0 and "--seed needs a value" in proc.stderr
    assert not (tmp_path / "asr1" / "data").exists()


def test_the_default_test_speaker_gives_way_to_a_fold_that_trains_on_it() -> None:
    def config(*argv: str) -> fsdd.PrepConfig:
        return fsdd.config_from_args(fsdd.build_parser().parse_args(["--fsdd_root", "x", *argv]))

    assert config().test_speakers == ("lucas",)
    fold = config("--train_speakers", "george", "lucas", "yweweler", "--dev_speakers", "jackson")
    assert fold.test_speakers == ()  # nicolas, in no list, is the test speaker
    assert config("--train_speakers", "george", "lucas", "--dev_speakers", "jackson",
                  "--test_speakers", "nicolas").test_speakers == ("nicolas",)
    with pytest.raises(ValueError, match="'lucas' is listed for both train and test"):
        config("--train_speakers", "george", "lucas", "--dev_speakers", "jackson", "--test_speakers", "lucas")


# ----------------------------------------------------------------------------- the command line


def test_the_command_prints_each_dir_and_names_a_missing_root(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from echo_plugin.data import fsdd

    out = tmp_path / "data"
    assert fsdd.main(["--fsdd_root", str(SHARED_FSDD), "--max_takes", str(TAKES), "--out_dir", str(out),
                      "--n_connected_train", "12",
                      "--n_connected_dev", "4", "--n_connected_test", "6"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = [line.split("\t")[0] for line in lines]
    assert names and all((out / name / "wav.scp").is_file() for name in names)
    counts = {line.split("\t")[0]: int(line.split("\t")[1].split()[0]) for line in lines}
    assert all(counts[name] == len((out / name / "wav.scp").read_text().splitlines()) for name in names)
    with pytest.raises(SystemExit) as exit_:
        fsdd.main(["--fsdd_root", str(tmp_path / "nowhere"), "--out_dir", str(out)])
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "nowhere" in err and len(err.splitlines()) == 1, err
