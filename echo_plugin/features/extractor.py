"""All Echo input features of a batch on one frame grid, computed or taken from a cache.

Stored ("raw") arrays per utterance of N samples, T = N // hop + 1 frames:

===========  =====================  ==========================================
name         shape                  content
===========  =====================  ==========================================
spectrogram  (T, n_mels)            log mel power (torchaudio)
pitch        (T,)                   f0 in Hz, 0 = unvoiced (WORLD dio/harvest)
harmonic     (T, world_bands)       log mel-band WORLD spectral envelope
aperiodic    (T, world_bands)       mel-band aperiodicity, dB (periodicity or D4C)
phase        (T, 2 * phase_bands)   IF deviation and group delay per mel band
===========  =====================  ==========================================

``waveform`` has no stored form: its encoder reads the samples.
:meth:`FeatureExtractor.utterance` (used by the cache writer) and
:meth:`FeatureExtractor.forward` (used by the frontend) call the same code,
so cached and on-the-fly arrays agree.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from echo_plugin.features.aperiodic import aperiodicity_bands, check_method
from echo_plugin.features.grid import FrameGrid
from echo_plugin.features.harmonic import envelope_bands
from echo_plugin.features.phase import PhaseFeatures
from echo_plugin.features.pitch import F0Config, world_f0
from echo_plugin.features.spectrogram import LogMelSpectrogram

FEATURES = ("spectrogram", "waveform", "pitch", "harmonic", "aperiodic", "phase")
STORED_FEATURES = ("spectrogram", "pitch", "harmonic", "aperiodic", "phase")
WORLD_FEATURES = ("pitch", "harmonic", "aperiodic")  # computed per utterance with pyworld on CPU


@dataclass(frozen=True)
class FeatureConfig:
    """Every setting that changes a stored feature array (the cache records it)."""

    fs: int = 16000
    n_fft: int = 512
    hop_length: int = 128
    win_length: Optional[int] = None
    n_mels: int = 80
    fmin: float = 0.0
    fmax: Optional[float] = None
    f0: F0Config = field(default_factory=F0Config)
    world_bands: int = 16
    aperiodic_method: str = "periodicity"
    phase_bands: int = 16

    @property
    def grid(self) -> FrameGrid:
        return FrameGrid(fs=self.fs, n_fft=self.n_fft, hop_length=self.hop_length, win_length=self.win_length)

    def dims(self) -> Dict[str, int]:
        """Channels per stored feature (``pitch``: 1, the f0 track)."""
        return {
            "spectrogram": self.n_mels,
            "pitch": 1,
            "harmonic": self.world_bands,
            "aperiodic": self.world_bands,
            "phase": 2 * self.phase_bands,
        }

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, conf: Mapping[str, Any]) -> FeatureConfig:
        conf = dict(conf)
        f0 = conf.pop("f0", None) or {}
        return cls(f0=F0Config(**f0), **conf)


@dataclass
class Extracted:
    """A batch of stored-form features: ``feats[name]`` (B, T) for pitch, else (B, T, C); 0 past ``lengths``."""

    feats: Dict[str, Tensor]
    lengths: Tensor
    f0: Optional[Tensor]


class FeatureExtractor(nn.Module):
    """Computes the requested stored features (no learned parameters).

    Args:
        conf: feature settings.
        features: names from ``STORED_FEATURES`` to produce (``waveform`` is ignored here).
    """

    def __init__(self, conf: FeatureConfig, features: Sequence[str]) -> None:
        super().__init__()
        unknown = set(features) - set(FEATURES)
        if unknown:
            raise ValueError(f"unknown features {sorted(unknown)}; known: {', '.join(FEATURES)}")
        self.conf = conf
        self.grid = conf.grid
        self.features = tuple(name for name in STORED_FEATURES if name in features)
        self.spectrogram = (
            LogMelSpectrogram(self.grid, conf.n_mels, conf.fmin, conf.fmax) if "spectrogram" in features else None
        )
        self.phase = PhaseFeatures(self.grid, conf.phase_bands) if "phase" in features else None
        if "aperiodic" in features:
            check_method(conf.aperiodic_method, conf.fs)

    # -- one utterance, numpy (the cache writer) --------------------------------------------
    def utterance(self, wave: np.ndarray, features: Optional[Sequence[str]] = None) -> Dict[str, np.ndarray]:
        """(N,) float waveform -> {name: float32 array} for ``features`` (default: all configured)."""
        names = self.features if features is None else tuple(features)
        x = torch.from_numpy(np.asarray(wave, dtype=np.float32))[None]
        out = self.forward(x, torch.tensor([x.size(1)]), names=names)
        return {name: value[0].cpu().numpy() for name, value in out.feats.items()}

    # -- a batch, torch (the frontend) -------------------------------------------------------
    def forward(
        self,
        wave: Tensor,
        lengths: Tensor,
        names: Optional[Sequence[str]] = None,
        with_f0: bool = False,
        cached: Optional[Mapping[str, Tuple[Tensor, Tensor]]] = None,
    ) -> Extracted:
        """(B, N) zero-padded waveforms, (B,) sample counts -> :class:`Extracted`.

        ``cached`` maps a stored-feature name to ``(array (B, T', ...), lengths (B,))``
        from the data loader; those are checked against the frame grid and used
        instead of computing. ``with_f0`` computes f0 even if ``pitch`` is not
        requested (the encoder wants it).
        """
        names = self.features if names is None else tuple(names)
        cached = dict(cached or {})
        frame_lengths = self.grid.frame_lengths(lengths)
        num_frames = self.grid.num_frames(wave.size(1))
        feats: Dict[str, Tensor] = {}
        for name in list(cached):
            if name in names or (name == "pitch" and with_f0):
                feats[name] = self._check_cached(name, *cached[name], frame_lengths, num_frames).to(wave.device)

        want_world = [n for n in WORLD_FEATURES if n in names and n not in feats]
        if with_f0 and "pitch" not in feats and "pitch" not in want_world:
            want_world.insert(0, "pitch")
        if want_world:
            feats.update(self._world(wave, lengths, want_world, feats.get("pitch"), num_frames))
        if "spectrogram" in names and "spectrogram" not in feats:
            feats["spectrogram"] = self._framewise(self.spectrogram, wave, frame_lengths)
        if "phase" in names and "phase" not in feats:
            feats["phase"] = self._framewise(self.phase, wave, frame_lengths)
        f0 = feats.get("pitch")
        feats = {name: feats[name] for name in names if name in feats}
        return Extracted(feats=feats, lengths=frame_lengths, f0=f0)

    def _framewise(self, module: Optional[nn.Module], wave: Tensor, frame_lengths: Tensor) -> Tensor:
        if module is None:
            raise ValueError("this extractor was not configured for that feature")
        values = module(wave)
        valid = torch.arange(values.size(1), device=values.device)[None, :] < frame_lengths[:, None].to(values.device)
        return values * valid[..., None]

    def _world(
        self, wave: Tensor, lengths: Tensor, names: Sequence[str], f0: Optional[Tensor], num_frames: int
    ) -> Dict[str, Tensor]:
        """pyworld, utterance by utterance on CPU; f0 is rounded to float32 before the
        envelope/aperiodicity analyses so cached and computed f0 give the same arrays."""
        conf, grid = self.conf, self.grid
        dims = conf.dims()
        out = {name: np.zeros((wave.size(0), num_frames) + ((dims[name],) if name != "pitch" else ()), np.float32)
               for name in names}
        samples = wave.detach().to("cpu", torch.float32).numpy().astype(np.float64)
        for i, n in enumerate(lengths.tolist()):
            x = samples[i, :n]
            t = grid.num_frames(n)
            times = np.arange(t, dtype=np.float64) * grid.hop_length / grid.fs
            if f0 is not None:
                track = f0[i, :t].detach().cpu().numpy().astype(np.float32)
            else:
                track = world_f0(x, grid, conf.f0)[0].astype(np.float32)
            if "pitch" in out:
                out["pitch"][i, :t] = track
            track64 = track.astype(np.float64)
            if "harmonic" in out:
                out["harmonic"][i, :t] = envelope_bands(x, track64, times, grid, conf.world_bands, conf.f0.floor)
            if "aperiodic" in out:
                out["aperiodic"][i, :t] = aperiodicity_bands(
                    x, track64, times, grid, conf.world_bands, conf.f0.floor, conf.aperiodic_method
                )
        return {name: torch.from_numpy(value).to(wave.device) for name, value in out.items()}

    def _check_cached(
        self, name: str, array: Tensor, lengths: Tensor, frame_lengths: Tensor, num_frames: int
    ) -> Tensor:
        """A loader-delivered array, cut/padded to ``num_frames``, after checking it fits the grid."""
        if not torch.equal(lengths.cpu(), frame_lengths.cpu()):
            raise ValueError(
                f"cached '{name}' has {lengths.tolist()} frames but the audio gives {frame_lengths.tolist()} "
                f"(hop {self.grid.hop_length}): the cache was made with other settings or other audio"
            )
        expected = self.conf.dims()[name]
        channels = 1 if array.dim() == 2 else array.size(-1)
        if array.dim() not in (2, 3) or channels != expected or (name == "pitch") != (array.dim() == 2):
            want = "(B, T)" if name == "pitch" else f"(B, T, {expected})"
            raise ValueError(f"cached '{name}' has shape {tuple(array.shape)}; expected {want}")
        array = array.float()[:, :num_frames]
        if array.size(1) < num_frames:
            pad = [0, 0] * (array.dim() - 2) + [0, num_frames - array.size(1)]
            array = nn.functional.pad(array, pad)
        return array
