"""prepare_commonvoice on a hand-made Common Voice layout and on the espeak-ng fixture release."""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import soundfile as sf

from echo_plugin.data.commonvoice import CommonVoiceError, main, prepare_commonvoice, read_cv_tsv
from echo_plugin.recipe.data_dir import read_table
from test.data.cv_fixture import COMMITTED, SPEAKERS, client_id, espeak_available, render_release

OLD_HEADER = "client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccents\tlocale\tsegment"
A_CLIP = COMMITTED / "clips" / "common_voice_az_40000001.mp3"  # a real 32 kHz MP3 from the fixture release
DATA_SH = Path(__file__).resolve().parents[2] / "egs" / "commonvoice_az" / "asr1" / "local" / "data.sh"
SPK_A, SPK_B, SPK_C = "a" * 40, "b" * 40, "c" * 40


def row(spk: str, clip: str, sentence: str, extra: str = "\t2\t0\t\t\t\taz\t") -> str:
    return f"{spk}\t{clip}\t{sentence}{extra}"


def make_release(root: Path, tsvs: dict[str, list[str]], header: str = OLD_HEADER) -> Path:
    """A release with a clip (a copy of one real MP3; stage 1 decodes each) for every path the tsvs name."""
    (root / "clips").mkdir(parents=True, exist_ok=True)
    for name in ("train", "dev", "test", "validated"):
        lines = tsvs.get(name, [])
        for line in lines:
            clip = root / "clips" / line.split("\t")[1]
            if not clip.is_file():
                shutil.copyfile(A_CLIP, clip)
        (root / f"{name}.tsv").write_text(header + "\n" + "".join(f"{line}\n" for line in lines), encoding="utf-8")
    return root


def small_release(root: Path) -> Path:
    return make_release(root, {
        "train": [row(SPK_A, "common_voice_az_2.mp3", "Bakı Azərbaycanın paytaxtıdır."),
                  row(SPK_A, "common_voice_az_1.mp3", 'O "Salam!" dedi.'),
                  row(SPK_B, "common_voice_az_3.mp3", "IĞDIR uzaqdır.")],
        "dev": [row(SPK_C, "common_voice_az_4.mp3", "Ata-ana gəldi.")],
        "test": [row(SPK_C, "common_voice_az_5.mp3", "Qış gəldi.")],
    })


def test_layout_ids_and_normalised_text(tmp_path: Path) -> None:
    release = small_release(tmp_path / "az")
    dirs = prepare_commonvoice(release, tmp_path / "data")
    assert set(dirs) == {"train", "dev", "test"}
    train = dirs["train"]
    assert sorted(p.name for p in train.iterdir()) == ["spk2utt", "text", "utt2spk", "wav.scp"]
    text = read_table(train / "text")
    assert text == {
        f"{SPK_A}-common_voice_az_1": "o salam dedi",  # bare quotes read as text (QUOTE_NONE)
        f"{SPK_A}-common_voice_az_2": "bakı azərbaycanın paytaxtıdır",
        f"{SPK_B}-common_voice_az_3": "ığdır uzaqdır",
    }
    lines = (train / "wav.scp").read_text(encoding="utf-8").splitlines()
    assert [line.split()[0] for line in lines] == sorted(text)  # sorted, speaker-prefixed ids
    assert lines[0].split()[1] == str((release / "clips" / "common_voice_az_1.mp3").absolute())
    utt2spk = read_table(train / "utt2spk")
    assert all(utt.startswith(spk + "-") for utt, spk in utt2spk.items())
    assert read_table(train / "spk2utt") == {SPK_A: f"{SPK_A}-common_voice_az_1 {SPK_A}-common_voice_az_2",
                                             SPK_B: f"{SPK_B}-common_voice_az_3"}
    assert read_table(dirs["dev"] / "text") == {f"{SPK_C}-common_voice_az_4": "ata ana gəldi"}


def test_recent_header_and_short_rows(tmp_path: Path) -> None:
    """Columns found by name (sentence is 4th in recent releases); trailing empty columns may be absent."""
    header = "client_id\tpath\tsentence_id\tsentence\tsentence_domain\tup_votes\tdown_votes\tage\tgender"
    tsv = tmp_path / "train.tsv"
    tsv.write_text(header + "\n" + f"{SPK_A}\tx.mp3\tff01\tBir cümlə.\n" + "\n"
                   + f"{SPK_B}\ty.mp3\tff02\tİki \"cümlə\n", encoding="utf-8")
    rows, faults = read_cv_tsv(tsv)
    assert faults == []
    assert [(r.client_id, r.path, r.sentence, r.lineno) for r in rows] == [
        (SPK_A, "x.mp3", "Bir cümlə.", 2), (SPK_B, "y.mp3", 'İki "cümlə', 4)]


def test_bom_and_crlf_line_ends(tmp_path: Path) -> None:
    tsv = tmp_path / "train.tsv"
    tsv.write_bytes(("\ufeff" + OLD_HEADER + "\r\n" + f"{SPK_A}\tx.mp3\tBir cümlə.\t2\t0\r\n").encode("utf-8"))
    rows, faults = read_cv_tsv(tsv)
    assert faults == [] and [(r.client_id, r.sentence) for r in rows] == [(SPK_A, "Bir cümlə.")]


def test_bad_rows_named_by_line(tmp_path: Path) -> None:
    tsv = tmp_path / "dev.tsv"
    tsv.write_text(OLD_HEADER + "\n" + f"{SPK_A}\tok.mp3\tYaxşı.\n" + f"{SPK_A}\tshort.mp3\n"
                   + "\tnospk.mp3\tSöz.\n" + f"{SPK_A}\tx.mp3\tsöz\t1\t0\t\t\t\taz\t\tEXTRA\n", encoding="utf-8")
    rows, faults = read_cv_tsv(tsv)
    assert [r.path for r in rows] == ["ok.mp3"]
    assert faults == [
        f"{tsv}:3: only 2 fields, no ['sentence'] column(s)",
        f"{tsv}:4: empty client_id",
        f"{tsv}:5: 11 tab-separated fields but the header has 10 (a tab inside a field?)",
    ]


def test_missing_column_in_header(tmp_path: Path) -> None:
    tsv = tmp_path / "test.tsv"
    tsv.write_text("client_id\tpath\ttext\n", encoding="utf-8")
    with pytest.raises(CommonVoiceError, match=r"test.tsv:1: header lacks column\(s\) \['sentence'\]"):
        read_cv_tsv(tsv)


def test_missing_clip_and_empty_sentence_name_the_line(tmp_path: Path) -> None:
    release = small_release(tmp_path / "az")
    (release / "clips" / "common_voice_az_3.mp3").unlink()
    with open(release / "dev.tsv", "a", encoding="utf-8") as f:
        f.write(row(SPK_C, "common_voice_az_6.mp3", " ?! ") + "\n")
    (release / "clips" / "common_voice_az_6.mp3").touch()
    with pytest.raises(CommonVoiceError) as err:
        prepare_commonvoice(release, tmp_path / "data")
    assert err.value.faults == [
        f"{release / 'dev.tsv'}:3: empty sentence (after normalisation of '?!')",
        f"{release / 'train.tsv'}:4: clip 'common_voice_az_3.mp3' not found in {release / 'clips'}",
    ]
    assert not (tmp_path / "data").exists()  # nothing written on failure

    dirs = prepare_commonvoice(release, tmp_path / "data", skip_bad_rows=True)
    assert len(read_table(dirs["train"] / "text")) == 2 and len(read_table(dirs["dev"] / "text")) == 1


def test_clip_named_without_extension(tmp_path: Path) -> None:
    release = small_release(tmp_path / "az")
    (release / "test.tsv").write_text(OLD_HEADER + "\n" + row(SPK_C, "common_voice_az_5", "Qış gəldi.") + "\n",
                                      encoding="utf-8")
    dirs = prepare_commonvoice(release, tmp_path / "data")
    assert read_table(dirs["test"] / "wav.scp") == {
        f"{SPK_C}-common_voice_az_5": str((release / "clips" / "common_voice_az_5.mp3").absolute())}


def test_duplicate_row(tmp_path: Path) -> None:
    release = small_release(tmp_path / "az")
    with open(release / "test.tsv", "a", encoding="utf-8") as f:
        f.write(row(SPK_C, "common_voice_az_5.mp3", "Qış gəldi.") + "\n")
    with pytest.raises(CommonVoiceError, match=r"test.tsv:3: duplicate utterance .*first at .*test.tsv:2\)"):
        prepare_commonvoice(release, tmp_path / "data")


def test_corrupt_and_zero_byte_clips_are_stage_1_faults(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A clip that does not decode is a fault of its tsv line (one line each, naming the clip), not a stop in
    stage 2; with skip_bad_rows its row is left out with a one-line warning."""
    release = small_release(tmp_path / "az")
    clips = release / "clips"
    (clips / "common_voice_az_2.mp3").write_bytes(b"")                                  # zero bytes
    (clips / "common_voice_az_4.mp3").write_bytes(b"<html>not found</html>\n" * 100)      # not audio
    (clips / "common_voice_az_3.mp3").write_bytes(A_CLIP.read_bytes()[:2000] + bytes(8000))  # frames, then zeros
    with pytest.raises(CommonVoiceError) as err:
        prepare_commonvoice(release, tmp_path / "data")
    faults = err.value.faults
    assert len(faults) == 3 and all("\n" not in f for f in faults)
    assert faults[0] == (f"{release / 'dev.tsv'}:2: unreadable audio file "
                         f"{(clips / 'common_voice_az_4.mp3').absolute()}"
                         ": no audio format recognised (corrupt or not audio)")
    assert faults[1] == (f"{release / 'train.tsv'}:2: empty audio file "
                         f"{(clips / 'common_voice_az_2.mp3').absolute()} (0 bytes)")
    assert faults[2].startswith(f"{release / 'train.tsv'}:4: unreadable audio file "
                                f"{(clips / 'common_voice_az_3.mp3').absolute()}: ")
    assert not (tmp_path / "data").exists()

    (clips / "common_voice_az_4.mp3").write_bytes(A_CLIP.read_bytes())  # dev needs a row left
    caplog.set_level(logging.WARNING, logger="echo_plugin.data.commonvoice")
    dirs = prepare_commonvoice(release, tmp_path / "data", skip_bad_rows=True)
    assert sorted(read_table(dirs["train"] / "text")) == [f"{SPK_A}-common_voice_az_1"]
    skipped = [r.getMessage() for r in caplog.records if r.getMessage().startswith("skipped ")]
    assert [m.split(": ", 1)[0] for m in skipped] == [f"skipped {release / 'train.tsv'}:2",
                                                       f"skipped {release / 'train.tsv'}:4"]
    assert all("\n" not in m and "common_voice_az_" in m for m in skipped)


def test_skip_bad_rows_reaches_a_corrupt_clip_through_data_sh(tmp_path: Path) -> None:
    """local/data.sh --skip_bad_rows true leaves a zero-byte clip out in stage 1 (it used to stop stage 2);
    without it data.sh fails with one line naming the clip."""
    release = small_release(tmp_path / "az")
    (release / "clips" / "common_voice_az_3.mp3").write_bytes(b"")
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PATH": f"{Path(__file__).resolve().parents[2] / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    failed = subprocess.run(["bash", str(DATA_SH), "--cv_root", str(release)], cwd=tmp_path, env=env,
                            capture_output=True, text=True)
    assert failed.returncode != 0 and not (tmp_path / "data").exists()
    clip = (release / "clips" / "common_voice_az_3.mp3").absolute()
    assert f"error: {release / 'train.tsv'}:4: empty audio file {clip} (0 bytes)\n" in failed.stderr
    done = subprocess.run(["bash", str(DATA_SH), "--cv_root", str(release), "--skip_bad_rows", "true"],
                          cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "common_voice_az_3" not in (tmp_path / "data" / "train" / "wav.scp").read_text(encoding="utf-8")
    assert sum(f"skipped {release / 'train.tsv'}:4: empty audio file {clip}" in line
               for line in done.stderr.splitlines()) == 1


def test_same_clip_under_two_client_ids(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """One clip path under two client_ids is a fault naming both ids and the clip; skip_bad_rows keeps the
    first row (dev and test are read before train, so an evaluation set keeps it)."""
    release = small_release(tmp_path / "az")
    with open(release / "train.tsv", "a", encoding="utf-8") as f:
        f.write(row(SPK_B, "common_voice_az_1.mp3", 'O "Salam!" dedi.') + "\n")   # SPK_A's clip (line 3)
        f.write(row(SPK_A, "common_voice_az_4.mp3", "Ata-ana gəldi.") + "\n")     # SPK_C's dev clip
    with pytest.raises(CommonVoiceError) as err:
        prepare_commonvoice(release, tmp_path / "data")
    train, dev = release / "train.tsv", release / "dev.tsv"
    assert err.value.faults == [
        f"{train}:5: clip 'common_voice_az_1.mp3' is listed under client_id {SPK_B} here "
        f"and under client_id {SPK_A} at {train}:3",
        f"{train}:6: clip 'common_voice_az_4.mp3' is listed under client_id {SPK_A} here "
        f"and under client_id {SPK_C} at {dev}:2",
    ]
    caplog.set_level(logging.WARNING, logger="echo_plugin.data.commonvoice")
    dirs = prepare_commonvoice(release, tmp_path / "data", skip_bad_rows=True)
    assert sorted(read_table(dirs["train"] / "utt2spk").items()) == [
        (f"{SPK_A}-common_voice_az_1", SPK_A), (f"{SPK_A}-common_voice_az_2", SPK_A),
        (f"{SPK_B}-common_voice_az_3", SPK_B)]
    assert read_table(dirs["dev"] / "utt2spk") == {f"{SPK_C}-common_voice_az_4": SPK_C}
    assert [r.getMessage() for r in caplog.records if r.getMessage().startswith("skipped ")] == [
        f"skipped {fault}" for fault in err.value.faults]


def test_same_clip_and_speaker_in_two_splits(tmp_path: Path) -> None:
    release = small_release(tmp_path / "az")
    with open(release / "train.tsv", "a", encoding="utf-8") as f:
        f.write(row(SPK_C, "common_voice_az_5.mp3", "Qış gəldi.") + "\n")  # test's utterance again
    with pytest.raises(CommonVoiceError, match=rf"train.tsv:5: duplicate utterance {SPK_C}-common_voice_az_5 "
                                               rf"\(first at .*test.tsv:2\)"):
        prepare_commonvoice(release, tmp_path / "data")


def test_train_from_validated_leaves_out_dev_test_speakers_and_sentences(tmp_path: Path) -> None:
    release = small_release(tmp_path / "az")
    validated = (release / "train.tsv").read_text(encoding="utf-8").splitlines()[1:] + [
        row(SPK_C, "common_voice_az_4.mp3", "Ata-ana gəldi."),       # dev speaker
        row("d" * 40, "common_voice_az_7.mp3", "QIŞ GƏLDİ!"),        # test sentence, normalised
        row("d" * 40, "common_voice_az_8.mp3", "Yeni cümlə."),
    ]
    make_release(release, {"validated": validated, **{
        n: (release / f"{n}.tsv").read_text(encoding="utf-8").splitlines()[1:] for n in ("train", "dev", "test")}})
    dirs = prepare_commonvoice(release, tmp_path / "data", train_tsv="validated")
    ids = sorted(read_table(dirs["train"] / "text"))
    assert ids == sorted([f"{SPK_A}-common_voice_az_1", f"{SPK_A}-common_voice_az_2",
                          f"{SPK_B}-common_voice_az_3", f"{'d' * 40}-common_voice_az_8"])


def test_release_dir_found_by_language(tmp_path: Path) -> None:
    small_release(tmp_path / "cv-corpus-20.0" / "az")
    dirs = prepare_commonvoice(tmp_path / "cv-corpus-20.0", tmp_path / "data", lang="az")
    assert (dirs["test"] / "text").is_file()


def test_missing_release_tells_how_to_download(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--cv_root", str(tmp_path / "nowhere"), "--out_dir", str(tmp_path / "data")])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "nowhere" in err and "accept the terms" in err and "--cv_root" in err


def _check_fixture_release(release: Path, out: Path) -> None:
    dirs = prepare_commonvoice(release, out)
    for voice, split, sentences in SPEAKERS:
        spk2utt = read_table(dirs[split] / "spk2utt")
        assert len(spk2utt[client_id(voice)].split()) == len(sentences)
    for path in read_table(dirs["train"] / "wav.scp").values():
        info = sf.info(path)
        assert (info.format, info.samplerate, info.channels) == ("MP3", 32000, 1)
        assert 0.5 < info.duration < 10


def test_committed_fixture_release(tmp_path: Path) -> None:
    _check_fixture_release(COMMITTED, tmp_path / "data")


@pytest.mark.skipif(not espeak_available(), reason="espeak-ng is not installed (apt-get install espeak-ng)")
def test_espeak_rendered_release(tmp_path: Path) -> None:
    """Render the release afresh with espeak-ng -v az and soundfile's MP3 writer."""
    release = render_release(tmp_path / "az")
    _check_fixture_release(release, tmp_path / "data")
    for name in ("train", "dev", "test", "validated"):
        assert (release / f"{name}.tsv").read_text(encoding="utf-8") == (COMMITTED / f"{name}.tsv").read_text(
            encoding="utf-8")
