"""PNG figures of cross-attention maps, dual-decoder gates and the spectrogram with f0 (matplotlib, Agg).

Every figure has a fixed size in pixels (``width x height`` = figsize x DPI), so
plots of different utterances line up. Maps are drawn averaged over heads.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

DPI = 100
MAP_SIZE = (8.0, 5.0)  # inches: 800 x 500 px
DUAL_SIZE = (14.0, 7.0)  # 1400 x 700 px
SPEC_SIZE = (10.0, 5.0)  # 1000 x 500 px


def _heatmap(ax: plt.Axes, weights: np.ndarray, labels: Sequence[str], title: str) -> None:
    """Draw (L, T) weights with the output tokens on the y axis."""
    image = ax.imshow(weights, aspect="auto", origin="upper", interpolation="nearest", cmap="viridis",
                      vmin=0.0, vmax=max(float(weights.max()), 1e-6))
    ax.set_yticks(range(len(labels)))
    ax.set_yticklabels(labels, fontsize=7)
    ax.set_xlabel("encoder frame")
    ax.set_ylabel("output token")
    ax.set_title(title, fontsize=9)
    ax.figure.colorbar(image, ax=ax, fraction=0.04)


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def plot_cross_attention(weights: np.ndarray, labels: Sequence[str], title: str, path: Path) -> Path:
    """One layer's map: weights (H, L, T) averaged over heads."""
    fig, ax = plt.subplots(figsize=MAP_SIZE)
    _heatmap(ax, weights.mean(axis=0), labels, f"{title} (mean of {weights.shape[0]} heads)")
    fig.tight_layout()
    return _save(fig, path)


def plot_dual_attention(primary: np.ndarray, secondary: np.ndarray, gate: np.ndarray, labels: Sequence[str],
                        title: str, path: Path) -> Path:
    """Primary and secondary maps (H, L, T) side by side, the gate alpha (L,) per output token below."""
    fig = plt.figure(figsize=DUAL_SIZE)
    grid = fig.add_gridspec(2, 2, height_ratios=(3, 1))
    _heatmap(fig.add_subplot(grid[0, 0]), primary.mean(axis=0), labels, f"{title}: primary (speech)")
    _heatmap(fig.add_subplot(grid[0, 1]), secondary.mean(axis=0), labels, f"{title}: secondary (noise)")
    ax = fig.add_subplot(grid[1, :])
    ax.bar(range(len(gate)), gate, color="tab:orange")
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, fontsize=7, rotation=90)
    ax.set_ylim(0.0, 1.0)
    ax.set_ylabel("gate alpha\n(1 = primary)")
    fig.tight_layout()
    return _save(fig, path)


def plot_spectrogram(speech: np.ndarray, fs: int, f0: Optional[np.ndarray], path: Path) -> Path:
    """Log spectrogram of ``speech`` (N,); with ``f0`` (frames,) Hz (0 = unvoiced) its track below."""
    fig, axes = plt.subplots(2 if f0 is not None else 1, 1, figsize=SPEC_SIZE, sharex=True, squeeze=False)
    duration = len(speech) / fs
    with np.errstate(divide="ignore"):  # digital silence: log of 0 is drawn as the floor
        axes[0, 0].specgram(speech, Fs=fs, NFFT=min(512, max(16, len(speech) // 4)), cmap="magma")
    axes[0, 0].set_ylabel("frequency (Hz)")
    axes[0, 0].set_title("spectrogram" + (" and f0" if f0 is not None else ""), fontsize=9)
    if f0 is not None:
        times = (np.arange(len(f0)) + 0.5) * duration / max(len(f0), 1)
        voiced = np.where(f0 > 0, f0, np.nan)
        axes[1, 0].plot(times, voiced, ".", color="tab:blue", markersize=3)
        axes[1, 0].set_ylabel("f0 (Hz)")
    axes[-1, 0].set_xlabel("time (s)")
    axes[-1, 0].set_xlim(0.0, duration)
    fig.tight_layout()
    return _save(fig, path)
