"""Training-mode forward and hand-written backward of the published BatchNorm + ReLU field MLP.

The paper's decoders apply ``h_l = relu(BN(W_l h_{l-1} + V_l q + b_l))`` to ~10^5 queries per
step. Autograd runs that backward correctly but not frugally on a CPU: it copies the gradient
of every in-place accumulation, reduces bias gradients that BatchNorm makes exactly zero, and
lets the BLAS pick slow layouts for the skinny weight-gradient products. This module computes
the same gradients with the minimum of passes over the ``[T, H]`` activations:

- per layer one ReLU mask pass, one native BatchNorm backward, and three matrix products
  (weight gradients ``dX^T h_{l-1}`` and ``q^T dX``, input gradient ``dX W_l``);
- the bias ``b_l`` in front of a training-mode BatchNorm has a zero gradient (the batch mean
  removes it), so none is reduced;
- the output layer's weight gradient is taken with its few output columns padded to 16, which
  the BLAS handles an order of magnitude faster than a 3-row product.

Only training mode with gradients enabled goes through here (``QueryConditionedMLP`` decides);
evaluation uses the running statistics through the plain modules. Equality with autograd, on
outputs, every parameter gradient and the running statistics, is tested in
``tests/test_models.py``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

_PAD_OUT = 16  # output layers narrower than this get their weight gradient from a padded product


def _weight_grad(grad: torch.Tensor, inp: torch.Tensor) -> torch.Tensor:
    """``grad^T @ inp`` (``[O, T] @ [T, I] -> [O, I]``), taking the faster layout for skinny ``O``."""
    n_out = grad.shape[1]
    if n_out < _PAD_OUT:
        padded = F.pad(grad, (0, _PAD_OUT - n_out))
        return (inp.t() @ padded)[:, :n_out].t().contiguous()
    return grad.t() @ inp


class _BatchNormReLUMLP(torch.autograd.Function):
    """See the module docstring. Inputs are flat so that autograd sees every parameter.

    Arguments after ``ctx``: ``pre0`` ``[T, H_0]`` (first pre-activation, differentiable),
    ``query`` ``[T, F]`` (no gradient), ``meta`` (a tuple: number of layers, BatchNorm modules'
    running buffers and averaging factors, eps), then per layer ``gamma, beta``; per layer after
    the first ``W, V, b``; then the output ``W_out, b_out``.
    """

    @staticmethod
    def forward(ctx: Any, pre0: torch.Tensor, query: torch.Tensor, meta: tuple, *params: torch.Tensor) -> torch.Tensor:  # noqa: D102
        n_layers, running, eps = meta
        norm_params = params[: 2 * n_layers]
        lin_params = params[2 * n_layers : 2 * n_layers + 3 * (n_layers - 1)]
        w_out, b_out = params[-2], params[-1]
        saved: list[torch.Tensor] = []
        h = None
        for i in range(n_layers):
            if i == 0:
                x = pre0
            else:
                w, v, b = lin_params[3 * (i - 1) : 3 * i]
                x = torch.addmm(b, query, v.t()).addmm_(h, w.t())
            gamma, beta = norm_params[2 * i], norm_params[2 * i + 1]
            running_mean, running_var, factor = running[i]
            y, mean, rstd = torch.ops.aten.native_batch_norm(
                x, gamma, beta, running_mean, running_var, True, factor, eps
            )
            h = y.clamp_min_(0)
            saved += [x, h, mean, rstd]
        out = torch.addmm(b_out, h, w_out.t())
        ctx.n_layers, ctx.running, ctx.eps = n_layers, running, eps
        ctx.save_for_backward(query, *saved, *params)
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple:  # noqa: D102
        n_layers, eps = ctx.n_layers, ctx.eps
        query, *rest = ctx.saved_tensors
        saved, params = rest[: 4 * n_layers], rest[4 * n_layers :]
        norm_params = params[: 2 * n_layers]
        lin_params = params[2 * n_layers : 2 * n_layers + 3 * (n_layers - 1)]
        w_out = params[-2]
        grads: list[torch.Tensor | None] = [None] * len(params)
        grad_out = grad_out.contiguous()
        h_last = saved[4 * (n_layers - 1) + 1]
        grads[-2] = _weight_grad(grad_out, h_last)
        grads[-1] = grad_out.sum(0)
        grad_h = grad_out @ w_out
        grad_pre0 = None
        for i in range(n_layers - 1, -1, -1):
            x, h, mean, rstd = saved[4 * i : 4 * i + 4]
            gamma = norm_params[2 * i]
            running_mean, running_var, _ = ctx.running[i]
            grad_y = torch.ops.aten.threshold_backward(grad_h, h, 0)
            grad_x, grad_gamma, grad_beta = torch.ops.aten.native_batch_norm_backward(
                grad_y, x, gamma, running_mean, running_var, mean, rstd, True, eps, [True, True, True]
            )
            grads[2 * i], grads[2 * i + 1] = grad_gamma, grad_beta
            if i == 0:
                grad_pre0 = grad_x
                break
            w, v, b = lin_params[3 * (i - 1) : 3 * i]
            h_prev = saved[4 * (i - 1) + 1]
            base = 2 * n_layers + 3 * (i - 1)
            grads[base] = grad_x.t() @ h_prev
            grads[base + 1] = (query.t() @ grad_x).t().contiguous()
            grads[base + 2] = torch.zeros_like(b)  # a training-mode BatchNorm removes any bias in front of it
            grad_h = grad_x @ w
        return (grad_pre0, None, None, *grads)


def batchnorm_relu_mlp(
    pre0: torch.Tensor,
    query: torch.Tensor,
    norms: nn.ModuleList,
    query_in: nn.ModuleList,
    hidden: nn.ModuleList,
    out: nn.Linear,
) -> torch.Tensor:
    """Training-mode ``relu(BN(.))`` MLP from the first pre-activation to the output, ``[T, out]``.

    Args:
        pre0: first layer's pre-activation ``[T, H_0]`` (query and latent parts already summed).
        query: query features ``[T, F]`` fed to every later layer (must not require grad).
        norms: the layers' ``BatchNorm1d`` modules (their running statistics are updated).
        query_in: the query projections ``V_l q + b_l``; entry 0 is already in ``pre0``.
        hidden: the hidden-to-hidden projections ``W_l`` (no bias).
        out: the output layer.
    """
    n_layers = len(norms)
    running = []
    for bn in norms:
        factor = 0.0
        if bn.track_running_stats and bn.num_batches_tracked is not None:
            bn.num_batches_tracked.add_(1)
            factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
        running.append((bn.running_mean, bn.running_var, factor))
    params: list[torch.Tensor] = []
    for bn in norms:
        params += [bn.weight, bn.bias]
    for i in range(1, n_layers):
        params += [hidden[i - 1].weight, query_in[i].weight, query_in[i].bias]
    params += [out.weight, out.bias]
    eps = float(norms[0].eps)
    return _BatchNormReLUMLP.apply(pre0, query, (n_layers, tuple(running), eps), *params)


__all__ = ["batchnorm_relu_mlp"]
