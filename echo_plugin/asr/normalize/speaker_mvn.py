"""Speaker-level mean and variance normalization (Kaldi's per-speaker CMVN) for ESPnet2.

``utterance_mvn`` subtracts each utterance's own mean spectrum: on a short
utterance (one spoken digit) that mean is mostly the word itself, so the
normalization removes what the model should recognise. ``global_mvn`` keeps the
word but also keeps each speaker's vocal tract and microphone. Per-speaker
statistics, pooled over all of a speaker's utterances, remove the speaker and the
channel and keep the words: Kaldi's ``apply-cmvn --utt2spk``.

The statistics come from outside the utterance: the recipe computes one
``(2, D)`` array (mean; standard deviation) per speaker of every data dir
(``python -m echo_plugin.recipe.speaker_stats``) and ESPnet's data loader hands it
to the model as the batch key ``spk_stats``. ``model: echo`` (EchoASRModel) and
the Echo inference entry points pass it to this layer with :meth:`SpeakerMVN.provide`.
Without statistics (transcribing one file of an unknown speaker) the layer uses
the training speakers' pooled statistics from ``stats_file``, in training mode it
refuses: a training batch without speaker statistics means the data options are
missing.

YAML (the stage runner sets both with ``--feats_normalize speaker_mvn``)::

    normalize: speaker_mvn
    normalize_conf: {stats_file: exp/asr_stats_bpe30_fs8000/train/speaker_stats/pooled_stats.npz}
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional, Tuple, Union

import numpy as np
import torch
from espnet2.layers.abs_normalize import AbsNormalize
from torch import Tensor

from echo_plugin.espnet_legacy import make_pad_mask

STATS_KEY = "spk_stats"


def load_pooled_stats(stats_file: Union[str, Path], eps: float) -> Tuple[Tensor, Tensor]:
    """ESPnet-style npz (``count``, ``sum``, ``sum_square``) -> mean (D,), std (D,) float32."""
    stats = np.load(stats_file)
    count = float(stats["count"])
    mean = stats["sum"] / count
    var = stats["sum_square"] / count - mean * mean
    std = np.sqrt(np.maximum(var, eps * eps))
    return torch.from_numpy(mean).float(), torch.from_numpy(std).float()


def full_lengths(x: Tensor) -> Tensor:
    """(B,) lengths of a batch x (B, T, D) without padding."""
    return x.new_full([x.size(0)], x.size(1), dtype=torch.long)


def apply_mvn(x: Tensor, ilens: Tensor, mean: Tensor, std: Tensor, norm_means: bool, norm_vars: bool) -> Tensor:
    """x (B, T, D) -> (x - mean) / std (each as asked; mean, std broadcast to x), padding beyond ilens zeroed."""
    if norm_means:
        x = x - mean
    if norm_vars:
        x = x / std
    return x.masked_fill(make_pad_mask(ilens, x, 1), 0.0)


class SpeakerMVN(AbsNormalize):
    """(x - mean_spk) / std_spk per utterance, statistics given per batch (see the module docstring).

    Args:
        stats_file: pooled statistics of the training speakers (npz with count, sum,
            sum_square), used when a batch comes without speaker statistics at inference.
        norm_means / norm_vars: subtract the mean / divide by the standard deviation.
        eps: floor of the standard deviation.
    """

    def __init__(
        self,
        stats_file: Optional[Union[str, Path]] = None,
        norm_means: bool = True,
        norm_vars: bool = True,
        eps: float = 1.0e-5,
    ) -> None:
        super().__init__()
        self.stats_file = None if stats_file is None else str(stats_file)
        self.norm_means, self.norm_vars, self.eps = norm_means, norm_vars, eps
        if self.stats_file is not None:
            mean, std = load_pooled_stats(self.stats_file, eps)
            self.register_buffer("fallback_mean", mean)
            self.register_buffer("fallback_std", std)
        else:
            self.fallback_mean = self.fallback_std = None
        self._stats: Optional[Tensor] = None
        self._upstream = False

    @contextmanager
    def provide(self, stats: Optional[Tensor]) -> Iterator[None]:
        """Use ``stats`` (B, 2, D) or (2, D): per-utterance speaker mean and std, for calls inside."""
        previous = self._stats
        self._stats = stats
        try:
            yield
        finally:
            self._stats = previous

    def _mean_std(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        """-> mean, std broadcastable to x (B, T, D)."""
        stats = self._stats
        if stats is not None:
            stats = stats.to(x.device, x.dtype)
            if stats.dim() == 2:
                stats = stats.unsqueeze(0)
            if stats.shape[1:] != (2, x.shape[-1]) or stats.shape[0] not in (1, x.shape[0]):
                raise ValueError(
                    f"{STATS_KEY} must be (B, 2, D) = ({x.shape[0]}, 2, {x.shape[-1]}), got {tuple(stats.shape)}"
                )
            return stats[:, :1, :], stats[:, 1:, :].clamp(min=self.eps)
        if self.training:
            raise RuntimeError(
                f"speaker_mvn got a training batch without '{STATS_KEY}': train with model: echo and the "
                f"speaker statistics as data (--train_data_path_and_name_and_type <dir>/{STATS_KEY}.scp,"
                f"{STATS_KEY},npy --allow_variable_data_keys true; the stage runner's --feats_normalize speaker_mvn)"
            )
        if self.fallback_mean is None:
            raise RuntimeError(f"speaker_mvn without '{STATS_KEY}' needs stats_file (pooled training statistics)")
        return self.fallback_mean.to(x.device, x.dtype), self.fallback_std.to(x.device, x.dtype)

    @contextmanager
    def applied_upstream(self) -> Iterator[None]:
        """Within: ``forward`` passes its input through, because the frontend has already applied
        :meth:`normalize` to its raw frame features (the Echo frontend's ``input_norm``), where the
        statistics belong; ESPnet's ``encode`` still calls ``normalize`` after the frontend."""
        previous = self._upstream
        self._upstream = True
        try:
            yield
        finally:
            self._upstream = previous

    def normalize(self, x: Tensor, ilens: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        """x (B, T, D), ilens (B,) -> normalized (B, T, D) with padding zeroed, ilens."""
        ilens = full_lengths(x) if ilens is None else ilens
        mean, std = self._mean_std(x)
        return apply_mvn(x, ilens, mean, std, self.norm_means, self.norm_vars), ilens

    def forward(self, x: Tensor, ilens: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        """:meth:`normalize`, or x and ilens unchanged inside :meth:`applied_upstream`."""
        if self._upstream:
            return x, full_lengths(x) if ilens is None else ilens
        return self.normalize(x, ilens)

    def extra_repr(self) -> str:
        return f"stats_file={self.stats_file}, norm_means={self.norm_means}, norm_vars={self.norm_vars}"
