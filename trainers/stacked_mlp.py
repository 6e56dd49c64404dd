"""The stacked MLP's (and linear model's) losses and gradients, written out by hand.

For a stack of fully connected ReLU networks the backward pass is short enough to write down,
and writing it down lets a step do less than autograd does on a CPU (``bench/engine_ab.py``
measures the engine before and after, ``bench/stacked_products.py`` each product):

* the output layer (10 classes, or 1 output) is computed transposed, ``[K, out, B]`` from its
  ``[K, out, in]`` weight (``nn.Linear``'s own layout): batched products with 10 columns are
  about 4x slower per FLOP on this project's CPU than the same products with 10 rows;
* the loss's gradient is the closed form, ``(softmax − onehot) / B`` for the cross-entropy and
  ``2 (out − y) / B`` for the squared error, from the softmax already computed for the loss;
* the training accuracy counts an example as correct when its true class's logit is the
  largest (the only reading that differs from ``argmax``'s is an exact tie, which picks the
  lowest class there): a comparison with the max the loss needs anyway, where ``argmax`` over
  the 10 rows of the transposed layout is a slow strided reduction;
* no graph is recorded or walked.

The arithmetic is the same as autograd's (the ReLU's backward is ``threshold_backward``, as
ReluBackward's is), so members still match their unfused runs up to float rounding; the tests
hold the gradients to autograd's over the same stacked forward pass.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def losses_and_grads(
    params: Sequence[Tensor], x: Tensor, y: Tensor, classification: bool
) -> tuple[Tensor, Tensor, list[Tensor]]:
    """Each member's mean data loss and correct count (``[K]`` each; counts are zeros for
    regression) and the loss's gradient for every parameter, in ``params``' order and layouts.

    ``params`` are ``[W₁, b₁, …, W_L, b_L]``: hidden weights ``[K, in, out]``, the output
    weight ``[K, out, in]``, biases ``[K, out]``. ``x`` is ``[B, F]`` (one batch for every
    member) or ``[K, B, F]``; ``y`` is ``[B]`` or ``[K, B]``. Call it under ``no_grad``.
    """
    weights, biases = params[0::2], params[1::2]
    k = weights[0].shape[0]
    h = batch_per_member(x, k)
    batch = h.shape[1]
    inputs = [h]  # each layer's input; a hidden layer's output is ReLU's
    for weight, bias in zip(weights[:-1], biases[:-1], strict=True):
        h = linear(h, weight, bias).relu_()
        inputs.append(h)
    out_t = output_t(h, weights[-1], biases[-1])  # [K, out, B]
    if classification:
        losses, correct, grad_t = _cross_entropy(out_t, y, k, batch)
    else:
        diff = out_t.squeeze(1) - y  # [K, B]
        losses = diff.square().mean(1)
        correct = torch.zeros_like(losses)
        grad_t = diff.mul_(2.0 / batch).unsqueeze(1)  # [K, 1, B]
    grads: list[Tensor] = [grad_t.sum(2), torch.bmm(grad_t, inputs[-1])]  # output: bias, weight
    if len(weights) > 1:
        grad = torch.bmm(grad_t.transpose(1, 2), weights[-1])  # [K, B, in]: into the last ReLU
        for i in range(len(weights) - 2, -1, -1):
            grad = torch.ops.aten.threshold_backward(grad, inputs[i + 1], 0.0)
            grads += [grad.sum(1), torch.bmm(inputs[i].transpose(1, 2), grad)]
            if i > 0:  # the first layer's input is the data: no gradient needed
                grad = torch.bmm(grad, weights[i].transpose(1, 2))
    grads.reverse()  # built from the output backwards, each layer's bias before its weight
    return losses, correct, grads


def batch_per_member(x: Tensor, k: int) -> Tensor:
    """A batch as ``[K, B, F]``: ``[B, F]`` (one batch for every member) expanded, no copy."""
    return x.expand(k, *x.shape) if x.ndim == 2 else x


def linear(h: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """``h @ W + b`` per member: h ``[B, F]`` (shared) or ``[K, B, F]``; W ``[K, F, out]``."""
    # bmm, then the bias in place: ~10% faster a step than baddbmm, whose output starts as a
    # broadcast copy of the bias (bench/throughput.py's step, 2 CPU threads, K = 64)
    return torch.bmm(batch_per_member(h, weight.shape[0]), weight).add_(bias.unsqueeze(1))


def output_t(h: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """An output layer computed transposed: ``(h @ Wᵀ + b)ᵀ`` per member, ``[K, out, B]``, from
    h ``[B, F]`` or ``[K, B, F]`` and W ``[K, out, F]`` (``nn.Linear``'s layout)."""
    h = batch_per_member(h, weight.shape[0])
    return torch.bmm(weight, h.transpose(1, 2)).add_(bias.unsqueeze(2))


def _cross_entropy(out_t: Tensor, y: Tensor, k: int, batch: int) -> tuple[Tensor, Tensor, Tensor]:
    """Mean cross-entropy ``[K]``, correct counts ``[K]`` and the gradient with respect to the
    logits ``[K, C, B]``, from transposed logits ``[K, C, B]``."""
    target = (y.view(1, 1, batch) if y.ndim == 1 else y.unsqueeze(1)).expand(k, 1, batch)
    top = out_t.amax(1, keepdim=True)  # [K, 1, B]
    exp = torch.sub(out_t, top).exp_()
    total = exp.sum(1, keepdim=True)
    picked = out_t.gather(1, target)
    losses = total.log().add_(top).sub_(picked).mean(2).squeeze(1)
    correct = picked.eq(top).sum(2).squeeze(1).to(losses.dtype)
    grad = exp.div_(total)  # the softmax
    minus_one = torch.full((1, 1, 1), -1.0, device=out_t.device).expand_as(picked)
    grad.scatter_add_(1, target, minus_one)  # − onehot
    return losses, correct, grad.mul_(1.0 / batch)
