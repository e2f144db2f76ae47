"""Significance of a WER difference: two-level paired bootstrap, Holm correction, seed spread.

Paired bootstrap (Bisani & Ney, "Bootstrap estimates for confidence intervals in
ASR performance evaluation", ICASSP 2004), extended to two levels so that the
speaker, not the utterance, is the independent unit.

Two systems a and b decode the same utterances. Utterance ``u`` of speaker ``s``
has ``e^a_su`` and ``e^b_su`` word errors (S+D+I, possibly averaged over training
seeds, so not necessarily whole) and ``n_su`` reference words. The statistic is
the pooled WER difference in points::

    WER_x = 100 * sum_su e^x_su / sum_su n_su,        D = WER_a - WER_b.

A replicate r draws S speakers with replacement from the S speakers, then, for
each drawn speaker (each time it is drawn), ``n_s`` of its utterances with
replacement; a and b see the SAME draws, which is what makes the test paired.
With ``c_rsu`` the number of times utterance su is in replicate r::

    D_r = 100 * (sum c_rsu e^a_su - sum c_rsu e^b_su) / sum c_rsu n_su.

Drawing speaker s m times and n_s utterances each time is the same as drawing
m * n_s of its utterances at once, which is how the code does it (one integer
draw per utterance slot, counted with ``bincount``; no Python loop over
replicates). Resampling speakers matters: with five speakers, an effect that one
speaker carries moves in and out of the replicates, so its interval is wider
than that of the same mean effect spread over all five.

From the R replicate differences D_r:

* 95% interval: the 2.5 and 97.5 percentiles of D_r (percentile bootstrap);
* relative difference ``D / WER_b`` in %, its interval from ``D_r / WER_b,r``;
* two-sided p-value ``2 * min(#{D_r <= 0}, #{D_r >= 0}) / R`` clipped to
  ``[1/R, 1]``: how often the replicates reach "no difference" or beyond.

Several comparisons from one table are one family; :func:`holm` adjusts their
p-values (Holm 1979: sort ascending, ``p~_(i) = max_{j<=i} min(1, (m-j+1) p_(j))``),
which keeps the family-wise error rate at alpha under any dependence.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

NO_DIFFERENCE = "no detectable difference"
BETTER = "better"
WORSE = "worse"
# Cap on the (replicates x utterances) count matrix one chunk builds: 4M cells (32 MB int64, 32 MB float).
_CHUNK_CELLS = 1 << 22


@dataclass(frozen=True)
class Utts:
    """One speaker's utterances: ids, word errors (float: may be a mean over seeds), reference words."""

    ids: tuple[str, ...]
    errors: np.ndarray
    n_ref: np.ndarray

    def __post_init__(self) -> None:
        errors = np.asarray(self.errors, dtype=float)
        n_ref = np.asarray(self.n_ref, dtype=np.int64)
        if not (len(self.ids) == errors.shape[0] == n_ref.shape[0]) or errors.ndim != 1 or n_ref.ndim != 1:
            raise ValueError(f"Utts: {len(self.ids)} ids, errors {errors.shape}, n_ref {n_ref.shape}: lengths differ")
        if len(set(self.ids)) != len(self.ids):
            raise ValueError("Utts: duplicate utterance ids")
        object.__setattr__(self, "ids", tuple(self.ids))
        object.__setattr__(self, "errors", errors)
        object.__setattr__(self, "n_ref", n_ref)

    @classmethod
    def from_dict(cls, utts: Mapping[str, tuple[float, int]]) -> Utts:
        """From ``{utt_id: (errors, n_ref)}``."""
        ids = tuple(utts)
        return cls(ids, np.array([utts[u][0] for u in ids], dtype=float),
                   np.array([utts[u][1] for u in ids], dtype=np.int64))


@dataclass(frozen=True)
class Comparison:
    """System a against system b; WERs and differences in points, relative ones in %."""

    wer_a: float
    wer_b: float
    diff: float          # wer_a - wer_b
    rel: float           # diff / wer_b * 100 (nan when wer_b is 0)
    ci_low: float
    ci_high: float
    rel_ci_low: float
    rel_ci_high: float
    p_value: float       # two-sided, unadjusted
    n_speakers: int
    n_utts: int
    n_boot: int
    n_unpaired_utts: int = 0   # utterances of the shared speakers that only one system has (left out)


def _paired(a: Mapping[str, Utts], b: Mapping[str, Utts]) -> tuple[list[np.ndarray], int]:
    """Per speaker (sorted), an (n_s, 3) array of [e_a, e_b, n_ref] over the shared utterances."""
    only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
    if only_a or only_b:
        raise ValueError("unpaired speakers: "
                         + "; ".join(f"only in {side}: {', '.join(names)}"
                                     for side, names in (("a", only_a), ("b", only_b)) if names))
    if not a:
        raise ValueError("no speakers to compare")
    blocks, unpaired = [], 0
    for spk in sorted(a):
        ua, ub = a[spk], b[spk]
        index_b = {u: i for i, u in enumerate(ub.ids)}
        ia = [i for i, u in enumerate(ua.ids) if u in index_b]
        ib = [index_b[ua.ids[i]] for i in ia]
        unpaired += len(ua.ids) + len(ub.ids) - 2 * len(ia)
        if not ia:
            raise ValueError(f"speaker {spk}: no utterance decoded by both systems")
        bad = [ua.ids[i] for i, j in zip(ia, ib) if ua.n_ref[i] != ub.n_ref[j]]
        if bad:
            raise ValueError(f"speaker {spk}: reference word counts differ between the systems for "
                             f"{len(bad)} utterance(s), e.g. {bad[0]}")
        blocks.append(np.stack([ua.errors[ia], ub.errors[ib], ua.n_ref[ia].astype(float)], axis=1))
    return blocks, unpaired


def _replicate_sums(blocks: list[np.ndarray], n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, C) column sums of the speakers' (n_s, C) blocks (e.g. [e_a, e_b, n_ref]) over two-level
    bootstrap replicates."""
    n_spk = len(blocks)
    # Times each speaker is drawn in each replicate: (n_boot, n_spk), rows sum to n_spk.
    mult = rng.multinomial(n_spk, np.full(n_spk, 1.0 / n_spk), size=n_boot)
    totals = np.zeros((n_boot, blocks[0].shape[1]))
    for k, block in enumerate(blocks):
        n = block.shape[0]
        chunk = max(1, _CHUNK_CELLS // n)
        for start in range(0, n_boot, chunk):
            stop = min(n_boot, start + chunk)
            draws = mult[start:stop, k] * n          # utterance slots of speaker k per replicate
            rows = np.repeat(np.arange(stop - start, dtype=np.int64) * n, draws)
            picks = rows + rng.integers(0, n, size=rows.size)
            counts = np.bincount(picks, minlength=(stop - start) * n).reshape(stop - start, n)
            totals[start:stop] += counts.astype(np.float64) @ block   # float: BLAS, not numpy's int loop
    return totals


def _wer(errors: np.ndarray | float, n_ref: np.ndarray | float) -> np.ndarray | float:
    return 100.0 * errors / n_ref


TIE_TOLERANCE = 1e-9  # WER points: seed-averaged errors (k / seeds) leave rounding noise of ~1e-13 in sums


def _exact_ties(diff: np.ndarray) -> np.ndarray:
    """WER differences with rounding noise around 0 set to exactly 0, so the two tails count ties alike."""
    return np.where(np.abs(diff) < TIE_TOLERANCE, 0.0, diff)


def _percentiles_with_inf(values: np.ndarray) -> tuple[float, float]:
    """2.5 and 97.5 percentiles where +-inf (a relative change from a zero baseline WER) count as the
    largest / smallest values instead of being dropped (which would narrow the interval)."""
    big = np.finfo(np.float64).max / 4
    low, high = np.percentile(np.clip(values, -big, big), [2.5, 97.5])
    return tuple(float(v) if abs(v) < big / 2 else math.copysign(math.inf, v) for v in (low, high))


def paired_bootstrap(a: Mapping[str, Utts], b: Mapping[str, Utts], n_boot: int = 10000, seed: int = 0) -> Comparison:
    """Two-level (speaker, utterance) paired bootstrap of WER_a - WER_b; see the module docstring.

    ``a`` and ``b`` map speaker -> :class:`Utts`. Both must have the same speakers (else
    ValueError naming the missing ones); within a speaker only the utterance ids both have
    are used, and their reference word counts must agree. Deterministic for a given ``seed``.
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be positive, got {n_boot}")
    blocks, unpaired = _paired(a, b)
    total = np.sum([blk.sum(axis=0) for blk in blocks], axis=0)
    if total[2] <= 0:
        raise ValueError("no reference words to score")
    wer_a, wer_b = float(_wer(total[0], total[2])), float(_wer(total[1], total[2]))
    diff = float(_exact_ties(np.float64(wer_a - wer_b)))
    rel = diff / wer_b * 100.0 if wer_b > 0 else math.nan

    sums = _replicate_sums(blocks, n_boot, np.random.default_rng(seed))
    with np.errstate(divide="ignore", invalid="ignore"):
        rep_a, rep_b = _wer(sums[:, 0], sums[:, 2]), _wer(sums[:, 1], sums[:, 2])
        rep_diff = _exact_ties(rep_a - rep_b)
        rep_rel = rep_diff / rep_b * 100.0
    # Every replicate holds at least one speaker, every speaker at least one utterance with
    # n_ref >= 0; a replicate of only zero-word utterances has no WER and is left out.
    rep_rel = np.where(rep_diff == 0.0, 0.0, rep_rel)[np.isfinite(rep_diff)]  # 0 vs 0 errors: no change
    rep_diff = rep_diff[np.isfinite(rep_diff)]
    ci_low, ci_high = (np.percentile(rep_diff, [2.5, 97.5]) if rep_diff.size else (math.nan, math.nan))
    rel_low, rel_high = _percentiles_with_inf(rep_rel) if rep_rel.size else (math.nan, math.nan)
    if rep_diff.size:
        share = min(np.mean(rep_diff <= 0), np.mean(rep_diff >= 0))
        p_value = float(min(1.0, max(1.0 / n_boot, 2.0 * share)))
    else:
        p_value = 1.0
    return Comparison(
        wer_a=wer_a, wer_b=wer_b, diff=diff, rel=rel,
        ci_low=float(ci_low), ci_high=float(ci_high), rel_ci_low=float(rel_low), rel_ci_high=float(rel_high),
        p_value=p_value, n_speakers=len(blocks), n_utts=int(sum(blk.shape[0] for blk in blocks)),
        n_boot=n_boot, n_unpaired_utts=unpaired,
    )


def wer_interval(utts: Mapping[str, Utts], n_boot: int = 10000, seed: int = 0,
                 level: float = 95.0) -> tuple[float, float, float]:
    """One system's pooled WER and its ``level``% percentile interval from the same two-level (speaker, then
    utterance) bootstrap as :func:`paired_bootstrap`: (WER, low, high) in %. With few speakers the interval is
    wide on purpose: it is how far the WER could move on other speakers like these."""
    if not utts:
        raise ValueError("no speakers")
    blocks = [np.stack([u.errors, u.n_ref.astype(float)], axis=1) for _, u in sorted(utts.items()) if len(u.ids)]
    total = np.sum([blk.sum(axis=0) for blk in blocks], axis=0)
    if total[1] <= 0:
        raise ValueError("no reference words to score")
    sums = _replicate_sums(blocks, n_boot, np.random.default_rng(seed))
    with np.errstate(divide="ignore", invalid="ignore"):
        reps = _wer(sums[:, 0], sums[:, 1])
    reps = reps[np.isfinite(reps)]
    tail = (100.0 - level) / 2
    low, high = np.percentile(reps, [tail, 100.0 - tail])
    return float(_wer(total[0], total[1])), float(low), float(high)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order (monotone in the sorted order, at most 1)."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * float(p_values[i])))
        adjusted[i] = running
    return adjusted


def verdict(comparison: Comparison, adjusted_p: float, alpha: float = 0.05) -> str:
    """``better`` (a has fewer errors) / ``worse`` when the adjusted p is below alpha, else no detectable difference."""
    if adjusted_p < alpha and comparison.diff < 0:
        return BETTER
    if adjusted_p < alpha and comparison.diff > 0:
        return WORSE
    return NO_DIFFERENCE


@dataclass(frozen=True)
class Spread:
    """How much WER moves between training seeds and between folds (points).

    ``seed_std``: mean over folds with 2+ seeds of the sample std (ddof 1) across seeds;
    ``seed_range``: mean over those folds of max - min across seeds; ``seed_range_max``: the
    largest such range; ``fold_std``: sample std across folds of each fold's mean over seeds.
    None where there is not enough data (no fold with 2 seeds; fewer than 2 folds).
    """

    fold_means: dict[str, float]
    seed_std: float | None
    seed_range: float | None
    seed_range_max: float | None
    fold_std: float | None


def spread(per_fold_seed_wer: Mapping[tuple[str, int], float]) -> Spread:
    """Seed-to-seed and fold-to-fold spread from ``{(fold, seed): WER}``."""
    by_fold: dict[str, list[float]] = {}
    for (fold, _seed), wer in sorted(per_fold_seed_wer.items()):
        by_fold.setdefault(fold, []).append(float(wer))
    fold_means = {fold: float(np.mean(w)) for fold, w in by_fold.items()}
    multi = [np.asarray(w) for w in by_fold.values() if len(w) >= 2]
    seed_std = float(np.mean([w.std(ddof=1) for w in multi])) if multi else None
    ranges = [float(w.max() - w.min()) for w in multi]
    seed_range = float(np.mean(ranges)) if ranges else None
    seed_range_max = max(ranges) if ranges else None
    fold_std = float(np.std(list(fold_means.values()), ddof=1)) if len(fold_means) >= 2 else None
    return Spread(fold_means, seed_std, seed_range, seed_range_max, fold_std)
