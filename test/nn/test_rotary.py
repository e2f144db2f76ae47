"""Rotary embeddings: the shared apply step and the standard / none variants."""
import math

import pytest
import torch

from echo_plugin.catalog import ROTARY
from echo_plugin.nn.rotary import NoRotary, StandardRotary, apply_rotary


def naive_rotary(x: torch.Tensor, radius: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rotate/scale each pair (x[2i], x[2i+1]) at time t by angle[t, i], radius[t, i], one by one."""
    out = x.clone()
    for t in range(x.shape[-2]):
        for i in range(angle.shape[-1]):
            a, b = x[..., t, 2 * i], x[..., t, 2 * i + 1]
            r, c, s = radius[t, i], math.cos(angle[t, i]), math.sin(angle[t, i])
            out[..., t, 2 * i] = r * (a * c - b * s)
            out[..., t, 2 * i + 1] = r * (a * s + b * c)
    return out


@pytest.mark.parametrize("n_pairs", [4, 3])  # all channels / some pass through
def test_apply_rotary_matches_naive_loop(n_pairs):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 5, 8)
    radius = torch.rand(5, n_pairs) + 0.5
    angle = torch.randn(5, n_pairs) * 3
    out = apply_rotary(x, torch.polar(radius, angle))
    torch.testing.assert_close(out, naive_rotary(x, radius, angle))


def test_unit_radius_preserves_norm_and_radius_scales_it():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 7, 16)
    angle = torch.randn(7, 8)
    rotated = apply_rotary(x, torch.polar(torch.ones_like(angle), angle))
    torch.testing.assert_close(rotated.norm(dim=-1), x.norm(dim=-1))
    assert not torch.allclose(rotated, x)
    scaled = apply_rotary(x, torch.polar(torch.full_like(angle, 2.5), angle))
    torch.testing.assert_close(scaled.norm(dim=-1), 2.5 * x.norm(dim=-1))


def test_apply_rotary_keeps_dtype():
    x = torch.randn(1, 2, 3, 8, dtype=torch.bfloat16)
    freqs = StandardRotary(head_dim=8).freqs(torch.arange(3))
    assert apply_rotary(x, freqs).dtype == torch.bfloat16


def test_standard_rotary_score_depends_only_on_offset():
    torch.manual_seed(0)
    rotary = StandardRotary(head_dim=16, theta=100.0)
    q, k = torch.randn(16), torch.randn(16)

    def score(q_pos: int, k_pos: int) -> torch.Tensor:
        positions = torch.tensor([q_pos, k_pos])
        rotated = apply_rotary(torch.stack([q, k]), rotary.freqs(positions))
        return rotated[0] @ rotated[1]

    torch.testing.assert_close(score(3, 1), score(3 + 17, 1 + 17))
    torch.testing.assert_close(score(0, 9), score(40, 49))
    assert not torch.allclose(score(3, 1), score(3, 2))


def test_standard_rotary_shapes_and_partial_rot_dim():
    rotary = StandardRotary(head_dim=8, rot_dim=4)
    assert rotary.freqs(torch.arange(5)).shape == (5, 2)
    batched = rotary.freqs(torch.arange(10).view(2, 5))
    assert batched.shape == (2, 1, 5, 2) and batched.is_complex()
    torch.testing.assert_close(batched.abs(), torch.ones(2, 1, 5, 2))
    x = torch.randn(2, 3, 5, 8)
    torch.testing.assert_close(apply_rotary(x, batched)[..., 4:], x[..., 4:])
    with pytest.raises(ValueError):
        StandardRotary(head_dim=8, rot_dim=5)


def test_registry_builds_variants_and_none_is_identity():
    assert {"standard", "none"} <= set(ROTARY.names())
    built = ROTARY.build({"type": "standard", "conf": {"theta": 500.0}}, head_dim=8)
    assert isinstance(built, StandardRotary) and built.theta == 500.0
    none = ROTARY.build("none", head_dim=8)
    assert isinstance(none, NoRotary)
    x = torch.randn(2, 4, 6, 8)
    torch.testing.assert_close(none.rotate(x, torch.arange(6)), x)
    torch.testing.assert_close(none(x, torch.arange(12).view(2, 6)), x)
