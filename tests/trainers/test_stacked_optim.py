"""The stacked Adam, both of its paths (torch's fused kernel, and the elementwise fallback for
devices without it): every member steps exactly as ``torch.optim.Adam`` steps that member alone
with its own learning rate, and members can leave."""

from __future__ import annotations

import pytest
import torch

from trainers.stacked_optim import StackedAdam, fused_adam_available

SHAPES = [(5, 3), (3,), (3, 2)]


@pytest.mark.parametrize("fused", [True, False], ids=["fused kernel", "elementwise"])
def test_each_member_steps_as_torch_adam_alone(fused: bool) -> None:
    if fused:
        assert fused_adam_available(torch.device("cpu"))  # this CPU build has the kernel
    k = 4
    g = torch.Generator().manual_seed(0)
    lr = torch.tensor([1e-3, 3e-3, 1e-2, 3e-2])
    stacked = [torch.randn(k, *shape, generator=g) for shape in SHAPES]
    alone = [[p[i].clone().requires_grad_(True) for p in stacked] for i in range(k)]
    oracles = [
        torch.optim.Adam(alone[i], lr=float(lr[i]), foreach=False, fused=False) for i in range(k)
    ]
    opt = StackedAdam(lr)
    opt.fused = fused
    members = list(range(k))
    for step in range(12):
        if step == 6:  # members 0 and 2 leave
            stay = torch.tensor([1, 3])
            opt.keep(stay)
            stacked = [p[stay].clone() for p in stacked]
            members = [1, 3]
        grads = [torch.randn(len(members), *shape, generator=g) for shape in SHAPES]
        opt.step(stacked, grads)
        for row, i in enumerate(members):
            for p, grad in zip(alone[i], grads, strict=True):
                p.grad = grad[row].clone()
            oracles[i].step()
            for mine, theirs in zip(stacked, alone[i], strict=True):
                torch.testing.assert_close(mine[row], theirs.detach(), rtol=1e-5, atol=1e-7)
    assert opt.steps == 12
