"""Audio archives ESPnet reads natively: the formats of stage 2 and the writer (reading is the one reader's job).

Stage 2's ``--audio_format`` (asr.sh, as ESPnet's):

* ``wav`` / ``flac``: one file per utterance (the source itself where it can be read as it is; a
  converted one written in that format);
* ``wav.ark`` / ``flac.ark``: archives of many utterances in kaldiio's extended ark, as ESPnet's
  ``format_wav_scp.py`` writes them (``kaldiio.save_ark(..., write_function="soundfile")``): each
  utterance is ``<uttid> AUDIO<length><a 16-bit PCM WAV or FLAC file>``, and wav.scp names it
  ``<uttid> <archive>:<byte offset>``. ESPnet's data loader reads such a wav.scp with the type
  ``kaldi_ark`` (:func:`data_type`). The project's one audio reader,
  :func:`echo_plugin.inference.audio.load_audio`, reads such an entry as it reads a file, so every
  stage that reads audio (speaker statistics, the feature cache, babble, SNR sets, the speaker-adaptive
  pass, transcribe) works on archives too.
"""
from __future__ import annotations

from pathlib import Path
from types import TracebackType

import numpy as np
import soundfile as sf

# The one reader reads archive entries as well as files; ``read_entry`` is its name for the stages that
# read stage 2's wav.scp values (format_data, speed_perturb).
from echo_plugin.inference.audio import is_archive_entry
from echo_plugin.inference.audio import load_audio as read_entry

__all__ = ["AUDIO_FORMATS", "ArchiveWriter", "check_format", "data_type", "is_archive_entry", "is_archive_format",
           "read_entry", "write_audio_file"]

# --audio_format -> the container libsndfile writes (one file, or one entry of an archive)
AUDIO_FORMATS = {"wav": "WAV", "flac": "FLAC", "wav.ark": "WAV", "flac.ark": "FLAC"}


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

