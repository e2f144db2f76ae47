"""Reading audio: one reader and one error type for the recipes' stages and for transcription.

:func:`load_audio` reads any wav.scp value the recipes write or ESPnet reads:

* an audio file (ESPnet's data type ``sound``);
* an entry of a Kaldi archive, ``<archive>:<byte offset>`` (data type ``kaldi_ark``), as stage 2's
  ``--audio_format wav.ark`` / ``flac.ark`` and ESPnet's ``format_wav_scp.py`` write them (kaldiio's
  extended ark: ``AUDIO<length><a WAV or FLAC file>``), or a plain RIFF/WAVE entry;
* such an entry with Kaldi's range of samples, ``<archive>:<offset>[<first>:<last>]`` (both ends
  included, as kaldiio reads it). ESPnet itself never writes ranges (it cuts segments into entries of
  their own), but its loader reads them, so this reader does too.

Every problem is an :class:`AudioError` (a ValueError) on one line naming the file (or the archive and
its entry); :func:`read_audio` adds the utterance.
"""
from __future__ import annotations

import re
import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf

# <archive>:<offset>, optionally [<first>:<last>]; the archive name is anything before the last ':<digits>'
ARCHIVE_ENTRY = re.compile(r"(?P<archive>.+):(?P<offset>\d+)(?:\[(?P<range>[^\]]*)\])?")
SAMPLE_RANGE = re.compile(r"(?P<first>\d+):(?P<last>\d+)")


class AudioError(ValueError):
    """An audio file or archive entry that cannot be used, with the file named."""


def riff_declared_frames(handle: BinaryIO, end: int) -> tuple[int, int] | None:
    """(frames the RIFF/WAVE header's data chunk declares, frames held before byte ``end``) of the WAV
    starting at the handle's position, or None for another format. libsndfile reads a cut-off WAV
    silently, as far as it goes; this tells it apart."""
    head = handle.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    block_align = None
    while True:
        chunk = handle.read(8)
        if len(chunk) < 8:
            return None
        name, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
        if name == b"fmt ":
            fmt = handle.read(size + (size & 1))
            block_align = struct.unpack("<H", fmt[12:14])[0] if len(fmt) >= 14 else None
        elif name == b"data":
            if not block_align or size == 0xFFFFFFFF:  # streamed WAVs leave the size unset
                return None
            return size // block_align, max(end - handle.tell(), 0) // block_align
        else:
            handle.seek(size + (size & 1), 1)


def wav_declared_frames(path: Path) -> tuple[int, int] | None:
    """(frames the WAV file's header declares, frames the file holds), or None for another format."""
    with open(path, "rb") as handle:
        return riff_declared_frames(handle, Path(path).stat().st_size)


def is_archive_entry(value: str | Path) -> bool:
    """Whether a wav.scp value names an archive entry (``<archive>:<offset>[range]``), not a file."""
    return ARCHIVE_ENTRY.fullmatch(str(value)) is not None and not Path(value).is_file()


def one_line(error: BaseException) -> str:
    """An exception's message on one line (kaldiio's and libsndfile's may span several)."""
    return " ".join(str(error).split()) or type(error).__name__


def entry_shortfall(handle: BinaryIO, offset: int, end: int) -> str | None:
    """Why the archive entry at ``offset`` holds fewer bytes than it declares (the archive ends at byte
    ``end``), or None. kaldiio reads what is there: a cut-off entry would come back short and silent."""
    handle.seek(offset)
    head = handle.read(8)
    if head[:5] == b"AUDIO" and len(head) >= 6:  # kaldiio: AUDIO, n, length (n bytes, little-endian), the file
        handle.seek(offset + 6)
        length = int.from_bytes(handle.read(head[5]), "little")
        declared, start = length, offset + 6 + head[5]
    elif head[:4] == b"RIFF" and len(head) == 8:  # a WAV written into the archive as it is (Kaldi's wav-copy)
        declared, start = struct.unpack("<I", head[4:8])[0] + 8, offset
    else:
        return None
    if start + declared > end:
        return f"it declares {declared} bytes, the archive holds {max(end - start, 0)}"
    handle.seek(start)
    frames = riff_declared_frames(handle, start + declared)
    if frames is not None and frames[1] < frames[0]:
        return f"its WAV header declares {frames[0]} samples, the entry holds {frames[1]}"
    return None


def sample_range(value: str, text: str, frames: int) -> slice:
    """The samples ``first:last`` (both included) of an entry of ``frames`` samples; AudioError when the
    range is not of that form or reaches past the entry."""
    match = SAMPLE_RANGE.fullmatch(text)
    if match is None:
        raise AudioError(f"archive entry {value}: range [{text}] is not [<first sample>:<last sample>]")
    first, last = int(match["first"]), int(match["last"])
    if not first <= last < frames:
        raise AudioError(f"archive entry {value}: range [{text}] is outside its {frames} samples")
    return slice(first, last + 1)


def load_archive_entry(value: str) -> tuple[np.ndarray, int]:
    """Float32 samples (frames x channels) and the rate of the archive entry ``value``; AudioError naming
    it when the archive is missing, or the entry is past its end, cut off, not audio or empty."""
    import kaldiio  # deferred: only archives need it

    match = ARCHIVE_ENTRY.fullmatch(value)
    archive, offset = Path(match["archive"]), int(match["offset"])
    if not archive.is_file():
        raise AudioError(f"missing audio archive {archive} (entry {value})")
    end = archive.stat().st_size
    if offset >= end:
        raise AudioError(f"archive entry {value}: offset {offset} is past the end of {archive} ({end} bytes)")
    with open(archive, "rb") as handle:
        shortfall = entry_shortfall(handle, offset, end)
    if shortfall:
        raise AudioError(f"truncated archive entry {value}: {shortfall}")
    try:
        loaded = kaldiio.load_mat(f"{archive}:{offset}")
    except Exception as e:  # kaldiio raises several types for bad offsets and data
        raise AudioError(f"unreadable archive entry {value}: {one_line(e)}") from None
    if not (isinstance(loaded, tuple) and isinstance(loaded[0], int) and isinstance(loaded[1], np.ndarray)):
        raise AudioError(f"archive entry {value} holds no audio (a {type(loaded).__name__})")
    rate, samples = loaded
    if np.issubdtype(samples.dtype, np.integer):  # a WAV entry comes back as its PCM integers: to [-1, 1)
        samples = samples / float(np.iinfo(samples.dtype).max + 1)
    samples = np.asarray(samples, dtype=np.float32)
    samples = samples[:, None] if samples.ndim == 1 else samples
    if match["range"] is not None:
        samples = samples[sample_range(value, match["range"], len(samples))]
    if len(samples) == 0:
        raise AudioError(f"empty archive entry {value} (0 samples)")
    return samples, rate


def load_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Float32 samples (frames x channels) and the sample rate of a wav.scp value: an audio file or an
    archive entry (module docstring); AudioError naming it when it is missing, unreadable, empty or
    shorter than its header says."""
    if is_archive_entry(path):
        return load_archive_entry(str(path))
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"missing audio file {path}")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises several types for bad files
        raise AudioError(f"unreadable audio file {path}: {one_line(e)}") from None
    if len(data) == 0:
        raise AudioError(f"empty audio file {path} (0 samples)")
    frames = wav_declared_frames(path)
    if frames is not None and frames[1] < frames[0]:
        raise AudioError(f"truncated audio file {path}: its header declares {frames[0]} samples, "
                         f"the file holds {frames[1]}")
    return data, rate


def read_audio(path: str | Path, fs: int, utt_id: str | None = None) -> np.ndarray:
    """Samples (N,) of a wav.scp value (a file or an archive entry) as mono float32 at ``fs`` Hz
    (resampled if needed); AudioError naming the utterance (when given) and the file."""
    try:
        samples, rate = load_audio(path)
    except AudioError as error:
        raise AudioError(f"utterance '{utt_id}': {error}" if utt_id else str(error)) from None
    mono = samples.mean(axis=1)
    if rate != fs:
        import torch  # deferred: the recipe's stages import this module and only some resample
        import torchaudio

        mono = torchaudio.functional.resample(torch.from_numpy(mono), rate, fs).numpy()
    return mono
