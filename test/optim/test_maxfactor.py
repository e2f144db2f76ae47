"""MaxFactor: the update equals a loop-based reference of the documented formula; O(n+m) state;
ESPnet builds it from YAML; it trains; its state dict resumes identically."""
from __future__ import annotations

import copy
import io
import math
import subprocess
import sys
from pathlib import Path
from typing import List, Sequence, Tuple

import pytest
import torch
import yaml

import echo_plugin
from echo_plugin import catalog
from echo_plugin.optim.maxfactor import MaxFactor
from echo_plugin.registry import Registry

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "test" / "fixtures" / "train_asr_echo_tiny.yaml"


def reference(
    value: List[float],
    shape: Tuple[int, ...],
    grads: Sequence[List[float]],
    lr: float,
    beta2_decay: float,
    eps1: float,
    eps2: float,
    d: float,
    weight_decay: float,
    gamma: float,
    maximize: bool,
) -> List[float]:
    """The module doc's seven steps, element by element on a flat row-major list."""
    numel = len(value)
    p = list(value)
    matrix = len(shape) >= 2
    last = shape[-1] if shape else 1
    if matrix:
        n, m = shape[-2], shape[-1]
        batches = numel // (n * m)
        row = [[0.0] * n for _ in range(batches)]
        col = [[0.0] * m for _ in range(batches)]
    else:
        v = [0.0] * numel
    for t, grad in enumerate(grads, start=1):
        g = [-x for x in grad] if maximize else list(grad)
        rms_p = math.sqrt(sum(x * x for x in p) / numel)
        alpha = max(eps2, rms_p) * min(lr, 1.0 / math.sqrt(t))
        p = [x * (1.0 - lr * weight_decay) for x in p]
        var = [0.0] * numel
        if matrix:
            w = t**beta2_decay
            for b in range(batches):
                at = lambda i, j: b * n * m + i * m + j  # noqa: E731, B023 (used in this iteration only)
                for i in range(n):
                    row[b][i] = (1 - w) * row[b][i] + w * sum(g[at(i, j)] ** 2 for j in range(m)) / m
                for j in range(m):
                    col[b][j] = (1 - w) * col[b][j] + w * sum(g[at(i, j)] ** 2 for i in range(n)) / n
                top = max(max(row[b]), eps1)
                for i in range(n):
                    for j in range(m):
                        var[at(i, j)] = row[b][i] * col[b][j] / top
        else:
            for k in range(numel):
                v[k] = gamma * v[k] + (1 - gamma) * g[k] ** 2
                var[k] = v[k]
        u = [g[k] / math.sqrt(max(var[k], eps1 * eps1)) for k in range(numel)]
        top_u = max(max(abs(x) for x in u), eps1)
        u = [x / top_u for x in u]
        denom = max(1.0, math.sqrt(sum(x * x for x in u) / numel) / d)
        for start in range(0, numel, last):
            biggest = max(abs(x) for x in u[start : start + last])
            for k in range(start, start + last):
                sign = (u[k] > 0) - (u[k] < 0)
                p[k] -= alpha / denom * sign * biggest
    return p


SHAPES = [(3, 4), (2, 3, 5), (5,), ()]


@pytest.mark.parametrize(
    "conf",
    [
        dict(lr=0.6, weight_decay=0.1),  # lr > 1/sqrt(t) from t = 3: both branches of rho_t
        dict(lr=0.05, weight_decay=0.0, d=0.3, maximize=True, eps=(1e-6, 0.5), gamma=0.9, beta2_decay=-0.5),
    ],
)
def test_update_equals_loop_reference(conf: dict) -> None:
    gen = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(shape, generator=gen, dtype=torch.float64)) for shape in SHAPES]
    # a zero row and a zero element exercise the eps floors and sign(0) = 0
    grads = [[torch.randn(shape, generator=gen, dtype=torch.float64) for shape in SHAPES] for _ in range(5)]
    grads[1][0][1] = 0.0
    grads[2][2][3] = 0.0
    initial = [p.detach().clone() for p in params]
    opt = MaxFactor(params, **conf)
    skipped = {(1, 2), (3, 0)}  # (step, parameter) without a gradient: its own t lags behind
    for i, step_grads in enumerate(grads):
        for k, (p, g) in enumerate(zip(params, step_grads)):
            p.grad = None if (i, k) in skipped else g.clone()
        opt.step()
    full = dict(lr=0.01, beta2_decay=-0.8, eps=(None, 1e-3), d=1.0, weight_decay=0.0, gamma=0.99, maximize=False)
    full.update(conf)
    eps1 = full["eps"][0] or torch.finfo(torch.float64).eps
    for k, (p, start) in enumerate(zip(params, initial)):
        expected = reference(
            start.flatten().tolist(),
            tuple(start.shape),
            [step_grads[k].flatten().tolist() for i, step_grads in enumerate(grads) if (i, k) not in skipped],
            full["lr"], full["beta2_decay"], eps1, full["eps"][1], full["d"],
            full["weight_decay"], full["gamma"], full["maximize"],
        )  # fmt: skip
        assert not torch.equal(p.detach(), start)
        expected = torch.tensor(expected, dtype=torch.float64)
        torch.testing.assert_close(p.detach().flatten(), expected, rtol=1e-10, atol=1e-12)


def state_bytes(opt: torch.optim.Optimizer) -> int:
    return sum(t.numel() * t.element_size() for s in opt.state.values() for t in s.values() if torch.is_tensor(t))


def test_matrix_state_is_rows_plus_cols() -> None:
    n, m = 96, 40
    for shape, expected in [((n, m), n + m), ((3, n, m), 3 * (n + m)), ((n,), n)]:
        p = torch.nn.Parameter(torch.randn(shape))
        opt = MaxFactor([p])
        p.grad = torch.randn(shape)
        opt.step()
        assert state_bytes(opt) == expected * 4, shape
    adamw = torch.optim.AdamW([p := torch.nn.Parameter(torch.randn(n, m))])
    p.grad = torch.randn(n, m)
    adamw.step()
    assert state_bytes(adamw) >= 2 * n * m * 4  # what factoring saves


def test_constructor_rejects_bad_hyper_parameters() -> None:
    p = [torch.nn.Parameter(torch.zeros(2))]
    for bad in [dict(lr=0.0), dict(beta2_decay=0.1), dict(eps=(None,)), dict(d=0.0), dict(gamma=1.0)]:
        with pytest.raises(ValueError, match="MaxFactor"):
            MaxFactor(p, **bad)


def tiny_regression() -> Tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    x = torch.randn(64, 8)
    y = (x[:, :1] * 2.0 - x[:, 1:2]).tanh()
    return model, x, y


def train(model: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, steps: int) -> float:
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
    return loss.item()


def test_tiny_model_loss_decreases() -> None:
    model, x, y = tiny_regression()
    before = torch.nn.functional.mse_loss(model(x), y).item()
    after = train(model, MaxFactor(model.parameters(), lr=0.02, weight_decay=0.01), x, y, 150)
    assert after < 0.2 * before


def test_state_dict_round_trip_resumes_identically() -> None:
    model, x, y = tiny_regression()
    opt = MaxFactor(model.parameters(), lr=0.02, weight_decay=0.01)
    train(model, opt, x, y, 5)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optim": opt.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer)
    resumed = copy.deepcopy(model)
    resumed.load_state_dict(saved["model"])
    resumed_opt = MaxFactor(resumed.parameters(), lr=0.5)  # hyper-parameters come from the state dict
    resumed_opt.load_state_dict(saved["optim"])
    train(model, opt, x, y, 5)
    train(resumed, resumed_opt, x, y, 5)
    for a, b in zip(model.parameters(), resumed.parameters()):
        assert torch.equal(a, b)


def test_registration_into_espnet_is_checked_and_idempotent(monkeypatch: pytest.MonkeyPatch) -> None:
    echo_plugin.register()
    echo_plugin.register()
    import espnet2.tasks.abs_task as abs_task

    assert abs_task.optim_classes["maxfactor"] is MaxFactor
    echo_plugin._register_optimizers()  # again: same class, no error
    monkeypatch.setitem(abs_task.optim_classes, "maxfactor", torch.optim.AdamW)
    with pytest.raises(KeyError, match="maxfactor"):
        echo_plugin._register_optimizers()
    bogus = Registry("optim")
    bogus.add("bogus", torch.nn.Linear)
    monkeypatch.setattr(catalog, "OPTIMIZER", bogus)
    with pytest.raises(TypeError, match="torch.optim.Optimizer"):
        echo_plugin._register_optimizers()


def test_asr_task_builds_maxfactor_from_yaml(tmp_path: Path) -> None:
    echo_plugin.register()
    from espnet2.tasks.asr import ASRTask

    config = yaml.safe_load(TINY.read_text())
    config.update(optim="maxfactor", optim_conf={"lr": 0.02, "weight_decay": 0.001, "eps": [None, 0.002]})
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(config))
    (tmp_path / "tokens.txt").write_text("<blank>\n<unk>\na\nb\n<sos/eos>\n")
    args = ASRTask.get_parser().parse_args(
        ["--config", str(tmp_path / "train.yaml"), "--token_list", str(tmp_path / "tokens.txt")]
    )
    model = ASRTask.build_model(args)
    [opt] = ASRTask.build_optimizers(args, model)
    assert isinstance(opt, MaxFactor)
    assert opt.defaults["lr"] == 0.02 and opt.defaults["weight_decay"] == 0.001 and opt.defaults["eps"] == (None, 0.002)
    speech = torch.randn(2, 8000)
    loss = model(speech, torch.tensor([8000, 6000]), torch.tensor([[2, 3], [3, -1]]), torch.tensor([2, 1]))[0]
    loss.backward()
    before = [p.detach().clone() for p in model.parameters()]
    opt.step()
    moved = [not torch.equal(a, p) for a, p in zip(before, model.parameters()) if p.grad is not None]
    assert moved and all(moved)


def test_train_entry_point_accepts_optim_maxfactor(tmp_path: Path) -> None:
    """``--optim maxfactor`` passes argparse's choices: registration precedes the parser."""
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("<blank>\n<unk>\na\n<sos/eos>\n")
    out = subprocess.run(
        [sys.executable, "-m", "echo_plugin.bin.asr_train", "--print_config", "--config", str(TINY),
         "--token_list", str(tokens), "--optim", "maxfactor", "--optim_conf", "lr=0.03"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    # ESPnet prints "Failed to import Flash Attention ..." on stdout before the YAML
    printed = yaml.safe_load("\n".join(line for line in out.stdout.splitlines() if not line.startswith("Failed")))
    assert printed["optim"] == "maxfactor"
    assert printed["optim_conf"]["lr"] == 0.03 and printed["optim_conf"]["beta2_decay"] == -0.8
