"""format_data on a small real FSDD subset, and every kind of bad input."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from echo_plugin.recipe import format_data
from test.recipe.recipe_helpers import TINY_CONFIG, copy_recipe, recipe_env

FSDD = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "fsdd" / "recordings"
UTTS = ["0_george_0", "1_jackson_1", "2_lucas_2", "3_nicolas_3", "4_yweweler_4", "5_george_5"]
WORDS = ["ZERO", "ONE", "TWO", "THREE", "FOUR", "FIVE"]
OUTPUT_FILES = ["wav.scp", "text", "utt2spk", "spk2utt", "utt2dur", "utt2num_samples", "audio_format"]


def write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


def read_pairs(path: Path) -> list[tuple[str, str]]:
    return [tuple(line.split(" ", 1)) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def src(tmp_path: Path) -> Path:
    """A data dir over six copied FSDD wavs, listed in reverse (unsorted) order."""
    audio, data = tmp_path / "audio", tmp_path / "data" / "train"
    audio.mkdir()
    data.mkdir(parents=True)
    for utt in UTTS:
        shutil.copy(FSDD / f"{utt}.wav", audio / f"{utt}.wav")
    order = list(reversed(range(len(UTTS))))
    write_lines(data / "wav.scp", [f"{UTTS[i]} {audio / UTTS[i]}.wav" for i in order])
    write_lines(data / "text", [f"{UTTS[i]} {WORDS[i]}" for i in order])
    write_lines(data / "utt2spk", [f"{UTTS[i]} {UTTS[i].split('_')[1]}" for i in order])
    return data


def run(src: Path, dst: Path, *extra: str) -> int:
    return format_data.main(["--src", str(src), "--dst", str(dst), "--fs", "8000", "--nj", "2", *extra])


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_output_sorted_consistent_and_durations_match_soundfile(src: Path, tmp_path: Path):
    dst = tmp_path / "dump" / "train"
    assert run(src, dst, "--resample", "false") == 0
    assert sorted(p.name for p in dst.iterdir()) == sorted(OUTPUT_FILES)
    for name in ["wav.scp", "text", "utt2spk", "utt2dur", "utt2num_samples"]:
        assert [k for k, _ in read_pairs(dst / name)] == sorted(UTTS), name
    wav_scp = dict(read_pairs(dst / "wav.scp"))
    utt2dur = dict(read_pairs(dst / "utt2dur"))
    num_samples = dict(read_pairs(dst / "utt2num_samples"))
    for utt in UTTS:
        path = Path(wav_scp[utt])
        assert path.is_absolute() and path == src.parent.parent / "audio" / f"{utt}.wav"
        info = sf.info(str(path))
        assert int(num_samples[utt]) == info.frames
        assert utt2dur[utt] == f"{info.frames / 8000:.3f}"
    assert dict(read_pairs(dst / "text")) == dict(zip(UTTS, WORDS))
    spk2utt = dict(read_pairs(dst / "spk2utt"))
    assert list(spk2utt) == sorted(spk2utt)
    assert spk2utt["george"] == "0_george_0 5_george_5"
    assert not list(tmp_path.glob("dump/.*")), "temporary dirs left behind"


def test_resample_8k_to_16k_doubles_samples(src: Path, tmp_path: Path):
    dst = tmp_path / "dump" / "train"
    assert format_data.main(["--src", str(src), "--dst", str(dst), "--fs", "16000", "--nj", "2"]) == 0
    wav_scp = dict(read_pairs(dst / "wav.scp"))
    num_samples = dict(read_pairs(dst / "utt2num_samples"))
    for utt in UTTS:
        original = sf.info(str(FSDD / f"{utt}.wav")).frames
        out = sf.info(wav_scp[utt])
        assert Path(wav_scp[utt]) == dst / "data" / f"{utt}.wav"
        assert (out.samplerate, out.channels, out.subtype) == (16000, 1, "PCM_16")
        assert out.frames == int(num_samples[utt]) == 2 * original


def test_audio_dir_receives_converted_files(src: Path, tmp_path: Path):
    dst, audio_dir = tmp_path / "dump" / "train", tmp_path / "converted"
    rc = format_data.main(
        ["--src", str(src), "--dst", str(dst), "--fs", "16000", "--audio_dir", str(audio_dir), "--nj", "1"]
    )
    assert rc == 0
    wav_scp = dict(read_pairs(dst / "wav.scp"))
    assert all(Path(p).parent == audio_dir for p in wav_scp.values())
    assert all(Path(p).is_file() for p in wav_scp.values())
    assert not (dst / "data").exists()


@pytest.mark.parametrize(("suffix", "channels"), [(".wav", 2), (".mp3", 1), (".ogg", 1)])
def test_stereo_mp3_ogg_become_mono_wav(src: Path, tmp_path: Path, suffix: str, channels: int):
    samples, rate = sf.read(str(FSDD / f"{UTTS[0]}.wav"), dtype="float32")
    odd = tmp_path / f"odd{suffix}"
    sf.write(str(odd), np.stack([samples * (1.0 - 0.5 * c) for c in range(channels)], axis=1), rate)
    replace_line(src / "wav.scp", UTTS[0], f"{UTTS[0]} {odd}")
    dst = tmp_path / "dump" / "train"
    assert run(src, dst) == 0
    converted = Path(dict(read_pairs(dst / "wav.scp"))[UTTS[0]])
    assert converted == dst / "data" / f"{UTTS[0]}.wav"
    info = sf.info(str(converted))
    assert (info.samplerate, info.channels, info.format) == (8000, 1, "WAV")
    assert dict(read_pairs(dst / "utt2num_samples"))[UTTS[0]] == str(info.frames)
    if suffix == ".wav":  # lossless: the output is the channel mean
        assert np.allclose(sf.read(str(converted))[0], 0.75 * samples, atol=2 / 32768)
    else:
        assert abs(info.frames - len(samples)) <= 1200  # lossy decoders may pad a frame


def replace_line(path: Path, utt: str, new: str) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    write_lines(path, [new if line.split(" ", 1)[0] == utt else line for line in lines])


def audio_of(src: Path, utt: str) -> Path:
    return Path(dict(read_pairs(src / "wav.scp"))[utt])


def missing_file(src: Path) -> tuple[list[str], list[str]]:
    replace_line(src / "wav.scp", UTTS[1], f"{UTTS[1]} {src / 'gone.wav'}")
    return [], [UTTS[1], "gone.wav"]


def corrupt_file(src: Path) -> tuple[list[str], list[str]]:
    audio_of(src, UTTS[2]).write_bytes(b"RIFF garbage \x00\x01\x02" * 50)
    return [], [UTTS[2], f"{UTTS[2]}.wav", "unreadable"]


def empty_wav(src: Path) -> tuple[list[str], list[str]]:
    sf.write(str(audio_of(src, UTTS[3])), np.zeros(0, dtype=np.float32), 8000)
    return [], [UTTS[3], f"{UTTS[3]}.wav", "empty"]


def truncated_wav(src: Path) -> tuple[list[str], list[str]]:
    path = audio_of(src, UTTS[3])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - (len(data) - 44) // 2])  # the header still promises every sample
    return [], [UTTS[3], f"{UTTS[3]}.wav", "truncated", "header declares"]


def wrong_rate(src: Path) -> tuple[list[str], list[str]]:
    path = audio_of(src, UTTS[4])
    sf.write(str(path), sf.read(str(path))[0], 16000)
    return ["--resample", "false"], [UTTS[4], f"{UTTS[4]}.wav", "16000"]


def over_long(src: Path) -> tuple[list[str], list[str]]:
    sf.write(str(audio_of(src, UTTS[0])), np.zeros(31 * 8000, dtype=np.float32), 8000)
    return [], [UTTS[0], f"{UTTS[0]}.wav", "too long"]


def under_short(src: Path) -> tuple[list[str], list[str]]:
    return ["--min_duration", "0.3"], [UTTS[0], f"{UTTS[0]}.wav", "too short"]


def empty_transcript(src: Path) -> tuple[list[str], list[str]]:
    replace_line(src / "text", UTTS[5], UTTS[5])
    return [], [UTTS[5], "text", "empty transcript"]


def duplicate_in_wav_scp(src: Path) -> tuple[list[str], list[str]]:
    with open(src / "wav.scp", "a") as f:
        f.write(f"{UTTS[1]} {audio_of(src, UTTS[2])}\n")
    return [], [UTTS[1], "wav.scp", "duplicate"]


def duplicate_in_text(src: Path) -> tuple[list[str], list[str]]:
    with open(src / "text", "a") as f:
        f.write(f"{UTTS[3]} NINE\n")
    return [], [UTTS[3], "text", "duplicate"]


def id_only_in_text(src: Path) -> tuple[list[str], list[str]]:
    with open(src / "text", "a") as f:
        f.write("9_nobody_9 NINE\n")
    return [], ["9_nobody_9", "wav.scp", "missing"]


def id_only_in_wav_scp(src: Path) -> tuple[list[str], list[str]]:
    replace_line(src / "text", UTTS[0], "")
    return [], [UTTS[0], "text", "missing"]


def id_missing_in_utt2spk(src: Path) -> tuple[list[str], list[str]]:
    replace_line(src / "utt2spk", UTTS[2], "")
    return [], [UTTS[2], "utt2spk", "missing"]


def piped_command(src: Path) -> tuple[list[str], list[str]]:
    replace_line(src / "wav.scp", UTTS[1], f"{UTTS[1]} sox x.flac -t wav - |")
    return [], [UTTS[1], "wav.scp", "unsupported"]


def segments_file(src: Path) -> tuple[list[str], list[str]]:
    write_lines(src / "segments", [f"{UTTS[0]}-a {UTTS[0]} 0.0 0.1"])
    return [], ["segments", "unsupported"]


BAD_INPUTS = [
    missing_file, corrupt_file, empty_wav, truncated_wav, wrong_rate, over_long, under_short,
    empty_transcript, duplicate_in_wav_scp, duplicate_in_text, id_only_in_text, id_only_in_wav_scp,
    id_missing_in_utt2spk, piped_command, segments_file,
]


@pytest.mark.parametrize("spoil", BAD_INPUTS, ids=lambda f: f.__name__)
def test_bad_input_fails_naming_utt_and_file_and_writes_nothing(
    src: Path, tmp_path: Path, capsys: pytest.CaptureFixture, spoil
):
    good = tmp_path / "dump" / "good"
    assert run(src, good) == 0
    before = snapshot(good)
    extra, expected = spoil(src)
    capsys.readouterr()

    assert run(src, tmp_path / "dump" / "new", *extra) != 0
    err = capsys.readouterr().err
    fault_lines = [line for line in err.splitlines() if all(word in line for word in expected)]
    assert fault_lines, f"no line of {err!r} names all of {expected}"
    assert not (tmp_path / "dump" / "new").exists()

    assert run(src, good, *extra) != 0
    assert snapshot(good) == before
    assert sorted(p.name for p in (tmp_path / "dump").iterdir()) == ["good"]


def test_all_faults_listed_then_stops_at_twenty(src: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    write_lines(src / "wav.scp", [f"u{i:02d} {tmp_path / f'none{i:02d}.wav'}" for i in range(30)])
    write_lines(src / "text", [f"u{i:02d} WORD" for i in range(30)])
    (src / "utt2spk").unlink()
    assert run(src, tmp_path / "dump" / "new") == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 21
    assert all(f"u{i:02d}" in lines[i] and f"none{i:02d}.wav" in lines[i] for i in range(20))
    assert "stopped after 20 faults" in lines[20]


def test_cli_exit_status_and_message(src: Path, tmp_path: Path):
    empty_transcript(src)
    cmd = [sys.executable, "-m", "echo_plugin.recipe.format_data", "--src", str(src),
           "--dst", str(tmp_path / "out"), "--fs", "8000", "--nj", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 1
    assert f"{src / 'text'}: utterance '{UTTS[5]}': empty transcript" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_drop_leaves_out_utterances_outside_the_durations_and_lists_them(src: Path, tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture):
    """Training/validation sets as ESPnet's recipes filter them: too long or too short is left out, listed."""
    sf.write(str(audio_of(src, UTTS[0])), np.zeros(31 * 8000, dtype=np.float32), 8000)
    sf.write(str(audio_of(src, UTTS[1])), np.zeros(400, dtype=np.float32), 8000)
    out = tmp_path / "dump" / "train"
    assert run(src, out, "--length_policy", "drop", "--min_duration", "0.1") == 0
    logged = capsys.readouterr().out
    assert f"format_data: left out 2 utterance(s) for their length (listed in {out}/dropped)\n" in logged
    dropped = dict(line.split(" ", 1) for line in (out / "dropped").read_text().splitlines())
    assert dropped == {UTTS[0]: "too long: 31.000 s > --max_duration 30.0",
                       UTTS[1]: "too short: 0.050 s < --min_duration 0.1"}
    for name in ("wav.scp", "text", "utt2spk", "utt2dur", "utt2num_samples"):
        ids = [line.split()[0] for line in (out / name).read_text().splitlines()]
        assert ids == [u for u in sorted(UTTS) if u not in dropped], name
    assert all(set(line.split()[1:]).isdisjoint(dropped) for line in (out / "spk2utt").read_text().splitlines())


def test_keep_scores_every_test_utterance_whatever_its_length(src: Path, tmp_path: Path):
    """Test sets are never filtered or refused for length (ESPnet keeps LibriSpeech's 35 s test clips)."""
    sf.write(str(audio_of(src, UTTS[0])), np.zeros(35 * 8000, dtype=np.float32), 8000)
    out = tmp_path / "dump" / "test"
    assert run(src, out, "--length_policy", "keep") == 0
    assert not (out / "dropped").exists()
    durations = dict(line.split() for line in (out / "utt2dur").read_text().splitlines())
    assert sorted(durations) == sorted(UTTS) and durations[UTTS[0]] == "35.000"


def test_the_local_pool_is_at_most_this_machines_cores(src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture):
    """The per-file formats check audio in a local pool, on the head node under cmd_backend=slurm (--nj 32 there):
    at most the cores this process may use, logged; an --nj within them is used as given; the output is the same."""
    pools: list[int] = []
    real = format_data.ProcessPoolExecutor

    def recorded(max_workers: int) -> format_data.ProcessPoolExecutor:
        pools.append(max_workers)
        return real(max_workers=max_workers)

    monkeypatch.setattr(format_data, "ProcessPoolExecutor", recorded)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    assert run(src, tmp_path / "capped", "--nj", "32") == 0
    assert "format_data: 2 local processes (this machine's 2 cores), not --nj 32" in capsys.readouterr().out
    assert run(src, tmp_path / "given", "--nj", "1") == 0
    assert "local processes" not in capsys.readouterr().out
    assert pools == [2, 1]
    assert snapshot(tmp_path / "capped") == snapshot(tmp_path / "given")


def stage2(recipe: Path, *args: str) -> str:
    """asr.sh stage 2 on data/train (training and validation set) and data/test at 8 kHz; its output."""
    done = subprocess.run(["./asr.sh", "--asr_config", TINY_CONFIG, "--stage", "2", "--stop_stage", "2", "--ngpu", "0",
                           "--nj", "1", "--inference_nj", "1", "--train_set", "train", "--valid_set", "train",
                           "--test_sets", "test", "--fs", "8000", *args],
                          cwd=recipe, env=recipe_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_asr_sh_formats_a_set_again_when_its_fs_or_length_limits_change(tmp_path: Path):
    """A dump is current only when made with this run's --fs and, for training and validation sets, its
    --min_duration and --max_duration (test sets keep every utterance: their limits do not matter)."""
    recipe = copy_recipe(tmp_path)
    for name in ("train", "test"):
        data = recipe / "data" / name
        data.mkdir(parents=True)
        lengths = {f"{name}_{i}": seconds for i, seconds in enumerate((0.5, 1.0, 1.5))}
        for utt, seconds in lengths.items():
            sf.write(data / f"{utt}.wav", np.zeros(int(seconds * 8000), dtype=np.float32), 8000, subtype="PCM_16")
        write_lines(data / "wav.scp", [f"{utt} {data / utt}.wav" for utt in lengths])
        write_lines(data / "text", [f"{utt} ONE" for utt in lengths])
    train, test = recipe / "dump" / "raw" / "train", recipe / "dump" / "raw" / "test"

    def kept(dump: Path) -> list[str]:
        return [utt for utt, _ in read_pairs(dump / "utt2dur")]

    stage2(recipe, "--max_duration", "1.2")
    assert kept(train) == ["train_0", "train_1"] and len(kept(test)) == 3
    log = stage2(recipe, "--max_duration", "1.2")
    assert "dump/raw/train is up to date" in log and "dump/raw/test is up to date" in log
    log = stage2(recipe, "--max_duration", "2")
    assert kept(train) == ["train_0", "train_1", "train_2"] and not (train / "dropped").exists()
    assert ("dump/raw/train was formatted with fs=8000 length_policy=drop min_duration=0.0 max_duration=1.2; "
            "now fs=8000 length_policy=drop min_duration=0.0 max_duration=2: formatting it again") in log, log
    assert "dump/raw/test is up to date" in log
    log = stage2(recipe, "--max_duration", "2", "--min_duration", "0.8", "--fs", "16000")
    assert kept(train) == ["train_1", "train_2"] and "dump/raw/train was formatted with fs=8000" in log, log
    assert "dump/raw/test was formatted with fs=8000 length_policy=keep; now fs=16000 length_policy=keep" in log, log
    assert [int(n) for _, n in read_pairs(test / "utt2num_samples")] == [8000, 16000, 24000]
    (test / "format_options").unlink()  # a dump made before asr.sh recorded its options
    log = stage2(recipe, "--max_duration", "2", "--min_duration", "0.8", "--fs", "16000")
    assert "dump/raw/test was formatted with no record of its --fs and length limits" in log, log
