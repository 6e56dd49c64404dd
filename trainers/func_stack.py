"""K members of any ``nn.Module`` as one, with ``torch.func``: the fused engine for a user's own
model (:class:`~trainers.models.FactoryModel`).

Each member is built by :func:`trainers.networks.build_model` with its own seed, so member k
starts where an unfused run with that seed starts. Their parameters and buffers are stacked
along a leading member axis (``[K, ...]``, as :func:`torch.func.stack_module_state` stacks
them), and a forward pass runs every member at once: ``vmap`` over
``functional_call(model, (params_k, buffers_k), x)``. Each member sees only its own weights,
so its loss and gradients depend on nothing but that member; every member's buffers are its
own too (batch norm's running statistics and ``num_batches_tracked``, updated per member in
training mode and read in evaluation mode).

What matches an unfused run, and what does not:

* without random layers a member computes what its unfused run computes, up to floating-point
  rounding (the batched kernels sum in other orders);
* with dropout (or any random layer) every member draws its masks from the group's random
  stream (``vmap(..., randomness="different")``, seeded from the group's first member), not
  from the stream its unfused run would have seeded: a member's masks differ from its solo
  run's, so members then match their solo runs in distribution, not number for number. A group
  repeats exactly with the same seeds.

``torch.nn.GRU``, ``LSTM`` and ``RNN`` have no batching rule in torch; inside the vmapped call
their forward runs as the same recurrences written with ``F.linear`` (:func:`_rnn_forward`),
the arithmetic of torch's CPU kernels up to float rounding. A module that cannot run under
``vmap`` at all (data-dependent control flow, ``.item()``, in-place writes of per-member values
into a shared input, packed sequences...) is found by :meth:`FuncStackedModel.vmap_problem`,
and the fused trainer then trains its members one at a time.
"""

from __future__ import annotations

import types
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap
from torch.nn import functional as F

from .models import FactoryModel
from .networks import build_model


class FuncStackedModel:
    """The stacked parameters (leaf tensors ``[K, ...]``, in ``named_parameters`` order) and
    buffers of K members of one module, and their vmapped forward pass.

    Inputs are ``[B, *in_shape]`` (one batch shared by all members) or ``[K, B, *in_shape]``
    (a batch per member); outputs are ``[K, B, n_out]``. The tensors are replaced, not
    resized, when members leave (:meth:`keep`).
    """

    def __init__(
        self,
        config: FactoryModel,
        seeds: Sequence[int],
        n_features: int,
        n_out: int,
        in_shape: Sequence[int],
        device: torch.device,
    ) -> None:
        self.in_shape = tuple(in_shape)
        sequence = len(self.in_shape) == 1
        members = [
            build_model(config, n_features, n_out, sequence, seed, self.in_shape).to(device)
            for seed in seeds
        ]
        # the module whose code runs every member: member 0's, its tensors swapped per call
        self.base = members[0]
        for module in self.base.modules():
            if isinstance(module, nn.RNNBase):  # no batching rule: the recurrence written out
                setattr(module, "forward", types.MethodType(_rnn_forward, module))  # noqa: B010
        named = [dict(m.named_parameters()) for m in members]
        self.names = list(named[0])
        self.params: list[Tensor] = [
            torch.stack([m[name].detach() for m in named]).requires_grad_(
                named[0][name].requires_grad
            )
            for name in self.names
        ]
        buffers = [dict(m.named_buffers()) for m in members]
        self.buffer_names = list(buffers[0])
        self.buffers: list[Tensor] = [
            torch.stack([b[name].detach() for b in buffers]) for name in self.buffer_names
        ]
        kept = set(self.base.state_dict(keep_vars=True))
        self._persistent = [name in kept for name in self.buffer_names]
        self.training = True

    @property
    def size(self) -> int:
        """K, the number of members."""
        return self.params[0].shape[0]

    @property
    def handwritten(self) -> bool:
        """Always False: gradients come from autograd over :meth:`forward`."""
        return False

    def train(self, mode: bool = True) -> None:
        """Training mode (dropout on, batch norm's batch statistics) or, with ``mode`` False,
        evaluation mode, as ``nn.Module.train`` sets it."""
        self.base.train(mode)
        self.training = mode

    def eval(self) -> None:
        self.train(False)

    def forward(self, x: Tensor) -> Tensor:
        return self._call(self.params, self.buffers, x)

    def _call(self, params: Sequence[Tensor], buffers: Sequence[Tensor], x: Tensor) -> Tensor:
        shared = x.ndim == len(self.in_shape) + 1
        base, names, buffer_names = self.base, self.names, self.buffer_names

        def member(ps: Sequence[Tensor], bs: Sequence[Tensor], xb: Tensor) -> Tensor:
            state = (dict(zip(names, ps, strict=True)), dict(zip(buffer_names, bs, strict=True)))
            out: Tensor = functional_call(base, state, (xb,))
            return out

        run = vmap(member, in_dims=(0, 0, None if shared else 0), randomness="different")
        out: Tensor = run(list(params), list(buffers), x)
        return out

    def grads(self, loss: Tensor) -> list[Tensor]:
        """The gradient of ``loss`` for every stacked parameter, laid out as the parameter is
        (vmap's backward can hand back transposed strides, which the optimizers' fused
        kernels do not read right); zeros where it has none (a parameter the forward pass did
        not use, or one that does not require grad)."""
        wanted = [p for p in self.params if p.requires_grad]
        found = iter(torch.autograd.grad(loss, wanted, allow_unused=True))
        grads = []
        for p in self.params:
            g = next(found) if p.requires_grad else None
            grads.append(torch.zeros_like(p) if g is None else g.contiguous())
        return grads

    def vmap_problem(self, x: Tensor, n_out: int) -> str | None:
        """Why the members cannot run as one vmapped group, or None when they can: a forward
        and backward pass of two members on the two examples ``x`` (shared and per member, in
        training mode), and a forward pass in evaluation mode. Copies of the tensors are used,
        and the random state is restored: nothing here changes the members."""
        pick = torch.tensor([0, min(1, self.size - 1)], device=x.device)
        params = [p.detach()[pick].clone().requires_grad_(True) for p in self.params]
        buffers = [b[pick].clone() for b in self.buffers]
        mode = self.training
        devices = [x.device] if x.device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=devices, device_type=x.device.type):
                self.train(True)
                for batch in (x, x.unsqueeze(0).expand(2, *x.shape)):
                    out = self._call(params, buffers, batch)
                    _check_shape(out, (2, len(x), n_out))
                    torch.autograd.grad(out.float().square().sum(), params, allow_unused=True)
                self.train(False)
                with torch.no_grad():
                    _check_shape(self._call(params, buffers, x), (2, len(x), n_out))
        except Exception as exc:  # whatever the module does under vmap: it cannot be fused
            return _one_line(exc)
        finally:
            self.train(mode)
        return None

    @torch.no_grad()
    def keep(self, index: Tensor) -> None:
        """Keep only the members at ``index`` (a 1-d long tensor), in that order."""
        self.params = [p.detach()[index].requires_grad_(p.requires_grad) for p in self.params]
        self.buffers = [b[index] for b in self.buffers]

    def member_state(self, k: int) -> dict[str, Tensor]:
        """Member ``k``'s parameters and (persistent) buffers as its unfused model's
        ``state_dict`` names and shapes them (copies)."""
        pairs = zip(self.names, self.params, strict=True)
        state = {name: p.detach()[k].clone() for name, p in pairs}
        for name, b, kept in zip(self.buffer_names, self.buffers, self._persistent, strict=True):
            if kept:
                state[name] = b[k].clone()
        return state


def _check_shape(out: object, expected: tuple[int, ...]) -> None:
    if not isinstance(out, Tensor) or tuple(out.shape) != expected:
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"the vmapped model returned {got}, expected {expected}")


def _one_line(exc: BaseException) -> str:
    """An exception as one short line: its type and the first line of its message."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    text = text if len(text) <= 200 else text[:197] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# ---------------------------------------------------------------------------------------------
# Recurrent layers under vmap.


def _rnn_forward(self: nn.RNNBase, input: Any, hx: Any = None) -> tuple[Tensor, Any]:
    """``nn.GRU`` / ``nn.LSTM`` / ``nn.RNN``'s forward for one member, written with
    ``F.linear`` and elementwise ops so that it runs under ``vmap`` (torch's fused recurrent
    kernels have no batching rule). The same arithmetic as torch's CPU kernels: each layer's
    input gates computed for all steps at once, then the cells in torch's order of operations.
    Packed sequences and LSTM projections are refused (the group then trains one by one)."""
    if not isinstance(input, Tensor):
        raise NotImplementedError("packed sequences cannot run under vmap")
    if getattr(self, "proj_size", 0):
        raise NotImplementedError("an LSTM with proj_size cannot run under vmap")
    lstm = self.mode == "LSTM"
    batched = input.dim() == 3
    x = input if batched else input.unsqueeze(0 if self.batch_first else 1)
    if self.batch_first:
        x = x.transpose(0, 1)  # [L, B, features]
    dirs = 2 if self.bidirectional else 1
    if hx is None:
        zeros = x.new_zeros(self.num_layers * dirs, x.shape[1], self.hidden_size)
        h0, c0 = zeros, zeros
    elif lstm:
        h0, c0 = hx if batched else (hx[0].unsqueeze(1), hx[1].unsqueeze(1))
    else:
        h0 = c0 = hx if batched else hx.unsqueeze(1)
    layer_input = x
    last_h: list[Tensor] = []
    last_c: list[Tensor] = []
    for layer in range(self.num_layers):
        outputs = []
        for direction in range(dirs):
            suffix = f"_l{layer}" + ("_reverse" if direction else "")
            w_ih, w_hh = getattr(self, f"weight_ih{suffix}"), getattr(self, f"weight_hh{suffix}")
            b_ih = getattr(self, f"bias_ih{suffix}") if self.bias else None
            b_hh = getattr(self, f"bias_hh{suffix}") if self.bias else None
            i = layer * dirs + direction
            h, c = h0[i], c0[i]
            gates_x = F.linear(layer_input, w_ih, b_ih)  # every step's input gates at once
            steps = range(len(x) - 1, -1, -1) if direction else range(len(x))
            hs: list[Tensor] = [h] * len(x)
            for t in steps:
                h, c = _cell(self.mode, gates_x[t], F.linear(h, w_hh, b_hh), h, c)
                hs[t] = h
            outputs.append(torch.stack(hs))
            last_h.append(h)
            last_c.append(c)
        layer_input = torch.cat(outputs, -1) if dirs == 2 else outputs[0]
        if self.dropout and self.training and layer < self.num_layers - 1:
            layer_input = F.dropout(layer_input, self.dropout, True)
    output = layer_input.transpose(0, 1) if self.batch_first else layer_input
    h_n, c_n = torch.stack(last_h), torch.stack(last_c)
    if not batched:
        output = output.squeeze(0 if self.batch_first else 1)
        h_n, c_n = h_n.squeeze(1), c_n.squeeze(1)
    return output, ((h_n, c_n) if lstm else h_n)


def _cell(mode: str, gi: Tensor, gh: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """One step of a recurrent cell from its input gates ``gi`` and hidden gates ``gh``:
    (h', c'), c' unused except by the LSTM."""
    if mode == "GRU":
        i_r, i_z, i_n = gi.chunk(3, -1)
        h_r, h_z, h_n = gh.chunk(3, -1)
        reset = torch.sigmoid(h_r + i_r)
        update = torch.sigmoid(h_z + i_z)
        new = torch.tanh(i_n + h_n * reset)
        return (h - new) * update + new, c
    if mode == "LSTM":
        i, f, g, o = (gh + gi).chunk(4, -1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c
    if mode == "RNN_TANH":
        return torch.tanh(gh + gi), c
    if mode == "RNN_RELU":
        return torch.relu(gh + gi), c
    raise NotImplementedError(f"recurrent mode {mode!r} cannot run under vmap")
