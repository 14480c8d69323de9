"""gather_rows: the rows and the gradient of separate index_select calls, from one buffer."""

from __future__ import annotations

import torch

from hstu_blair.models.gather import gather_rows


def test_gathers_and_gradient_equal_separate_index_selects():
    torch.manual_seed(0)
    source = torch.randn(6, 4, requires_grad=True)
    indices = [torch.tensor([0, 5, 5, 2]), torch.tensor([1, 1]), torch.tensor([3, 0, 4])]
    fused = gather_rows(source * 2, *indices)
    separate = [(source * 2).index_select(0, i) for i in indices]
    weights = [torch.randn(len(i), 4) for i in indices]
    for a, b in zip(fused, separate, strict=True):
        torch.testing.assert_close(a, b)
    (grad_fused,) = torch.autograd.grad(sum((a * w).sum() for a, w in zip(fused, weights)), source)
    (grad_separate,) = torch.autograd.grad(sum((b * w).sum() for b, w in zip(separate, weights)), source)
    torch.testing.assert_close(grad_fused, grad_separate)


def test_an_unused_gather_adds_nothing():
    source = torch.randn(5, 3, requires_grad=True)
    used, _unused = gather_rows(source, torch.tensor([4, 4]), torch.tensor([0, 1, 2]))
    (grad,) = torch.autograd.grad(used.sum(), source)
    torch.testing.assert_close(grad, torch.tensor([0.0, 0, 0, 0, 2]).unsqueeze(1).expand(5, 3))
