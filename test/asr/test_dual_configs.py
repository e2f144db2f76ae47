"""The FSDD dual-decoder config and its parameter-matched single-attention control."""
from pathlib import Path

import pytest
import torch

import echo_plugin
from echo_plugin.asr.decoder.dual_decoder import DualCrossAttentionDecoder
from echo_plugin.asr.decoder.echo_decoder import EchoDecoder
from echo_plugin.recipe.overlay import espnet_config

TUNING = Path(__file__).resolve().parents[2] / "egs" / "fsdd" / "asr1" / "conf" / "tuning"
TOKENS = ["<blank>", "<unk>", *"▁ZEROTWFUVSIXNG", "<sos/eos>"]


def build(config: str, tmp_path: Path):
    echo_plugin.register()
    from espnet2.tasks.asr import ASRTask

    (tmp_path / "tokens.txt").write_text("\n".join(TOKENS) + "\n")
    argv = ["--config", str(espnet_config(TUNING / config, tmp_path)), "--token_list", str(tmp_path / "tokens.txt")]
    args = ASRTask.get_parser().parse_args(argv)
    args.normalize = None
    torch.manual_seed(0)
    return ASRTask.build_model(args)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fsdd_dual")
    return {name: build(f"train_asr_{name}.yaml", tmp) for name in ("echo", "echo_dual", "echo_single_wide")}


def count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def test_dual_and_single_wide_have_the_same_parameter_count(models):
    assert isinstance(models["echo_dual"].decoder, DualCrossAttentionDecoder)
    assert isinstance(models["echo_single_wide"].decoder, EchoDecoder)
    dual, wide, base = (count(models[n]) for n in ("echo_dual", "echo_single_wide", "echo"))
    assert dual > base * 1.1  # the secondary attentions and gates are a real addition
    assert abs(dual - wide) / dual < 1e-3
    encoder = {n: sum(p.numel() for p in models[n].encoder.parameters()) for n in models}
    assert len(set(encoder.values())) == 1  # only the decoders differ


def test_fsdd_dual_model_decodes_with_batch_beam_search_and_ctc(models):
    from echo_plugin.espnet_legacy import BatchBeamSearch, CTCPrefixScorer

    model = models["echo_dual"].eval()
    torch.manual_seed(2)
    speech = torch.randn(1, 4000)  # 0.5 s at 8 kHz
    search = BatchBeamSearch(
        scorers={"decoder": model.decoder, "ctc": CTCPrefixScorer(ctc=model.ctc, eos=model.eos)},
        weights={"decoder": 0.7, "ctc": 0.3}, beam_size=2, vocab_size=len(TOKENS),
        sos=model.sos, eos=model.eos, token_list=TOKENS, pre_beam_score_key="full",
    ).eval()  # fmt: skip
    with torch.no_grad():
        x = model.encode(speech, torch.tensor([4000]))[0][0]
        hyps = search(x=x, maxlenratio=0.5, minlenratio=0.0)
    assert hyps and hyps[0].yseq[0] == model.sos and hyps[0].yseq[-1] == model.eos
