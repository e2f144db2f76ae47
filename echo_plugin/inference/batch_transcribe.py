"""Many recordings in one process: chunked at silences, grouped by length, encoder batched, results in order.

:func:`transcribe_recordings` takes recordings one by one (a lazy iterator: files are read
as they are needed) and yields one :class:`Result` per recording, in input order:

1. each recording longer than the chunking limit is split at its pauses
   (:mod:`echo_plugin.inference.chunking`); every chunk keeps its recording's speaker statistics;
2. the chunks of a window of ``window`` recordings are sorted by length (longest first, so each
   batch pads little) and cut into batches of ``batch_size``;
3. each batch goes through :meth:`Transcriber.transcribe_batch` (one encoder call for the batch,
   ESPnet's beam search per chunk);
4. the chunk transcripts of a recording are joined in order.

Batch 1 (the default of the Python API) keeps the window at one recording, so a result comes as
soon as its file is decoded.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable, Iterator

import numpy as np

from echo_plugin.inference.chunking import DEFAULT_CHUNKING, Chunk, ChunkingConfig, split

if TYPE_CHECKING:
    from echo_plugin.inference.transcriber import Hypothesis, Transcriber


@dataclass
class Recording:
    """One input: its id, file (or '' for samples), samples (N,) at the model's rate, speaker statistics
    (2, D) or None."""

    utt: str
    path: str
    samples: np.ndarray
    stats: np.ndarray | None = None


@dataclass
class ChunkResult:
    """One chunk of a recording and its hypotheses (best first)."""

    chunk: Chunk
    hyps: list[Hypothesis]


@dataclass
class Result:
    """A recording's transcription: ``hyps`` best first (one chunk: ESPnet's n best; several: the chunks'
    best joined, alone), ``chunks`` when it was split, ``error`` (and no hyps) when a chunk was too short
    for the front end or the encoder: what went wrong, to follow "too short audio file <path>: "."""

    utt: str
    path: str
    seconds: float
    hyps: list[Hypothesis] = field(default_factory=list)
    chunks: list[ChunkResult] = field(default_factory=list)
    error: str | None = None


def join(hyps: list[Hypothesis]) -> Hypothesis:
    """The chunks' best hypotheses in order -> one: texts joined by a space (empty ones left out), scores
    summed, tokens concatenated."""
    from echo_plugin.inference.transcriber import Hypothesis

    scores = [h.score for h in hyps]
    return Hypothesis(" ".join(h.text for h in hyps if h.text), None if None in scores else float(sum(scores)),
                      [t for h in hyps for t in h.tokens])


def batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Indices of ``lengths`` sorted longest first (stable), cut into groups of ``batch_size``."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i: i + batch_size] for i in range(0, len(order), batch_size)]


def decode_window(model: Transcriber, recordings: list[Recording], batch_size: int,
                  chunking: ChunkingConfig | None, nbest: int) -> list[Result]:
    """The recordings of one window -> their Results, in order."""
    pieces: list[tuple[int, Chunk]] = []
    for index, recording in enumerate(recordings):
        n = len(recording.samples)
        chunks = split(recording.samples, model.fs, chunking) if chunking is not None else [Chunk(0, n)]
        pieces.extend((index, chunk) for chunk in chunks)
    decoded: list[list[Hypothesis] | None] = [None] * len(pieces)
    for group in batches([chunk.end - chunk.start for _, chunk in pieces], batch_size):
        speeches = [recordings[pieces[i][0]].samples[pieces[i][1].start: pieces[i][1].end] for i in group]
        stats = [recordings[pieces[i][0]].stats for i in group]
        for i, hyps in zip(group, model.transcribe_batch(speeches, stats, nbest=nbest)):
            decoded[i] = hyps
    results = [Result(r.utt, r.path, len(r.samples) / model.fs) for r in recordings]
    for (index, chunk), hyps in zip(pieces, decoded):
        result = results[index]
        if hyps is None:
            seconds = (chunk.end - chunk.start) / model.fs
            result.error = result.error or f"{seconds:.3f} s give the encoder no output frame"
        result.chunks.append(ChunkResult(chunk, hyps or []))
    for result in results:
        if result.error is not None:
            result.chunks = []
        elif len(result.chunks) == 1:
            result.hyps, result.chunks = result.chunks[0].hyps, []
        else:
            result.hyps = [join([c.hyps[0] for c in result.chunks])]
    return results


def transcribe_recordings(model: Transcriber, recordings: Iterable[Recording], batch_size: int = 1,
                          chunking: ChunkingConfig | None = DEFAULT_CHUNKING, nbest: int = 1,
                          window: int | None = None) -> Iterator[Result]:
    """Recordings -> one Result each, in input order (see the module docstring). ``window``: recordings
    sorted together (default 4 x batch_size, 1 for batch 1); ``chunking`` None decodes each recording whole."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    window = window or (4 * batch_size if batch_size > 1 else 1)
    held: list[Recording] = []
    for recording in recordings:
        held.append(recording)
        if len(held) >= window:
            yield from decode_window(model, held, batch_size, chunking, nbest)
            held = []
    if held:
        yield from decode_window(model, held, batch_size, chunking, nbest)
