"""Per-utterance mean and variance normalization over speech frames, with a prior (online CMVN).

A model that normalizes with statistics of the speaker (``speaker_mvn``) needs
several recordings of that speaker, which one file of an unknown speaker
cannot give. This layer needs only the utterance itself, so training, the
recipe's decode and a user's single-file transcription see the same features.

For one utterance, with ``n`` speech frames (frames whose log energy, the
log-sum-exp over the feature bins, is within ``vad_range`` of the loudest
frame's; silence would otherwise set the statistics) of sum ``s1`` and sum of
squares ``s2``, and the training speakers' pooled speech-frame statistics
``mu0``, ``var0`` counted as ``prior_frames`` = tau virtual frames (Kaldi's
online CMVN with a global prior)::

    mean = (s1 + tau * mu0) / (n + tau)
    var  = (s2 + tau * (var0 + mu0**2)) / (n + tau) - mean**2
    y    = (x - mean) / sqrt(var)

tau = 0 gives the utterance's own speech statistics; tau = inf the pooled
training statistics (global MVN over speech frames). A short utterance (one
spoken digit, ~50 speech frames) leans on the prior, so its word is not
normalized away; a long one on its own channel and speaker.

YAML (the stage runner's ``--feats_normalize speech_mvn`` sets ``stats_file``)::

    normalize: speech_mvn
    normalize_conf: {stats_file: exp/asr_x/speaker_stats/train/pooled_stats.npz, prior_frames: 100}
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Tuple, Union

import torch
from espnet2.layers.abs_normalize import AbsNormalize
from torch import Tensor

from echo_plugin.asr.normalize.speaker_mvn import apply_mvn, full_lengths, load_pooled_stats
from echo_plugin.espnet_legacy import make_pad_mask

DEFAULT_VAD_RANGE = 8.0  # natural-log energy units below the loudest frame (~35 dB)


def speech_frame_mask(feats: Tensor, lengths: Tensor, vad_range: float = DEFAULT_VAD_RANGE) -> Tensor:
    """feats (B, T, D) log features, lengths (B,) -> bool (B, T): valid frames within ``vad_range``
    of their utterance's loudest frame's log energy (log-sum-exp over D)."""
    energy = torch.logsumexp(feats.double(), dim=-1)
    valid = ~make_pad_mask(lengths, maxlen=feats.shape[1]).to(feats.device)
    loudest = energy.masked_fill(~valid, -math.inf).max(dim=1, keepdim=True).values
    return valid & (energy >= loudest - vad_range)


class SpeechMVN(AbsNormalize):
    """(x - mean_u) / std_u with per-utterance speech-frame statistics shrunk to a prior (module docstring).

    Args:
        stats_file: pooled speech-frame statistics of the training set (npz with count, sum,
            sum_square; the stage runner's ``speaker_stats/<train>/pooled_stats.npz``); needed
            unless ``prior_frames`` is 0.
        prior_frames: weight tau of the prior, in frames (0: the utterance alone; inf: the prior alone).
        vad_range: speech frames are within this many natural-log units of the loudest frame.
        norm_means / norm_vars: subtract the mean / divide by the standard deviation.
        eps: floor of the standard deviation.
    """

    def __init__(
        self,
        stats_file: Optional[Union[str, Path]] = None,
        prior_frames: float = 100.0,
        vad_range: float = DEFAULT_VAD_RANGE,
        norm_means: bool = True,
        norm_vars: bool = True,
        eps: float = 1.0e-5,
    ) -> None:
        super().__init__()
        if not prior_frames >= 0:
            raise ValueError(f"speech_mvn: prior_frames must be >= 0 (inf allowed), got {prior_frames}")
        self.stats_file = None if stats_file is None else str(stats_file)
        self.prior_frames, self.vad_range = float(prior_frames), float(vad_range)
        self.norm_means, self.norm_vars, self.eps = norm_means, norm_vars, eps
        if self.stats_file is not None:
            mean, std = load_pooled_stats(self.stats_file, eps)
            self.register_buffer("prior_mean", mean)
            self.register_buffer("prior_std", std)
        else:
            self.prior_mean = self.prior_std = None

    def mean_std(self, x: Tensor, ilens: Tensor) -> Tuple[Tensor, Tensor]:
        """x (B, T, D), ilens (B,) -> mean (B, 1, D), std (B, 1, D) of each utterance."""
        tau = self.prior_frames
        if tau > 0 and self.prior_mean is None:
            raise RuntimeError("speech_mvn with prior_frames > 0 needs stats_file (pooled training statistics)")
        if math.isinf(tau):
            return self.prior_mean.expand(x.shape[0], 1, -1), self.prior_std.expand(x.shape[0], 1, -1)
        mask = speech_frame_mask(x, ilens, self.vad_range).unsqueeze(-1)  # (B, T, 1)
        xd = x.double().masked_fill(~mask, 0.0)
        n = mask.sum(dim=1, keepdim=True).double()  # (B, 1, 1)
        s1, s2 = xd.sum(dim=1, keepdim=True), (xd * xd).sum(dim=1, keepdim=True)
        if tau > 0:
            mu0, var0 = self.prior_mean.double(), self.prior_std.double() ** 2
            s1, s2, n = s1 + tau * mu0, s2 + tau * (var0 + mu0 * mu0), n + tau
        mean = s1 / n
        std = (s2 / n - mean * mean).clamp(min=self.eps ** 2).sqrt()
        return mean.to(x.dtype), std.to(x.dtype)

    def forward(self, x: Tensor, ilens: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        """x (B, T, D), ilens (B,) -> normalized (B, T, D) with padding zeroed, ilens."""
        ilens = full_lengths(x) if ilens is None else ilens
        mean, std = self.mean_std(x, ilens)
        return apply_mvn(x, ilens, mean, std, self.norm_means, self.norm_vars), ilens

    def extra_repr(self) -> str:
        return (f"stats_file={self.stats_file}, prior_frames={self.prior_frames}, vad_range={self.vad_range}, "
                f"norm_means={self.norm_means}, norm_vars={self.norm_vars}")
