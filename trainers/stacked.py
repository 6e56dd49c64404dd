"""K models of one architecture as one: every parameter stacked along a leading member axis.

Member k is initialized exactly as :func:`trainers.networks.build_model` initializes it with its
own seed, so member k of a stack starts where an unfused run with that seed starts. Forward
passes run all members at once, with batched matrix products (``torch.baddbmm``) for the linear
layers and grouped convolutions (``groups = K``) for the CNN; each member sees only its own
weights, so a member's loss and gradients depend on nothing but that member.

Inputs are ``[B, F]`` (one batch shared by all members) or ``[K, B, F]`` (a batch per member);
outputs are ``[K, B, n_out]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.nn import functional as F

from .models import CNNModel, LinearModel, MLPModel, ModelConfig
from .networks import build_model
from .stacked_mlp import linear, losses_and_grads, output_t


class StackedModel:
    """The stacked parameters of K members (leaf tensors ``[K, ...]``) and their forward pass.

    ``params`` keeps build_model's parameter order; ``names`` the matching names. A hidden
    linear layer's weight is stored transposed, ``[K, in, out]``, so the batched products read
    both operands contiguously: on this project's CPU a fused MLP step is several times slower
    with ``nn.Linear``'s ``[out, in]`` layout (its backward transposes and copies). An MLP's (or
    linear model's) output layer keeps ``[out, in]``: its few outputs are computed transposed,
    ``[K, out, B]`` (see :mod:`trainers.stacked_mlp`). Every other parameter keeps its member's
    layout. The tensors are replaced, not resized, when members leave (:meth:`keep`).
    """

    def __init__(
        self,
        config: ModelConfig,
        seeds: Sequence[int],
        n_features: int,
        n_out: int,
        sequence: bool,
        device: torch.device,
    ) -> None:
        members = [build_model(config, n_features, n_out, sequence, seed) for seed in seeds]
        named = [list(m.named_parameters()) for m in members]
        self.config = config
        self.names = [name for name, _ in named[0]]
        cnn = isinstance(config, CNNModel)
        last = max(i for i, (_, p) in enumerate(named[0]) if p.ndim == 2)
        # which parameters are linear weights stored transposed: the CNN's head; an MLP's
        # hidden layers (not its output layer)
        self._transposed = [
            p.ndim == 2 and (name.startswith("head.") if cnn else i != last)
            for i, (name, p) in enumerate(named[0])
        ]
        self.params: list[Tensor] = [
            torch.stack([_layout(member[i][1].detach(), t) for member in named])
            .to(device)
            .requires_grad_(True)
            for i, t in enumerate(self._transposed)
        ]

    @property
    def size(self) -> int:
        """K, the number of members."""
        return self.params[0].shape[0]

    @property
    def handwritten(self) -> bool:
        """Whether :meth:`losses_and_grads` serves this stack (an MLP or a linear model):
        else its gradients come from autograd over :meth:`forward`."""
        return isinstance(self.config, LinearModel | MLPModel)

    def losses_and_grads(
        self, x: Tensor, y: Tensor, classification: bool
    ) -> tuple[Tensor, Tensor, list[Tensor]]:
        """Each member's data loss and correct count, and the gradients of ``params``,
        without autograd (:func:`trainers.stacked_mlp.losses_and_grads`)."""
        assert self.handwritten
        with torch.no_grad():
            return losses_and_grads(self.params, x, y, classification)

    def forward(self, x: Tensor) -> Tensor:
        if isinstance(self.config, CNNModel):
            return self._forward_cnn(x)
        assert isinstance(self.config, LinearModel | MLPModel)
        h = x
        layers = len(self.params) // 2
        for i in range(layers - 1):
            h = linear(h, self.params[2 * i], self.params[2 * i + 1])
            h = torch.relu_(h)  # in place: the product's backward needs only its inputs
        return _output(h, self.params[-2], self.params[-1])

    def _forward_cnn(self, x: Tensor) -> Tensor:
        k = self.size
        # [B, K, L]: each member's sequence is one input channel of a grouped convolution.
        h = x.unsqueeze(1).expand(-1, k, -1) if x.ndim == 2 else x.transpose(0, 1)
        for i, (stride, padding) in enumerate(((2, 1), (2, 1), (2, 1))):
            weight, bias = self.params[2 * i], self.params[2 * i + 1]
            h = F.conv1d(
                h,
                weight.flatten(0, 1),  # [K·C_out, C_in, width]
                bias.flatten(),
                stride=stride,
                padding=padding,
                groups=k,
            )
            h = torch.relu_(h)
        batch = h.shape[0]
        flat = h.view(batch, k, -1).transpose(0, 1)  # [K, B, C·L], each member's flatten(1)
        return linear(flat, self.params[6], self.params[7])

    @torch.no_grad()
    def keep(self, index: Tensor) -> None:
        """Keep only the members at ``index`` (a 1-d long tensor), in that order."""
        self.params = [p.detach()[index].requires_grad_(True) for p in self.params]

    def member_state(self, k: int) -> dict[str, Tensor]:
        """Member ``k``'s parameters as its unfused model names and shapes them (copies)."""
        return {
            name: _layout(p.detach()[k], t).clone()
            for name, p, t in zip(self.names, self.params, self._transposed, strict=True)
        }


def _layout(weight: Tensor, transposed: bool) -> Tensor:
    return weight.T if transposed else weight


def _output(h: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """An output layer with ``[K, out, in]`` weights: ``[K, B, out]``, made contiguous (one
    small copy) so that the loss's and argmax's reductions run along memory."""
    return output_t(h, weight, bias).transpose(1, 2).contiguous()
