"""Fake-quantizers with straight-through gradients (STE), matching the golden integer rules.

Every rounding here is ``floor(x + 1/2)`` (round half up), never ``torch.round`` (half to even),
so the codes the training forward pass computes are the codes the golden model sees:

* ``fake_quant(x, scale, lo, hi)``: code = clip(floor(x / scale + 1/2), lo, hi) as a float tensor
  holding integers; gradient w.r.t. x is 1/scale inside [lo, hi] and 0 outside, and the
  gradient w.r.t. a learnable scale is the LSQ/PACT one (the rounding error, and lo or hi
  outside the range).
* ``nest_codes(q, master_bits, bits, signed)``: the golden nesting rule on integer-valued float
  codes, sat_b(floor(q / 2^s + 1/2)), s = n - b; gradient 2^-s (the nested code times 2^s
  stands for the same real value).
* ``master_weight_codes(w, master_bits)``: signed narrow-range n-bit weight codes with one scale
  per output channel, scale_c = max|w_c| / (2^(n-1) - 1) (a statistic of the weight, so it
  carries no gradient); codes carry the STE gradient.
* ``lsq_quant``: LSQ (Esser et al. 2020) with its gradient scale 1/sqrt(numel * Qp).
* ``direct_weight_quant``: a float weight rounded straight to b bits (DQNet-style re-quantizing).
"""

import torch

__all__ = ["round_half_up", "fake_quant", "nest_codes", "master_weight_codes", "code_limits",
           "lsq_quant", "direct_weight_quant", "SCALE_FLOOR"]

#: Lower bound of every scale, so an all-zero channel never divides by zero.
SCALE_FLOOR = 1e-8


def code_limits(bits, signed):
    """[lo, hi] of a b-bit code: unsigned [0, 2^b - 1], signed narrow [-(2^(b-1)-1), 2^(b-1)-1]."""
    if signed:
        hi = (1 << (bits - 1)) - 1
        return -hi, hi
    return 0, (1 << bits) - 1


def round_half_up(x):
    """floor(x + 1/2) forward, identity gradient."""
    return x + (torch.floor(x + 0.5) - x).detach()


class _FakeQuant(torch.autograd.Function):
    """floor(clamp(x / s, lo, hi) + 1/2) with the STE of the composed form
    round_half_up(clamp(x / s, lo, hi)): gradient 1/s inside [lo, hi] (inclusive, as clamp's),
    0 outside, and -x/s^2 inside for the scale. One function instead of the composed ops keeps
    a training step's elementwise work and saved tensors small."""

    @staticmethod
    def forward(ctx, x, scale, lo, hi):
        v = x / scale
        ctx.save_for_backward(v, scale)
        ctx.lo, ctx.hi = lo, hi
        return torch.floor(torch.clamp(v, lo, hi) + 0.5)

    @staticmethod
    def backward(ctx, grad):
        v, scale = ctx.saved_tensors
        inside = grad * ((v >= ctx.lo) & (v <= ctx.hi))
        grad_x = inside / scale if ctx.needs_input_grad[0] else None
        grad_scale = None
        if ctx.needs_input_grad[1]:
            grad_scale = -(inside * v).sum_to_size(scale.shape) / scale
        return grad_x, grad_scale, None, None


class _Nest(torch.autograd.Function):
    """clip(floor(q 2^-s + 1/2), lo, hi) with the gradient 2^-s everywhere (see nest_codes)."""

    @staticmethod
    def forward(ctx, q, shift, lo, hi):
        ctx.factor = 0.5 ** shift
        return torch.clamp(torch.floor(q * ctx.factor + 0.5), lo, hi)

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.factor, None, None, None


def fake_quant(x, scale, lo, hi):
    """Integer-valued codes clip(floor(x / scale + 1/2), lo, hi) with the STE (see module doc)."""
    if not isinstance(scale, torch.Tensor):
        scale = torch.tensor(float(scale))
    return _FakeQuant.apply(x, scale, lo, hi)


def nest_codes(q, master_bits, bits, signed):
    """Golden nesting of integer-valued codes: sat_b(floor(q / 2^s + 1/2)), gradient 2^-s
    (q 2^-s is exact: a power-of-two scaling)."""
    shift = master_bits - bits
    if shift == 0:
        return q
    lo, hi = code_limits(bits, signed)
    return _Nest.apply(q, shift, lo, hi)


def master_weight_codes(weight, master_bits):
    """(codes, per-channel scale) of a float weight at the n-bit master width."""
    lo, hi = code_limits(master_bits, True)
    flat = weight.detach().reshape(weight.shape[0], -1)
    scale = torch.clamp(flat.abs().amax(dim=1), min=SCALE_FLOOR) / hi
    view = (-1,) + (1,) * (weight.dim() - 1)
    return fake_quant(weight, scale.view(view), lo, hi), scale


def _grad_scale(x, factor):
    return x * factor + (x - x * factor).detach()


def lsq_quant(x, step, bits, signed):
    """LSQ fake-quantization: clip(round(x / s), Qn, Qp) * s with LSQ's step gradient scale.

    Signed weights use LSQ's full range [-2^(b-1), 2^(b-1) - 1], unsigned activations
    [0, 2^b - 1].
    """
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    step = _grad_scale(step, 1.0 / (x.numel() * hi) ** 0.5)
    return fake_quant(x, step, lo, hi) * step


def direct_weight_quant(weight, bits):
    """A float weight rounded directly to b bits, per-channel max scale (DQNet's re-quantizing)."""
    lo, hi = code_limits(bits, True)
    flat = weight.detach().reshape(weight.shape[0], -1)
    scale = (torch.clamp(flat.abs().amax(dim=1), min=SCALE_FLOOR) / hi)
    scale = scale.view((-1,) + (1,) * (weight.dim() - 1))
    return fake_quant(weight, scale, lo, hi) * scale
