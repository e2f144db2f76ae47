"""prepare_librispeech / download_librispeech on a small corpus in the upstream layout."""
from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path

import pytest
import soundfile as sf

from echo_plugin.data import librispeech as ls
from test.data.librispeech_layout import write_corpus

CORPUS = {
    "train-clean-100": {
        "19": {"198": ["HELLO WORLD", "IT'S A TEST"], "227": ["ONE MORE"]},
        "103": {"1240": ["THE   CAT  SAT"]},
    },
    "dev-clean": {"84": {"121123": ["GOOD MORNING"]}},
    "dev-other": {"116": {"288045": ["GOOD NIGHT", "SEE YOU"]}},
}


def table(path: Path) -> dict[str, str]:
    return dict(line.split(" ", 1) for line in path.read_text().splitlines())


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return write_corpus(tmp_path / "src", CORPUS)


def test_data_dirs_follow_the_layout(corpus: Path, tmp_path: Path) -> None:
    dirs = ls.prepare_librispeech(corpus.parent, tmp_path / "data", ["train-clean-100", "dev-clean", "dev-other"])
    assert sorted(dirs) == ["dev", "dev_clean", "dev_other", "train_clean_100"]
    train = tmp_path / "data" / "train_clean_100"
    text = table(train / "text")
    assert text == {"103-1240-0000": "THE CAT SAT", "19-198-0000": "HELLO WORLD", "19-198-0001": "IT'S A TEST",
                    "19-227-0000": "ONE MORE"}
    assert list(text) == sorted(text)  # byte order, as LC_ALL=C sort
    wav = table(train / "wav.scp")
    assert wav["19-227-0000"] == str(corpus / "train-clean-100" / "19" / "227" / "19-227-0000.flac")
    assert all(Path(p).is_absolute() and sf.info(p).samplerate == 16000 for p in wav.values())
    assert table(train / "utt2spk") == {u: u.rsplit("-", 1)[0] for u in text}  # Kaldi: speaker = <spk>-<chapter>
    assert table(train / "spk2utt")["19-198"] == "19-198-0000 19-198-0001"
    assert sorted(table(tmp_path / "data" / "dev" / "text")) == ["116-288045-0000", "116-288045-0001", "84-121123-0000"]


def test_root_may_be_the_librispeech_folder_itself(corpus: Path, tmp_path: Path) -> None:
    dirs = ls.prepare_librispeech(corpus, tmp_path / "data", ["dev-clean"])
    assert sorted(dirs) == ["dev_clean"]  # 'dev' needs dev-other too
    assert (dirs["dev_clean"] / "wav.scp").read_text().startswith("84-121123-0000 ")


def test_transcript_line_without_audio_names_the_files(corpus: Path, tmp_path: Path) -> None:
    flac = corpus / "train-clean-100" / "19" / "198" / "19-198-0001.flac"
    flac.unlink()
    with pytest.raises(ValueError) as err:
        ls.prepare_librispeech(corpus, tmp_path / "data", ["train-clean-100"])
    assert "19-198.trans.txt: utterance '19-198-0001': transcript line without audio" in str(err.value)
    assert str(flac) in str(err.value)
    assert not (tmp_path / "data").exists()


def test_audio_without_transcript_names_the_file(corpus: Path, tmp_path: Path) -> None:
    chapter = corpus / "dev-other" / "116" / "288045"
    extra = chapter / "116-288045-0007.flac"
    extra.write_bytes((chapter / "116-288045-0000.flac").read_bytes())
    (corpus / "dev-clean" / "84" / "121123" / "84-121123.trans.txt").unlink()
    with pytest.raises(ValueError) as err:
        ls.prepare_librispeech(corpus, tmp_path / "data", ["dev-clean", "dev-other"])
    lines = str(err.value).splitlines()
    assert f"{extra}: audio without transcript line in {chapter / '116-288045.trans.txt'}" in lines
    assert any(line.startswith(str(corpus / "dev-clean" / "84" / "121123" / "84-121123-0000.flac"))
               and "84-121123.trans.txt is missing" in line for line in lines)


def test_misplaced_and_misnamed_audio(corpus: Path, tmp_path: Path) -> None:
    chapter = corpus / "dev-clean" / "84" / "121123"
    (chapter / "84-121123-0000.flac").rename(chapter / "85-121123-0000.flac")
    with pytest.raises(ValueError, match=r"85-121123-0000\.flac: not named 84-121123-<utt>\.flac"):
        ls.prepare_librispeech(corpus, tmp_path / "data", ["dev-clean"])


def test_missing_subset_and_empty_transcript(corpus: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="test-clean"):
        ls.prepare_librispeech(corpus, tmp_path / "data", ["test-clean"])
    trans = corpus / "dev-clean" / "84" / "121123" / "84-121123.trans.txt"
    trans.write_text("84-121123-0000\n")
    with pytest.raises(ValueError, match=r"84-121123\.trans\.txt:1: utterance '84-121123-0000': empty transcript"):
        ls.prepare_librispeech(corpus, tmp_path / "data", ["dev-clean"])


def make_archive(corpus: Path, subset: str, out: Path) -> str:
    """``out/<subset>.tar.gz`` holding ``LibriSpeech/<subset>``, as openslr ships it; its MD5."""
    out.mkdir(parents=True, exist_ok=True)
    archive = out / f"{subset}.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(corpus / subset, arcname=f"LibriSpeech/{subset}")
    return hashlib.md5(archive.read_bytes()).hexdigest()


def test_download_checks_md5_and_extracts(corpus: Path, tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    md5 = make_archive(corpus, "dev-clean", mirror)
    dest = tmp_path / "downloads"
    with pytest.raises(ValueError, match="MD5 .* differs from the published 0+"):
        ls.download_librispeech(dest, ["dev-clean"], mirror.as_uri(), {"dev-clean": "0" * 32})
    assert not list(dest.glob("*.tar.gz*")) and not (dest / "LibriSpeech").exists()

    root = ls.download_librispeech(dest, ["dev-clean"], mirror.as_uri(), {"dev-clean": md5})
    assert root == dest / "LibriSpeech"
    assert not list(dest.glob("*.tar.gz"))  # archives removed after extraction
    dirs = ls.prepare_librispeech(dest, tmp_path / "data", ["dev-clean"])
    assert table(dirs["dev_clean"] / "text") == {"84-121123-0000": "GOOD MORNING"}
    # Extracted once: a second call does not fetch (the mirror is gone).
    (mirror / "dev-clean.tar.gz").unlink()
    assert ls.download_librispeech(dest, ["dev-clean"], mirror.as_uri(), {"dev-clean": md5}) == root


def test_published_checksums_cover_the_recipe_subsets() -> None:
    assert set(ls.SUBSETS) <= set(ls.MD5)
    assert all(len(v) == 32 and int(v, 16) >= 0 for v in ls.MD5.values())
    with pytest.raises(ValueError, match="no published checksum"):
        ls.download_librispeech(Path("/nonexistent"), ["train-clean-999"])


def test_command_line(corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert ls.main(["--librispeech_root", str(corpus.parent), "--out_dir", str(tmp_path / "d"),
                    "--subsets", "dev-clean", "dev-other"]) == 0
    out = capsys.readouterr().out
    assert "dev\t3 utterances" in out and "dev_clean\t1 utterances" in out
