"""Unsupervised speaker adaptation: pseudo-label selection and fine-tuning on a tiny ESPnet model."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from echo_plugin.inference.speaker_adapt import (
    AdaptConfig,
    Utterance,
    adapt,
    adapt_and_decode,
    ctc_greedy,
    pseudo_labels,
)
from test.asr.espnet_build import TOKENS, build_asr

ENCODER = "{output_size: 16, attention_heads: 2, linear_units: 32, num_blocks: 1, input_layer: linear}"
DECODER = "{attention_heads: 2, linear_units: 32, num_blocks: 1}"


@pytest.fixture()
def model(tmp_path: Path) -> torch.nn.Module:
    return build_asr(tmp_path, ENCODER, DECODER)[2].eval()


def utterances(n: int) -> list[Utterance]:
    rng = np.random.default_rng(0)
    return [Utterance(f"u{i}", rng.normal(size=(30 + 5 * i, 20)).astype(np.float32), None) for i in range(n)]


def to_ids(text: str) -> list[int]:
    return [TOKENS.index(t) for t in text.split()]


def to_text(ids: list[int]) -> str:
    return " ".join(TOKENS[i] for i in ids)


def total_loss(model: torch.nn.Module, examples: list[tuple[Utterance, list[int]]]) -> float:
    with torch.no_grad():
        return sum(
            model(speech=torch.from_numpy(u.speech)[None], speech_lengths=torch.tensor([len(u.speech)]),
                  text=torch.tensor([ids]), text_lengths=torch.tensor([len(ids)]))[0].item()
            for u, ids in examples
        )


def test_agree_keeps_only_hypotheses_the_ctc_branch_confirms(model: torch.nn.Module) -> None:
    utts = utterances(6)
    greedy = {u.key: ctc_greedy(model, u) for u in utts}
    hyps = {u.key: to_text(greedy[u.key]) if i % 2 == 0 else "a b" for i, u in enumerate(utts)}
    hyps["u0"] = ""  # an empty hypothesis is never a label
    expected = {u.key for u in utts if hyps[u.key] and greedy[u.key] == to_ids(hyps[u.key])}
    assert expected >= {u.key for u in utts[2::2] if greedy[u.key]} and len(expected) >= 2
    kept = pseudo_labels(model, utts, hyps, to_ids, "agree")
    assert {u.key for u, _ in kept} == expected
    assert all(ids == greedy[u.key] for u, ids in kept)
    everything = pseudo_labels(model, utts, hyps, to_ids, "all")
    assert [u.key for u, _ in everything] == [u.key for u in utts if hyps[u.key]]
    assert not model.training


def test_adaptation_fits_its_labels_and_changes_only_the_chosen_parameters(model: torch.nn.Module) -> None:
    utts = utterances(8)
    examples = [(u, to_ids("a b c" if i % 2 else "d e")) for i, u in enumerate(utts)]
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    loss_before = total_loss(model, examples)
    rng_before = torch.random.get_rng_state()
    cfg = AdaptConfig(epochs=8, lr=1e-2, batch_size=4, params=r"^(decoder|ctc)\.")
    losses = adapt(model, examples, cfg)
    assert len(losses) == 8 and losses[-1] < losses[0]
    assert total_loss(model, examples) < 0.9 * loss_before
    for name, p in model.named_parameters():
        changed = not torch.equal(p, before[name])
        assert changed == name.startswith(("decoder.", "ctc.")), name
        assert p.requires_grad  # flags restored
    assert not model.training
    assert torch.equal(torch.random.get_rng_state(), rng_before)


def test_adaptation_without_labels_is_a_no_op_and_bad_configs_are_errors(model: torch.nn.Module) -> None:
    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert adapt(model, [], AdaptConfig()) == []
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    with pytest.raises(ValueError, match="no parameter"):
        adapt(model, [(utterances(1)[0], [2])], AdaptConfig(params="nothing_is_called_this"))
    with pytest.raises(ValueError, match="select"):
        AdaptConfig(select="best")
    with pytest.raises(ValueError, match="epochs"):
        AdaptConfig(epochs=0)
    with pytest.raises(ValueError, match="rounds"):
        AdaptConfig(rounds=0)


def test_each_round_relabels_with_the_adapted_model_and_adapts_the_original_weights(model: torch.nn.Module) -> None:
    utts = utterances(6)
    original = copy.deepcopy(model.state_dict())
    first_pass = {u.key: "a b c" if i % 2 else "d e" for i, u in enumerate(utts)}
    decoded: list[str] = []

    def decode(utt: Utterance) -> str:  # the adapted model's CTC best path, as text
        decoded.append(utt.key)
        return to_text(ctc_greedy(model, utt))

    cfg = AdaptConfig(epochs=4, lr=1e-2, batch_size=3, select="agree", rounds=2)
    final, reports = adapt_and_decode(model, original, utts, first_pass, to_ids, decode, cfg)

    assert decoded == [u.key for u in utts] * 2 and len(reports) == 2
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in original.items())
    # round 1 from the first pass, as a plain adapt() of the original model
    reference = copy.deepcopy(model)
    labels = pseudo_labels(reference, utts, first_pass, to_ids, "agree")
    assert reports[0].pseudo_labels == len(labels)
    assert reports[0].losses == pytest.approx(adapt(reference, labels, cfg))
    # round 2: the round-1 model's own hypotheses, which its CTC branch confirms whenever non-empty
    round1 = {u.key: to_text(ctc_greedy(reference, u)) for u in utts}
    labels = pseudo_labels(reference, utts, round1, to_ids, "agree")
    assert reports[1].pseudo_labels == len(labels) == sum(bool(t) for t in round1.values())
    restarted = copy.deepcopy(model)  # the original weights again, not the round-1 ones
    assert reports[1].losses == pytest.approx(adapt(restarted, labels, cfg))
    assert final == {u.key: to_text(ctc_greedy(restarted, u)) for u in utts}
