"""echo_plugin.recipe.bootstrap: two-level paired bootstrap, Holm, verdicts, seed/fold spread."""
from __future__ import annotations

import math
import time

import numpy as np
import pytest

from echo_plugin.recipe.bootstrap import (
    BETTER,
    NO_DIFFERENCE,
    WORSE,
    Comparison,
    Utts,
    holm,
    paired_bootstrap,
    spread,
    verdict,
    wer_interval,
)

N_BOOT = 2000


def system(errors_by_spk: dict[str, list[float]], n_ref_by_spk: dict[str, list[int]]) -> dict[str, Utts]:
    return {spk: Utts(tuple(f"{spk}_{i}" for i in range(len(err))), np.asarray(err, float),
                      np.asarray(n_ref_by_spk[spk]))
            for spk, err in errors_by_spk.items()}


def random_pair(n_spk: int, n_utt: int, rate_a, rate_b, seed: int = 1) -> tuple[dict[str, Utts], dict[str, Utts]]:
    """Two systems on the same utterances; rate_x: one error rate, or one per speaker."""
    rng = np.random.default_rng(seed)
    rates_a = np.broadcast_to(rate_a, (n_spk,))
    rates_b = np.broadcast_to(rate_b, (n_spk,))
    a, b = {}, {}
    for s in range(n_spk):
        ids = tuple(f"s{s}_u{i}" for i in range(n_utt))
        n_ref = rng.integers(1, 8, size=n_utt)
        a[f"s{s}"] = Utts(ids, rng.binomial(n_ref, rates_a[s]).astype(float), n_ref)
        b[f"s{s}"] = Utts(ids, rng.binomial(n_ref, rates_b[s]).astype(float), n_ref)
    return a, b


def test_identical_systems_no_difference():
    a, _ = random_pair(5, 100, 0.2, 0.2)
    c = paired_bootstrap(a, a, n_boot=N_BOOT)
    assert c.diff == 0.0 and c.rel == 0.0
    assert c.ci_low <= 0.0 <= c.ci_high
    assert c.p_value == 1.0
    assert verdict(c, holm([c.p_value])[0]) == NO_DIFFERENCE
    assert (c.n_speakers, c.n_utts, c.n_unpaired_utts) == (5, 500, 0)


def test_fewer_errors_on_every_speaker_is_better():
    a, b = random_pair(5, 200, 0.05, 0.20)
    c = paired_bootstrap(a, b, n_boot=N_BOOT)
    assert c.diff < 0 and c.ci_high < 0 and c.rel_ci_high < 0
    assert c.p_value == pytest.approx(1 / N_BOOT)   # no replicate reaches 0: clipped to 1/n_boot
    assert verdict(c, c.p_value) == BETTER
    # The other way round: worse, with the mirrored interval.
    r = paired_bootstrap(b, a, n_boot=N_BOOT)
    assert r.diff == pytest.approx(-c.diff) and r.ci_low > 0
    assert verdict(r, r.p_value) == WORSE


def test_point_estimate_is_pooled_wer_difference():
    a = system({"s1": [1, 0, 2], "s2": [1]}, {"s1": [3, 2, 4], "s2": [5]})
    b = system({"s1": [0, 0, 1], "s2": [2]}, {"s1": [3, 2, 4], "s2": [5]})
    c = paired_bootstrap(a, b, n_boot=N_BOOT)
    assert c.wer_a == pytest.approx(100 * 4 / 14)
    assert c.wer_b == pytest.approx(100 * 3 / 14)
    assert c.diff == pytest.approx(100 / 14)
    assert c.rel == pytest.approx(100 * (1 / 3))
    assert c.ci_low <= c.diff <= c.ci_high


def test_fractional_seed_mean_errors_are_used_as_is():
    a = system({"s1": [0.5, 1.5]}, {"s1": [2, 2]})
    b = system({"s1": [1.0, 1.0]}, {"s1": [2, 2]})
    c = paired_bootstrap(a, b, n_boot=N_BOOT)
    assert c.wer_a == c.wer_b == pytest.approx(50.0)


def test_ties_of_seed_averaged_errors_count_in_both_tails():
    """Errors averaged over 3 seeds are thirds: a replicate whose error sums are equal must be a tie (0), not
    +-1e-15 of rounding, or one tail gets it and p comes out too small. Reference: integer arithmetic on
    3 x errors, on the same replicates (same RNG seed)."""
    a = system({"s": [1, 0, 0, 1, 0, 0]}, {"s": [10] * 6})
    b = system({"s": [1 / 3, 1 / 3, 1 / 3, 2 / 3, 1 / 3, 0]}, {"s": [10] * 6})   # pooled: 2 errors each
    c = paired_bootstrap(a, b, n_boot=N_BOOT, seed=0)
    assert c.diff == 0.0
    rng = np.random.default_rng(0)   # the same draws as the bootstrap's (one speaker: multinomial, then slots)
    rng.multinomial(1, [1.0], size=N_BOOT)
    picks = rng.integers(0, 6, size=N_BOOT * 6).reshape(N_BOOT, 6)
    thirds = np.rint(3 * (a["s"].errors - b["s"].errors)).astype(int)   # exact: 3 x (e_a - e_b)
    exact = thirds[picks].sum(axis=1)
    share = min(np.mean(exact <= 0), np.mean(exact >= 0))
    assert np.mean(exact == 0) > 0.1                       # many true ties in this case
    assert c.p_value == pytest.approx(min(1.0, 2 * share))


def test_relative_interval_keeps_replicates_with_a_perfect_baseline():
    """A replicate where the baseline makes no error is an infinite relative change, not a dropped one."""
    a = system({"s": [1, 0, 0, 0]}, {"s": [5] * 4})
    b = system({"s": [0, 0, 0, 1]}, {"s": [5] * 4})
    c = paired_bootstrap(a, b, n_boot=N_BOOT, seed=0)
    assert c.rel_ci_high == math.inf and math.isfinite(c.rel_ci_low)


def test_ci_narrows_with_more_utterances():
    small = paired_bootstrap(*random_pair(5, 40, 0.10, 0.15, seed=3), n_boot=N_BOOT)
    large = paired_bootstrap(*random_pair(5, 800, 0.10, 0.15, seed=3), n_boot=N_BOOT)
    assert (large.ci_high - large.ci_low) < 0.5 * (small.ci_high - small.ci_low)


def test_effect_on_one_speaker_widens_the_ci():
    """Same mean improvement, carried by one speaker of five vs spread evenly: speaker resampling shows it."""
    rng = np.random.default_rng(4)
    n_spk, n_utt = 5, 300
    b_err = rng.binomial(4, 0.25, size=(n_spk, n_utt)) + 1.0
    noise = rng.normal(0.0, 0.5, size=(n_spk, n_utt))
    n_ref = {f"s{s}": [5] * n_utt for s in range(n_spk)}
    b = system({f"s{s}": b_err[s] for s in range(n_spk)}, n_ref)
    even = system({f"s{s}": b_err[s] - 0.2 + noise[s] for s in range(n_spk)}, n_ref)
    one = system({f"s{s}": b_err[s] - (1.0 if s == 0 else 0.0) + noise[s] for s in range(n_spk)}, n_ref)
    c_even = paired_bootstrap(even, b, n_boot=N_BOOT)
    c_one = paired_bootstrap(one, b, n_boot=N_BOOT)
    assert c_one.diff == pytest.approx(c_even.diff)     # the same pooled improvement
    assert (c_one.ci_high - c_one.ci_low) > 2 * (c_even.ci_high - c_even.ci_low)


def test_unpaired_utterances_left_out_and_counted():
    a = {"s1": Utts(("u1", "u2", "u3"), np.array([1.0, 0.0, 5.0]), np.array([2, 2, 2]))}
    b = {"s1": Utts(("u2", "u1", "u4"), np.array([1.0, 0.0, 9.0]), np.array([2, 2, 2]))}
    c = paired_bootstrap(a, b, n_boot=N_BOOT)
    assert (c.n_utts, c.n_unpaired_utts) == (2, 2)
    assert c.wer_a == c.wer_b == pytest.approx(25.0)   # u1, u2 only, matched by id not position


def test_unpaired_speakers_named():
    a, b = random_pair(3, 10, 0.1, 0.1)
    del b["s2"]
    b["zz"] = a["s0"]
    with pytest.raises(ValueError, match=r"only in a: s2; only in b: zz"):
        paired_bootstrap(a, b, n_boot=N_BOOT)


def test_reference_word_counts_must_agree():
    a = {"s1": Utts(("u1", "u2"), np.array([1.0, 0.0]), np.array([2, 3]))}
    b = {"s1": Utts(("u1", "u2"), np.array([1.0, 0.0]), np.array([2, 4]))}
    with pytest.raises(ValueError, match="u2"):
        paired_bootstrap(a, b, n_boot=N_BOOT)


def test_deterministic_for_a_seed():
    a, b = random_pair(5, 100, 0.1, 0.13)
    assert paired_bootstrap(a, b, n_boot=N_BOOT, seed=7) == paired_bootstrap(a, b, n_boot=N_BOOT, seed=7)
    assert paired_bootstrap(a, b, n_boot=N_BOOT, seed=7) != paired_bootstrap(a, b, n_boot=N_BOOT, seed=8)


def test_ten_thousand_replicates_are_fast():
    a, b = random_pair(5, 800, 0.1, 0.12)
    paired_bootstrap(a, b, n_boot=100)   # warm-up
    start = time.perf_counter()
    paired_bootstrap(a, b, n_boot=10000)
    assert time.perf_counter() - start < 3.0   # ~0.3 s on one core; slack for a loaded machine


def test_holm_hand_computed():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])          # clipped, then monotone
    assert holm([0.04, 0.001, 0.2, 0.02]) == pytest.approx([0.08, 0.004, 0.2, 0.06])
    assert holm([0.3]) == [0.3] and holm([]) == []


def comparison(diff: float) -> Comparison:
    return Comparison(10 + diff, 10.0, diff, diff * 10, diff - 1, diff + 1, 0, 0, 0.01, 5, 100, 1000)


def test_verdict_needs_adjusted_p_below_alpha():
    assert verdict(comparison(-2), 0.01) == BETTER
    assert verdict(comparison(2), 0.01) == WORSE
    assert verdict(comparison(-2), 0.05) == NO_DIFFERENCE
    assert verdict(comparison(-2), 0.06, alpha=0.1) == BETTER
    assert verdict(comparison(0), 0.0001) == NO_DIFFERENCE


def test_spread_hand_computed():
    s = spread({("f1", 0): 10.0, ("f1", 1): 12.0, ("f2", 0): 20.0, ("f2", 1): 20.0, ("f2", 2): 20.0})
    assert s.fold_means == {"f1": 11.0, "f2": 20.0}
    assert s.seed_std == pytest.approx(math.sqrt(2) / 2)
    assert s.seed_range == pytest.approx(1.0) and s.seed_range_max == pytest.approx(2.0)
    assert s.fold_std == pytest.approx(9 / math.sqrt(2))


def test_spread_one_seed_one_fold():
    s = spread({("f1", 0): 10.0, ("f2", 0): 14.0})
    assert s.seed_std is None and s.seed_range is None and s.fold_std == pytest.approx(math.sqrt(8))
    assert spread({("f1", 0): 10.0}).fold_std is None


def naive_interval(utts: dict[str, Utts], n_boot: int, seed: int) -> tuple[float, float]:
    """The two-level bootstrap written as its definition: draw speakers, then each drawn speaker's utterances."""
    rng = np.random.default_rng(seed)
    speakers = sorted(utts)
    reps = []
    for _ in range(n_boot):
        errors = words = 0.0
        for spk in rng.choice(speakers, size=len(speakers)):
            u = utts[spk]
            pick = rng.integers(0, len(u.ids), size=len(u.ids))
            errors += u.errors[pick].sum()
            words += u.n_ref[pick].sum()
        reps.append(100 * errors / words)
    low, high = np.percentile(reps, [2.5, 97.5])
    return float(low), float(high)


def test_wer_interval_matches_the_definition_and_brackets_the_pooled_wer():
    a, _ = random_pair(4, 60, [0.05, 0.1, 0.2, 0.4], 0.1, seed=3)  # speakers far apart
    wer, low, high = wer_interval(a, n_boot=4000, seed=0)
    pooled = 100 * sum(u.errors.sum() for u in a.values()) / sum(u.n_ref.sum() for u in a.values())
    assert wer == pytest.approx(pooled) and low < wer < high
    ref_low, ref_high = naive_interval(a, 4000, seed=1)
    assert low == pytest.approx(ref_low, abs=1.0) and high == pytest.approx(ref_high, abs=1.0)
    same, _ = random_pair(4, 60, 0.2, 0.1, seed=3)  # the same mean rate on every speaker: narrower
    _, s_low, s_high = wer_interval(same, n_boot=4000, seed=0)
    assert s_high - s_low < (high - low) / 2


def test_wer_interval_of_a_perfect_system_is_zero_and_needs_words():
    zero = system({"s0": [0, 0], "s1": [0]}, {"s0": [3, 2], "s1": [4]})
    assert wer_interval(zero, n_boot=200) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="no reference words"):
        wer_interval(system({"s0": [0]}, {"s0": [0]}), n_boot=10)
