"""Splitting a long recording at its silences into chunks the model can decode one by one.

A model trained on short clips decodes a minute of speech badly or not at all
(a Whisper-style encoder has a fixed number of positions), so a recording longer
than ``max_seconds`` is cut into chunks of at most ``max_seconds``, and the
chunk transcripts are joined in order.

Where to cut: an energy VAD against the file's own noise floor. Frame RMS in dB
(20 ms frames, 10 ms hop); digital silence (RMS below ``DIGITAL_SILENCE``) is
always silent; the noise floor is the mean dB of the quietest 60 ms of the
other frames, and a frame is silent when it is within ``margin_db`` of that floor
(and in the quieter half between floor and the loud frames). A file whose loud frames are less than
``min_range_db`` above its floor has no silence but its digital zeros (a
continuous tone, a noisy room). Silent runs of at least ``min_silence_seconds``
are the candidate pauses.

Greedily from the start, each cut is the middle of a pause inside the allowed
window ``[start + min_chunk_seconds, start + max_seconds]`` (clipped to it):
the longest pause in the window's second half, else the latest pause in the
window. A window without a pause is cut at its end and the next chunk starts
``overlap_seconds`` earlier (a word across that cut is heard whole by one of
the two chunks, and a word inside the overlap may be transcribed twice).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FRAME_SECONDS = 0.02
HOP_SECONDS = 0.01
DIGITAL_SILENCE = 1e-6  # RMS below this (about -120 dB full scale): zeros, or dither at most
FLOOR_FRAMES = 5  # the noise floor: the quietest 60 ms (5 frames) of non-digital frames
LOUD_PERCENTILE = 95.0


@dataclass(frozen=True)
class Chunk:
    """Samples ``[start, end)`` of the recording; ``forced``: its end was cut without a pause."""

    start: int
    end: int
    forced: bool = False

    def seconds(self, fs: int) -> tuple[float, float]:
        return self.start / fs, self.end / fs


@dataclass(frozen=True)
class ChunkingConfig:
    """The splitter's settings (see the module docstring)."""

    max_seconds: float = 20.0
    min_chunk_seconds: float = 1.0
    min_silence_seconds: float = 0.2
    margin_db: float = 12.0
    min_range_db: float = 20.0
    overlap_seconds: float = 0.5

    def __post_init__(self) -> None:
        if not 0 < self.min_chunk_seconds <= self.max_seconds / 2:
            raise ValueError(f"min_chunk_seconds must be in (0, max_seconds / 2], got {self.min_chunk_seconds} "
                             f"with max_seconds {self.max_seconds}")
        if not 0 <= self.overlap_seconds < self.min_chunk_seconds:
            raise ValueError(f"overlap_seconds must be in [0, min_chunk_seconds), got {self.overlap_seconds}")

    @classmethod
    def for_limit(cls, max_seconds: float) -> ChunkingConfig:
        """The defaults with ``max_seconds``; the shortest chunk (1 s) and the overlap (0.5 s) shrink to a
        quarter and an eighth of a limit under 4 s."""
        if max_seconds <= 0:
            raise ValueError(f"max_seconds must be positive, got {max_seconds}")
        shortest = min(cls.min_chunk_seconds, max_seconds / 4)
        return cls(max_seconds=max_seconds, min_chunk_seconds=shortest,
                   overlap_seconds=min(cls.overlap_seconds, shortest / 2))


DEFAULT_CHUNKING = ChunkingConfig()


def frame_rms(samples: np.ndarray, fs: int) -> np.ndarray:
    """samples (N,) -> RMS (F,) of 20 ms frames every 10 ms (frame f covers samples from f * hop);
    the last frame is zero-padded."""
    frame, hop = round(FRAME_SECONDS * fs), round(HOP_SECONDS * fs)
    count = max(1, int(np.ceil(max(len(samples) - frame, 0) / hop)) + 1)
    padded = np.zeros((count - 1) * hop + frame, dtype=np.float64)
    padded[: len(samples)] = samples
    frames = np.lib.stride_tricks.sliding_window_view(padded, frame)[::hop][:count]
    return np.sqrt(np.mean(frames * frames, axis=1))


def noise_floor_db(db: np.ndarray, live: np.ndarray) -> float:
    """The quietest stretch of FLOOR_FRAMES consecutive live frames: its mean dB (the quietest live frame
    when no stretch is that long). A percentile would miss the floor of a file that is almost all speech."""
    windows = np.lib.stride_tricks.sliding_window_view(db, FLOOR_FRAMES) if len(db) >= FLOOR_FRAMES else None
    if windows is not None:
        whole = np.lib.stride_tricks.sliding_window_view(live, FLOOR_FRAMES).all(axis=1)
        if whole.any():
            return float(windows[whole].mean(axis=1).min())
    return float(db[live].min())


def silent_frames(rms: np.ndarray, margin_db: float = 12.0, min_range_db: float = 20.0) -> np.ndarray:
    """RMS (F,) -> bool (F,) True = silent: digital silence, or within ``margin_db`` of the noise floor
    (``noise_floor_db``) and below the midpoint of that floor and the loud frames (LOUD_PERCENTILE)."""
    silent = rms < DIGITAL_SILENCE
    live = ~silent
    if not live.any():
        return silent
    db = 20.0 * np.log10(np.maximum(rms, DIGITAL_SILENCE))
    floor = noise_floor_db(db, live)
    loud = float(np.percentile(db[live], LOUD_PERCENTILE))
    if loud - floor < min_range_db:
        return silent
    return silent | (db < min(floor + margin_db, (floor + loud) / 2))


def runs(mask: np.ndarray, min_length: int) -> list[tuple[int, int]]:
    """bool (F,) -> [start, end) of the runs of True at least ``min_length`` long, in order."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2]) if b - a >= min_length]


def pauses(samples: np.ndarray, fs: int, config: ChunkingConfig) -> list[tuple[int, int]]:
    """samples (N,) -> [start, end) sample ranges of the silent runs of at least ``min_silence_seconds``."""
    hop, frame = round(HOP_SECONDS * fs), round(FRAME_SECONDS * fs)
    silent = silent_frames(frame_rms(samples, fs), config.margin_db, config.min_range_db)
    # frame f covers samples [f * hop, f * hop + frame): a run of silent frames a..b-1 is silent from a * hop
    # to (b - 1) * hop + frame
    found = runs(silent, max(1, round((config.min_silence_seconds * fs - frame) / hop) + 1))
    return [(a * hop, min((b - 1) * hop + frame, len(samples))) for a, b in found]


def choose_cut(window: tuple[int, int], spans: list[tuple[int, int]]) -> int | None:
    """The cut in ``window`` [lo, hi]: the middle of the longest pause (clipped to the window) in the
    window's second half, else of the latest pause in the window; None without one."""
    lo, hi = window
    clipped = [(max(a, lo), min(b, hi)) for a, b in spans if b > lo and a < hi]
    if not clipped:
        return None
    half = (lo + hi) / 2
    late = [(b - a, (a + b) // 2) for a, b in clipped if (a + b) / 2 >= half]
    if late:
        return max(late)[1]
    a, b = clipped[-1]
    return (a + b) // 2


def split(samples: np.ndarray, fs: int, config: ChunkingConfig | None = None) -> list[Chunk]:
    """samples (N,) at ``fs`` Hz -> chunks in order, each at most ``max_seconds``: one chunk [0, N) when the
    recording fits, else cut at pauses (fixed cuts with overlap where a window has none)."""
    config = config or ChunkingConfig()
    total = len(samples)
    limit = int(config.max_seconds * fs)
    if total <= limit:
        return [Chunk(0, total)]
    spans = pauses(samples, fs, config)
    shortest, overlap = int(config.min_chunk_seconds * fs), int(config.overlap_seconds * fs)
    chunks: list[Chunk] = []
    start = 0
    while total - start > limit:
        hi = min(start + limit, total - shortest)  # the rest must not become a fragment
        cut = choose_cut((start + shortest, hi), spans)
        if cut is None:
            chunks.append(Chunk(start, hi, forced=True))
            start = hi - overlap
        else:
            chunks.append(Chunk(start, cut))
            start = cut
    chunks.append(Chunk(start, total))
    return chunks
