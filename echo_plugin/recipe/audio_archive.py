"""Audio archives ESPnet reads natively, and the reader of any wav.scp entry (file or archive).

Stage 2's ``--audio_format`` (asr.sh, as ESPnet's):

* ``wav`` / ``flac``: one file per utterance (the source itself where it can be read as it is; a
  converted one written in that format);
* ``wav.ark`` / ``flac.ark``: archives of many utterances in kaldiio's extended ark, as ESPnet's
  ``format_wav_scp.py`` writes them (``kaldiio.save_ark(..., write_function="soundfile")``): each
  utterance is ``<uttid> AUDIO<length><a 16-bit PCM WAV or FLAC file>``, and wav.scp names it
  ``<uttid> <archive>:<byte offset>``. ESPnet's data loader reads such a wav.scp with the type
  ``kaldi_ark`` (:func:`data_type`); ``kaldiio.load_mat("<archive>:<offset>")`` reads one entry.
"""
from __future__ import annotations

import re
from pathlib import Path
from types import TracebackType

import numpy as np
import soundfile as sf

from echo_plugin.inference.audio import AudioError, load_audio

# --audio_format -> the container libsndfile writes (one file, or one entry of an archive)
AUDIO_FORMATS = {"wav": "WAV", "flac": "FLAC", "wav.ark": "WAV", "flac.ark": "FLAC"}
ARCHIVE_ENTRY = re.compile(r"(?P<archive>.+\.ark):(?P<offset>\d+)")


def is_archive_format(audio_format: str) -> bool:
    """Whether ``--audio_format`` writes archives (``*.ark``) rather than one file per utterance."""
    return audio_format.endswith(".ark")


def data_type(audio_format: str) -> str:
    """ESPnet's data type for a wav.scp written in ``audio_format`` (``--*_data_path_and_name_and_type``)."""
    return "kaldi_ark" if is_archive_format(audio_format) else "sound"


def check_format(audio_format: str) -> str:
    """``audio_format`` when it is one of AUDIO_FORMATS; ValueError otherwise."""
    if audio_format not in AUDIO_FORMATS:
        raise ValueError(f"--audio_format {audio_format!r} is not one of {', '.join(AUDIO_FORMATS)}")
    return audio_format


def is_archive_entry(value: str | Path) -> bool:
    """Whether a wav.scp value names an archive entry (``<file>.ark:<offset>``)."""
    return ARCHIVE_ENTRY.fullmatch(str(value)) is not None


def read_archive_entry(value: str) -> tuple[np.ndarray, int]:
    """Float32 samples (frames x channels) and the rate of the archive entry ``<file>.ark:<offset>``;
    AudioError naming it when the archive is missing or the offset holds no audio."""
    import kaldiio  # deferred: only archives need it

    archive = ARCHIVE_ENTRY.fullmatch(value)["archive"]
    if not Path(archive).is_file():
        raise AudioError(f"missing audio archive {archive}")
    try:
        loaded = kaldiio.load_mat(value)
    except Exception as e:  # kaldiio raises several types for bad offsets and data
        raise AudioError(f"unreadable archive entry {value}: {e}") from None
    if not (isinstance(loaded, tuple) and isinstance(loaded[0], int) and isinstance(loaded[1], np.ndarray)):
        raise AudioError(f"archive entry {value} holds no audio (a {type(loaded).__name__})")
    rate, samples = loaded
    samples = np.asarray(samples, dtype=np.float32)
    samples = samples[:, None] if samples.ndim == 1 else samples
    if len(samples) == 0:
        raise AudioError(f"empty archive entry {value} (0 samples)")
    return samples, rate


def read_entry(value: str | Path) -> tuple[np.ndarray, int]:
    """Float32 samples (frames x channels) and the rate of a wav.scp value: an archive entry or an audio
    file (:func:`echo_plugin.inference.audio.load_audio`); AudioError naming it when it cannot be used."""
    if is_archive_entry(value):
        return read_archive_entry(str(value))
    return load_audio(value)


class ArchiveWriter:
    """Appends utterances to one archive, written at ``path``, that will be read at ``final``
    (where the data dir being built moves it); the archive is created with its first utterance."""

    def __init__(self, path: Path, final: Path, audio_format: str) -> None:
        if not is_archive_format(check_format(audio_format)):
            raise ValueError(f"--audio_format {audio_format} does not write archives")
        self.path, self.final, self.container = Path(path), Path(final), AUDIO_FORMATS[audio_format]
        self.handle = None

    def write(self, uttid: str, samples: np.ndarray, fs: int) -> str:
        """Append mono ``samples`` (T,) at ``fs`` Hz as 16-bit PCM; returns its wav.scp value ``<final>:<offset>``."""
        import kaldiio  # deferred: only archives need it

        if self.handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.handle = open(self.path, "wb")
        # kaldiio writes "<uttid> " and then the entry, which the offset points at (as its own scp would say)
        offset = self.handle.tell() + len(f"{uttid} ".encode())
        kaldiio.save_ark(self.handle, {uttid: (np.clip(samples, -1.0, 1.0), fs)}, write_function="soundfile",
                         write_kwargs={"format": self.container, "subtype": "PCM_16"})
        return f"{self.final}:{offset}"

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None

    def __enter__(self) -> ArchiveWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def write_audio_file(samples: np.ndarray, fs: int, path: Path, audio_format: str = "wav") -> None:
    """Write mono ``samples`` (T,) at ``fs`` Hz as one 16-bit PCM file in ``audio_format`` (wav or flac)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.clip(samples, -1.0, 1.0), fs, subtype="PCM_16", format=AUDIO_FORMATS[audio_format])

