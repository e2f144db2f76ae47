"""Transcription with an exported bundle (``python -m echo_plugin.bin.export_onnx``): the model's CTC path in
onnxruntime, greedy decoding, no PyTorch model and no beam search.

    from echo_plugin.inference.onnx_transcriber import OnnxTranscriber
    OnnxTranscriber("exported/", int8=True).transcribe_file("a.wav")  # -> OnnxResult(text='TWO', ...)

This is the cheap deployed path (bench/EXPORT_whisper.md: the FSDD default's INT8 graph at RTF 0.0148 on
connected digits, loaded machine): what it gives up is the attention decoder, so a model whose table rows come
from joint CTC/attention beam search is scored here by its CTC best path (the recipe's
``conf/decode_asr_ctc_greedy*.yaml`` rows are the comparable ones). A recording longer than the chunking limit
is split at pauses as ``transcribe`` splits it for the PyTorch model, and the chunk transcripts are joined.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from echo_plugin.export.onnx_ctc import META_FILE, OnnxCTC
from echo_plugin.inference.audio import read_audio
from echo_plugin.inference.chunking import ChunkingConfig, split


class DecodeError(ValueError):
    """A readable recording the exported graph cannot decode (too short for its subsampling)."""


@dataclass
class OnnxResult:
    """One input's greedy transcript; ``chunks`` (start s, end s, text) when it was split."""

    text: str
    seconds: float
    chunks: list[tuple[float, float, str]] = field(default_factory=list)


def is_bundle(path: Path) -> bool:
    """True for an export directory (it holds export.json)."""
    return path.is_dir() and (path / META_FILE).is_file()


class OnnxTranscriber:
    """An exported bundle, ready to transcribe files one at a time (onnxruntime, ``threads`` intra-op)."""

    def __init__(self, bundle: str | Path, int8: bool = False, threads: int = 1,
                 chunking: ChunkingConfig | None = None) -> None:
        self.ctc = OnnxCTC(bundle, int8=int8, threads=threads)
        self.fs = self.ctc.fs
        self.chunking = chunking

    def read(self, path: str | Path, utt_id: str | None = None) -> np.ndarray:
        """Samples (N,) at the model's rate; AudioError naming the file (and utterance) when unusable."""
        return read_audio(path, self.fs, utt_id=utt_id)

    def decode(self, samples: np.ndarray) -> str:
        """samples (N,) -> the greedy transcript; DecodeError when the graph cannot take them."""
        try:
            return self.ctc.transcribe(np.asarray(samples, dtype=np.float32)).text  # OnnxCTC's greedy text
        except Exception as error:  # onnxruntime's own error types (a shape the subsampling cannot take)
            raise DecodeError(f"{len(samples) / self.fs:.3f} s: {str(error).splitlines()[0]}") from None

    def transcribe(self, samples: np.ndarray) -> OnnxResult:
        """samples (N,) at the model's rate -> the transcript, split at pauses when longer than the limit."""
        seconds = len(samples) / self.fs
        pieces = split(samples, self.fs, self.chunking) if self.chunking is not None else []
        if len(pieces) <= 1:
            return OnnxResult(self.decode(samples), seconds)
        chunks = [(c.start / self.fs, c.end / self.fs, self.decode(samples[c.start : c.end])) for c in pieces]
        return OnnxResult(" ".join(text for _, _, text in chunks if text), seconds, chunks)

    def transcribe_file(self, path: str | Path) -> OnnxResult:
        return self.transcribe(self.read(path))
