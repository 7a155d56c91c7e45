"""Integerize a trained model: the golden integer network description, and its PyTorch emulation.

Contract
--------
``to_graph(model) -> dict``
    The `dqt_hw.golden.graph` format v1 description of a ``static`` or ``dqt`` QResNet, using
    the model's eval-mode constants (batch-norm running statistics, PACT clips, EMA scales);
    it does not change the model. Every constant is an integer:

    * weights: the n-bit signed master codes the training forward pass uses
      (`QLayer.weight_codes`), per-channel scale Delta_w = max|w_c| / (2^(n-1) - 1);
    * batch norm folds into the requantizer: with g = |gamma| / sqrt(var + eps) (>= 0 by
      construction) and h = beta - g * mean, one master-accumulator unit is worth
      u_c = Delta_in * Delta_w,c * g_c, so (M_c, r_c) = quantize_multiplier(u_c / Delta_out)
      and bias B_c = floor(h_c / u_c + 1/2), clamped to the master accumulator width;
      a layer without batch norm (classifier, controller) has g = 1 and h = its bias;
    * ReLU outputs are unsigned n-bit codes [0, 2^n - 1] with Delta = alpha / (2^n - 1) (PACT);
      residual-branch outputs (conv2, shortcut conv) are signed narrow-range n-bit codes with
      Delta = EMA max|y| / (2^(n-1) - 1); logits (classifier and controller) are 32-bit signed
      integers in units of 2^-LOGIT_FRAC_BITS;
    * residual joins are ``add`` ops: k_i = floor(Delta_i / Delta_out * 2^S + 1/2), one shift S
      chosen so the larger k lies in [2^14, 2^15), k3 = 0, output clipped to [0, 2^n - 1]
      (the ReLU);
    * global average pooling: (M, r) = quantize_multiplier(1 / (H W)).

    Tensor names: input "image" (unsigned master codes from `train.data.to_master_codes`),
    outputs "logits" (int64 (N, classes)) and, for ``dqt`` models, "bits" (int64 (N, L)): the
    ``select_bits`` output, one bit-width per image per controlled layer in the order of
    `QResNet.layer_names` (block by block: conv1, conv2, shortcut conv), which is also the order
    of the controlled conv2d ops in the graph. The controller is part of the graph: pooling of
    the stem output (global_avg_pool; with ``controller_grid`` g > 1, avg_pool2d with window =
    stride = floor(size / g), see `train.model.grid_pool`, and a flatten) -> linear (ReLU,
    n bits) -> linear (logits, n bits) -> select_bits over the candidates (argmax per layer, first index wins). Op names: "stem",
    "block{i}.conv1", "block{i}.conv2", "block{i}.shortcut", "block{i}.join", "pool", "fc",
    "ctrl_pool", ["ctrl_flatten",] "ctrl_fc1", "ctrl_fc2", "select_bits"; each op's output
    tensor has the op's name, except "fc" -> "logits" and "select_bits" -> "bits".

``emulate(graph, codes) -> {output name: torch int64 tensor}``
    Runs such a description with integer PyTorch tensors (int64 everywhere; convolutions in
    float64, exact because every partial sum stays below 2^53). Equals
    ``dqt_hw.golden.run_graph(graph, codes)`` exactly; ``QResNet.integer_forward(codes)`` is
    ``emulate(to_graph(model), codes)``.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F

from dqt_hw.golden import (GRAPH_FORMAT, GRAPH_VERSION, accumulator_bits, quantize_multiplier,
                           validate_graph)

from .model import NESTED_MODES, pool_constants

__all__ = ["LOGIT_FRAC_BITS", "LOGIT_RANGE", "JOIN_MULTIPLIER_BITS", "to_graph", "emulate"]

#: Integer logits are fixed point with this many fraction bits.
LOGIT_FRAC_BITS = 16
#: ... and 32-bit signed.
LOGIT_RANGE = (-(1 << 31), (1 << 31) - 1)
#: The larger k-constant of a residual join lies in [2^(P-1), 2^P).
JOIN_MULTIPLIER_BITS = 15
#: Largest requantizer shift; a channel whose ratio needs more is constant 0 (M = 0).
MAX_SHIFT = 62


def _layer_constants(layer, in_scale, out_scale, terms, master_bits):
    """(weight codes, bias, multiplier, shift) int64 arrays of a QLayer."""
    with torch.no_grad():
        codes, w_scale = layer.weight_codes()
        codes = codes.round().to(torch.int64).numpy()
        w_scale = w_scale.to(torch.float64).numpy()
        if layer.norm is not None:
            norm = layer.norm
            gain = (norm.weight.abs().double()
                    / torch.sqrt(norm.running_var.double() + norm.eps)).numpy()
            offset = norm.bias.double().numpy() - gain * norm.running_mean.double().numpy()
        else:
            gain = np.ones(codes.shape[0])
            offset = layer.bias.double().numpy()
    limit = 1 << (accumulator_bits(master_bits, master_bits, terms) - 1)
    bias, multiplier, shift = [], [], []
    for unit, h in zip(in_scale * w_scale * gain, offset):
        m = r = b = 0
        if unit > 0:
            m, r = quantize_multiplier(unit / out_scale)
            if r < 0:
                raise ValueError(f"layer {layer!r}: requantizer ratio {unit / out_scale:g} is "
                                 f"too large for a {JOIN_MULTIPLIER_BITS}-bit multiplier")
            b = min(max(math.floor(h / unit + 0.5), -limit), limit - 1)
            if r > MAX_SHIFT:
                m = r = 0
        bias.append(b)
        multiplier.append(m)
        shift.append(r)
    as_array = lambda v: np.asarray(v, dtype=np.int64)        # noqa: E731
    return codes, as_array(bias), as_array(multiplier), as_array(shift)


def _output_range(layer, master_bits):
    if layer.out == "relu":
        return 0, (1 << master_bits) - 1, float(layer.output_scale().detach())
    if layer.out == "signed":
        hi = (1 << (master_bits - 1)) - 1
        return -hi, hi, float(layer.output_scale().detach())
    return LOGIT_RANGE[0], LOGIT_RANGE[1], 2.0 ** -LOGIT_FRAC_BITS


class _GraphBuilder:
    def __init__(self, master_bits):
        self.master_bits = master_bits
        self.ops = []

    def layer(self, layer, name, source, in_scale, bits, output=None):
        """Append a conv2d/linear op; return (output tensor name, output scale)."""
        output = output or name
        lo, hi, out_scale = _output_range(layer, self.master_bits)
        terms = int(np.prod(layer.weight.shape[1:]))
        weight, bias, multiplier, shift = _layer_constants(layer, in_scale, out_scale, terms,
                                                           self.master_bits)
        op = {"op": layer.kind, "name": name, "input": source, "output": output,
              "weight": weight, "bias": bias, "multiplier": multiplier, "shift": shift,
              "bits": bits, "lo": lo, "hi": hi}
        if layer.kind == "conv2d":
            op.update(stride=layer.stride, padding=layer.padding)
        self.ops.append(op)
        return output, out_scale

    def join(self, name, skip, branch, out_scale):
        ratios = [skip[1] / out_scale, branch[1] / out_scale]
        shift = max(0, JOIN_MULTIPLIER_BITS - math.frexp(max(ratios))[1])
        k1, k2 = (math.floor(ratio * 2.0 ** shift + 0.5) for ratio in ratios)
        self.ops.append({"op": "add", "name": name, "inputs": [skip[0], branch[0]],
                         "output": name, "k1": k1, "k2": k2, "k3": 0, "shift": shift,
                         "lo": 0, "hi": (1 << self.master_bits) - 1})
        return name, out_scale

    def pool(self, name, source, scale, size):
        multiplier, shift = pool_constants(size, size)
        self.ops.append({"op": "global_avg_pool", "name": name, "input": source, "output": name,
                         "multiplier": multiplier, "shift": shift, "lo": 0,
                         "hi": (1 << self.master_bits) - 1})
        return name, scale


def to_graph(model):
    """The golden integer description of a static or dqt QResNet (see the module docstring)."""
    if model.mode not in NESTED_MODES:
        raise ValueError(f"mode {model.mode!r} has no nested integer form; only models trained "
                         f"with mode static or dqt export to the integer graph")
    config, n = model.config, model.master_bits
    build = _GraphBuilder(n)
    stem_size = (config.image_size + 2 - 3) // config.stem_stride + 1
    act = build.layer(model.stem, "stem", "image", 1.0 / ((1 << n) - 1), n)
    outputs = ["logits"]
    if model.dynamic:
        grid = config.controller_grid
        if grid == 1:
            pooled = build.pool("ctrl_pool", act[0], act[1], stem_size)
        else:
            window = stem_size // grid
            multiplier, shift = pool_constants(window, window)
            build.ops.append({"op": "avg_pool2d", "name": "ctrl_pool", "input": act[0],
                              "output": "ctrl_pool", "kernel": window, "stride": window,
                              "multiplier": multiplier, "shift": shift, "lo": 0,
                              "hi": (1 << n) - 1})
            build.ops.append({"op": "flatten", "name": "ctrl_flatten", "input": "ctrl_pool",
                              "output": "ctrl_flatten"})
            pooled = ("ctrl_flatten", act[1])
        hidden = build.layer(model.ctrl_fc1, "ctrl_fc1", pooled[0], pooled[1], n)
        build.layer(model.ctrl_fc2, "ctrl_fc2", hidden[0], hidden[1], n)
        build.ops.append({"op": "select_bits", "name": "select_bits", "input": "ctrl_fc2",
                          "output": "bits", "candidates": [int(b) for b in config.candidates],
                          "layers": len(model.controlled)})
        outputs.append("bits")
        layer_bits = [{"select": "bits", "index": i} for i in range(len(model.controlled))]
    else:
        layer_bits = [int(b) for b in model.static_layer_bits()]
    index = 0
    for block_index, block in enumerate(model.blocks):
        prefix = f"block{block_index}"
        hidden = build.layer(block.conv1, f"{prefix}.conv1", act[0], act[1], layer_bits[index])
        branch = build.layer(block.conv2, f"{prefix}.conv2", hidden[0], hidden[1],
                             layer_bits[index + 1])
        index += 2
        skip = act
        if block.shortcut is not None:
            skip = build.layer(block.shortcut, f"{prefix}.shortcut", act[0], act[1],
                               layer_bits[index])
            index += 1
        act = build.join(f"{prefix}.join", skip, branch, float(block.join.output_scale().detach()))
    pooled = build.pool("pool", act[0], act[1], model.final_size)
    build.layer(model.fc, "fc", pooled[0], pooled[1], n, output="logits")
    graph = {"format": GRAPH_FORMAT, "version": GRAPH_VERSION, "master_bits": n,
             "inputs": {"image": {"shape": [config.in_channels, config.image_size,
                                            config.image_size]}},
             "outputs": outputs, "ops": build.ops}
    return validate_graph(graph)


# -- the PyTorch integer interpreter --------------------------------------------------------

def _long(value):
    if isinstance(value, torch.Tensor):
        return value.to(torch.int64)
    return torch.as_tensor(np.asarray(value), dtype=torch.int64)


def _channel(value, ndim):
    value = _long(value)
    return value.view((1, -1) + (1,) * (ndim - 2)) if value.dim() == 1 else value


def _round_shift(x, shift):
    half = torch.where(shift > 0, torch.ones_like(shift) << (shift - 1).clamp(min=0),
                       torch.zeros_like(shift))
    return (x + half) >> shift


def _requantize(acc, multiplier, shift, bias, acc_shift, lo, hi):
    scaled = ((acc << acc_shift) + _channel(bias, acc.dim())) * _channel(multiplier, acc.dim())
    return torch.clamp(_round_shift(scaled, _channel(shift, acc.dim())), lo, hi)


def _nest(q, master_bits, bits, signed):
    shift = master_bits - bits
    if shift == 0:
        return q
    rounded = (q >> shift) + ((q >> (shift - 1)) & 1)
    hi = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1
    return torch.clamp(rounded, -hi if signed else 0, hi)


def _exact(fn, *operands):
    """An integer linear op in float64 (exact below 2^53), back to int64."""
    return torch.round(fn(*(o.to(torch.float64) for o in operands))).to(torch.int64)


def _run_layer(op, x, env, master_bits):
    batch = x.shape[0]
    bits = op["bits"]
    per_image = (env[bits["select"]][:, bits["index"]] if isinstance(bits, dict)
                 else torch.full((batch,), bits, dtype=torch.int64))
    weight = _long(op["weight"])
    if op["op"] == "conv2d":
        dot = lambda a, w: F.conv2d(a, w, stride=op["stride"], padding=op["padding"])  # noqa
    else:
        dot = F.linear
    out = None
    for width in torch.unique(per_image).tolist():
        rows = torch.nonzero(per_image == width).flatten()
        acc = _exact(dot, _nest(x[rows], master_bits, width, False),
                     _nest(weight, master_bits, width, True))
        part = _requantize(acc, op["multiplier"], op["shift"], op["bias"],
                           2 * (master_bits - width), op["lo"], op["hi"])
        if out is None:
            out = torch.empty((batch,) + part.shape[1:], dtype=torch.int64)
        out[rows] = part
    return out


def emulate(graph, codes):
    """Run an integer description with PyTorch integer tensors (see the module docstring)."""
    master_bits = graph["master_bits"]
    (name,) = graph["inputs"]
    env = {name: _long(codes)}
    for op in graph["ops"]:
        kind = op["op"]
        if kind == "add":
            a, b = (env[t] for t in op["inputs"])
            total = op["k1"] * a + op["k2"] * b + op["k3"]
            out = torch.clamp(_round_shift(total, torch.tensor(op["shift"])), op["lo"], op["hi"])
        else:
            x = env[op["input"]]
            if kind in ("conv2d", "linear"):
                out = _run_layer(op, x, env, master_bits)
            elif kind in ("global_avg_pool", "avg_pool2d"):
                if kind == "global_avg_pool":
                    total = x.sum(dim=(2, 3))
                else:
                    total = _exact(lambda t: F.avg_pool2d(t, op["kernel"], op["stride"],
                                                          divisor_override=1), x)
                out = _requantize(total, op["multiplier"], op["shift"], 0, 0, op["lo"], op["hi"])
            elif kind == "flatten":
                out = x.reshape(x.shape[0], -1)
            elif kind == "clip":
                out = torch.clamp(x, op["lo"], op["hi"])
            elif kind == "select_bits":
                candidates = torch.as_tensor(op["candidates"], dtype=torch.int64)
                grouped = x.view(x.shape[0], op["layers"], len(candidates))
                out = candidates[grouped.argmax(dim=2)]
            else:
                raise ValueError(f"op {op['name']!r}: unknown op kind {kind!r}")
        env[op["output"]] = out
    return {name: env[name] for name in graph["outputs"]}
