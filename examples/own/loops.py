"""A training loop of one's own, for dynl2's ``[train] loop = "loops:FUNCTION"``.

dynl2 builds the model and the data and hands them over in ``ctx``; the loop trains, calls
``ctx.report`` once per epoch, and stops when it returns True. This one trains with Adam on
mini-batches with label smoothing, something dynl2's own trainer does not offer.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def smoothed(ctx, smoothing: float = 0.1) -> None:
    model, data, reg = ctx.model, ctx.data, ctx.regularizer
    opt = torch.optim.Adam(model.parameters(), lr=ctx.lr)
    generator = torch.Generator(device=ctx.device).manual_seed(ctx.seed)
    n = len(data.x_train)
    for epoch in range(1, ctx.epochs + 1):
        model.train()
        total = torch.zeros((), device=ctx.device)
        for idx in torch.randperm(n, device=ctx.device, generator=generator).split(ctx.batch_size):
            loss = F.cross_entropy(
                model(data.x_train[idx]), data.y_train[idx], label_smoothing=smoothing
            )
            opt.zero_grad()
            loss.backward()
            reg.step(loss)  # the arm's λ_t from this loss (coupled: into the gradients)
            opt.step()
            reg.after_step(ctx.lr)  # decoupled schemes shrink the weights here
            total += loss.detach() * len(idx)
        model.eval()
        with torch.no_grad():
            out = model(data.x_val)
            val_loss = F.cross_entropy(out, data.y_val)
            val_acc = (out.argmax(1) == data.y_val).float().mean()
        if ctx.report(epoch, train_loss=total / n, val_loss=val_loss, val_acc=val_acc):
            return
