"""Quaternion rotary: rotate a learned 3-D subspace of each head group by a quaternion.

Each head's ``dh`` channels split into ``groups`` groups of ``g = dh / groups``. Group ``j``
has a learned down-projection ``D_j`` (3, g), an up-projection ``U_j`` (g, 3) and a unit
axis ``u_j`` (learned or fixed). At position ``p`` with angle ``a = rot_scale * p * w_j``
(``w`` the standard ladder over groups, negative ``theta`` reverses):

    v = D_j x,    v' = q v q*  with  q = (cos a/2, sin a/2 * u_j),    x' = x + U_j (v' - v)

``q v q*`` is the true quaternion (Hamilton) product. The residual form keeps the
part of ``x`` outside the 3-D subspace (the document instead blends 0.9 rotated with 0.1
input). ``D_j`` starts with orthonormal rows and ``U_j = pinv(D_j) = D_j^T``: at
initialisation the map is orthogonal, keeps norms, and q.k depends only on the offset.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from echo_plugin.nn.rotary.base import AngleRotary, geometric_ladder
from echo_plugin.nn.rotary.pitch import F0Track


def quaternion_multiply(a: Tensor, b: Tensor) -> Tensor:
    """Hamilton product of quaternions (..., 4) stored as (w, x, y, z)."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        dim=-1,
    )


def quaternion_rotate(v: Tensor, axis: Tensor, angle: Tensor) -> Tensor:
    """Rotate 3-vectors ``v`` (..., 3) by ``angle`` (...) about unit ``axis`` (..., 3): vector part of q v q*."""
    half = angle.unsqueeze(-1) / 2
    q = torch.cat([half.cos(), half.sin() * axis], dim=-1)
    q_conj = q * q.new_tensor([1.0, -1.0, -1.0, -1.0])
    pure = torch.cat([torch.zeros_like(v[..., :1]), v], dim=-1)
    q, pure = torch.broadcast_tensors(q, pure)
    return quaternion_multiply(quaternion_multiply(q, pure), q_conj.expand_as(q))[..., 1:]


class QuaternionRotary(AngleRotary):
    """Projected 3-D quaternion rotations by position (see the module doc).

    YAML: ``rotary: {type: quaternion, conf: {groups: 2, theta: 10000.0, rot_scale: 4.0}}``

    Args:
        head_dim: channels per attention head (set by the model).
        groups: channel groups per head, each with its own 3-D subspace (``head_dim / groups >= 3``).
        theta: ladder base over the groups; negative reverses the rotation.
        rot_scale: multiplies every angle.
        learned_axis: train the rotation axes (else fixed at ``axis``).
        axis: initial axis (3 numbers, normalised), the same for every group.
    """

    def __init__(
        self,
        head_dim: int,
        groups: int = 1,
        theta: float = 10000.0,
        rot_scale: float = 1.0,
        learned_axis: bool = True,
        axis: Sequence[float] = (1.0, 1.0, 1.0),
    ) -> None:
        super().__init__(head_dim, rot_scale)
        if groups < 1 or head_dim % groups or head_dim // groups < 3:
            raise ValueError(f"quaternion: groups={groups} must divide head_dim={head_dim} into groups of >= 3")
        axis_t = torch.as_tensor(axis, dtype=torch.float32)
        if axis_t.shape != (3,) or not axis_t.norm() > 0:
            raise ValueError(f"quaternion: axis must be 3 numbers, not all zero, got {list(axis)}")
        self.groups, self.group_dim, self.theta = groups, head_dim // groups, theta
        self.register_buffer("inv_freq", geometric_ladder(theta, groups), persistent=False)
        down = torch.empty(groups, 3, self.group_dim)
        for j in range(groups):
            nn.init.orthogonal_(down[j])
        self.down = nn.Parameter(down)  # (G, 3, g)
        self.up = nn.Parameter(torch.linalg.pinv(down))  # (G, g, 3)
        axes = (axis_t / axis_t.norm()).repeat(groups, 1)  # (G, 3)
        if learned_axis:
            self.axis = nn.Parameter(axes)
        else:
            self.register_buffer("axis", axes)

    def raw_angles(self, positions: Tensor, f0: Optional[F0Track] = None) -> Tensor:
        """(T, G) or (B, T, G)."""
        return positions.to(torch.float32).unsqueeze(-1) * self.inv_freq

    def rotate(self, x: Tensor, positions: Tensor, f0: Optional[F0Track] = None) -> Tensor:
        angles = self.angles(positions)
        if angles.dim() == 3:
            angles = angles.unsqueeze(-3)  # (B, 1, T, G)
        xg = x.float().unflatten(-1, (self.groups, self.group_dim))  # (..., T, G, g)
        v = torch.einsum("...gc,gdc->...gd", xg, self.down)  # (..., T, G, 3)
        axis = self.axis / self.axis.norm(dim=-1, keepdim=True)
        turned = quaternion_rotate(v, axis, angles)
        delta = torch.einsum("...gd,gcd->...gc", turned - v, self.up)
        return (xg + delta).flatten(-2).to(x.dtype)

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, groups={self.groups}, theta={self.theta}, rot_scale={self.rot_scale}"
