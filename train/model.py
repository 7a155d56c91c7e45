"""A small quantized ResNet family: one code path for every training mode.

Modes (docs/training.md says what each one is and how it differs from DQT):

* ``fp32``   float weights and activations, no quantizer (the accuracy ceiling);
* ``static`` nested integer arithmetic at a fixed bit-width per controlled layer (uniform b or any
  per-layer assignment), exportable to the golden integer graph;
* ``dqt``    nested integer arithmetic with a per-image bit-width per controlled layer chosen by
  a controller MLP (Gumbel-Softmax straight-through in training, argmax at inference),
  exportable;
* ``lsq``    LSQ: learned step sizes, weights and layer inputs rounded straight to b bits
  (static W4A4 in the benchmark), float activations between layers;
* ``dqnet``  DQNet-style dynamic precision: float master weights re-quantized directly to each
  candidate b (no nesting), PACT-clipped layer inputs rounded straight to b bits.

Activation flow in the nested modes (static, dqt): every tensor between layers is an unsigned
(ReLU outputs) or signed (residual branch outputs) n-bit master code held in a float tensor of
integers, plus its scale Delta; a layer at b bits nests its input and weight codes by the
golden rule, accumulates, scales by (Delta_a 2^s)(Delta_w 2^s), applies batch norm (scale
|gamma| > 0 so it folds into a non-negative requantizer multiplier), and quantizes its output:
PACT (learned clip alpha, Delta = alpha / (2^n - 1)) for ReLU outputs, an EMA of max |y| for the
signed residual-branch outputs. Residual joins add two codes, apply ReLU and a PACT quantizer.

Architecture (``ModelConfig``): a 3x3 stem (stride ``stem_stride``), three stages of
``blocks[i]`` basic blocks with widths (w, 2w, 4w) and strides (1, 2, 2), global average pooling
and a linear classifier. The stem and the classifier always run at n bits. The *controlled
layers* are every conv inside the blocks, in the order (for each block) conv1, conv2, shortcut
conv (when the block has one); ``bits`` outputs and per-layer assignments use that order.
The DQT controller is Linear(w g^2, hidden) -> ReLU -> Linear(hidden, L * K) on the stem output
(detached) average-pooled to a g x g grid (``controller_grid``; g = 1: global pooling), logits
laid out as (layer, candidate).
"""

import contextlib
import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from dqt_hw.golden import quantize_multiplier

from .modes import DYNAMIC_MODES, MODES, NESTED_MODES
from .quant import (code_limits, direct_weight_quant, fake_quant, lsq_quant,
                    master_weight_codes, nest_codes)

__all__ = ["MODES", "NESTED_MODES", "DYNAMIC_MODES", "ModelConfig", "QResNet", "QLayer",
           "build_model"]

#: Initial PACT clip of ReLU outputs (batch-normed pre-activations rarely exceed 4).
PACT_INIT = 4.0
#: EMA momentum of the signed quantizers' max |y| tracker.
EMA_MOMENTUM = 0.1


@dataclasses.dataclass
class ModelConfig:
    """Architecture and quantization of a QResNet; JSON-serialisable via dataclasses.asdict."""
    in_channels: int = 1
    image_size: int = 28
    num_classes: int = 10
    width: int = 16
    blocks: tuple = (1, 1, 1)
    stem_stride: int = 2
    mode: str = "static"
    master_bits: int = 8
    candidates: tuple = (2, 4, 8)
    static_bits: tuple = None
    controller_hidden: int = 64
    controller_grid: int = 1

    def __post_init__(self):
        self.blocks = tuple(self.blocks)
        self.candidates = tuple(self.candidates)
        if self.static_bits is not None:
            self.static_bits = tuple(self.static_bits)


def _positive(name, value):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer, not {value!r}")


def _validate(config):
    for name in ("in_channels", "image_size", "num_classes", "width", "stem_stride",
                 "controller_hidden", "controller_grid"):
        _positive(name, getattr(config, name))
    if len(config.blocks) != 3:
        raise ValueError(f"`blocks` must list 3 stages, not {list(config.blocks)!r}")
    for count in config.blocks:
        _positive("blocks", count)
    if config.mode not in MODES:
        raise ValueError(f"`mode` must be one of {', '.join(MODES)}, not {config.mode!r}")
    n = config.master_bits
    if not isinstance(n, int) or not 2 <= n <= 16:
        raise ValueError(f"`master_bits` must be an integer between 2 and 16, not {n!r}")
    if config.mode in DYNAMIC_MODES:
        if not config.candidates:
            raise ValueError("`candidates` must not be empty: give bit-widths such as 2,4,8")
        if len(set(config.candidates)) != len(config.candidates):
            raise ValueError(f"`candidates` must not repeat a bit-width, "
                             f"not {list(config.candidates)}")
        for bits in config.candidates:
            check_layer_bits(bits, n, "candidate")


def check_layer_bits(bits, n, kind):
    """A layer bit-width must be an integer in [2, n]; `kind` names where it came from."""
    if not isinstance(bits, int) or not 2 <= bits <= n:
        raise ValueError(f"{kind} bit-width {bits!r} is outside [2, {n}] (`master_bits` is {n})")


def _out_size(size, kernel, stride, padding):
    return (size + 2 * padding - kernel) // stride + 1


class _Tracked(nn.Module):
    """A module whose running statistics update only while `track_stats` is on.

    `bn_mode` changes what batch norm does (QLayer):

    * None: the usual (batch statistics in training, running statistics in eval);
    * "calibrate" (eval mode): normalize with the batch's statistics and store them as the
      running statistics (BN recalibration at one bit-width);
    * "record" (training): as usual, and keep the batch's statistics in `recorded`;
    * "replay": normalize with the `recorded` statistics, so a second pass over (part of) the
      same batch treats every image as the recorded pass did, independently of the others.
    """
    track_stats = True
    bn_mode = None
    recorded = None


class QLayer(_Tracked):
    """A conv2d or linear layer with optional batch norm and an output quantizer.

    ``out`` is "relu" (unsigned codes, PACT), "signed" (signed codes, EMA scale) or "logits"
    (float output; the integer graph gives it the fixed scale 2^-LOGIT_FRAC_BITS).
    ``quantize_input=False`` (the stem) takes the input as it comes in the float modes: the
    model's input is already the exact n-bit image, so an input quantizer there would be the
    identity with a dead clip parameter (DQNet) or a lossy re-grid of it (LSQ).
    """

    def __init__(self, kind, in_features, out_features, *, kernel=1, stride=1, padding=0,
                 norm, out, mode, master_bits, quantize_input=True):
        super().__init__()
        self.kind, self.kernel, self.stride, self.padding = kind, kernel, stride, padding
        self.out, self.mode, self.master_bits = out, mode, master_bits
        self.quantize_input = quantize_input
        shape = ((out_features, in_features, kernel, kernel) if kind == "conv2d"
                 else (out_features, in_features))
        self.weight = nn.Parameter(torch.empty(shape))
        nn.init.kaiming_normal_(self.weight, nonlinearity="relu")
        self.norm = nn.BatchNorm2d(out_features) if norm else None
        self.bias = None if norm else nn.Parameter(torch.zeros(out_features))
        if mode in NESTED_MODES and out == "relu":
            self.alpha = nn.Parameter(torch.tensor(PACT_INIT))
        if mode in NESTED_MODES and out == "signed":
            self.register_buffer("absmax", torch.tensor(0.0))
        if mode == "lsq":
            self.weight_step = nn.Parameter(torch.tensor(1.0))
            if quantize_input:
                self.input_step = nn.Parameter(torch.tensor(1.0))
        if mode == "dqnet" and quantize_input:
            self.input_alpha = nn.Parameter(torch.tensor(1.0))
        if mode in ("lsq", "dqnet"):
            self.register_buffer("initialised", torch.tensor(False))
        self.macs = 0                       # multiply-accumulates per image, set by the model
        self.width_stats = None             # {b: (mean, var)}: QResNet.per_width_bn

    # -- helpers ---------------------------------------------------------------------------
    def _op(self, x, w):
        if self.kind == "conv2d":
            return F.conv2d(x, w, stride=self.stride, padding=self.padding)
        return F.linear(x, w)

    def _channel(self, vector):
        return vector.view((1, -1) + (1,) * (2 if self.kind == "conv2d" else 0))

    def weight_codes(self):
        """(master codes as integer-valued float tensor, per-channel scale) of the weight."""
        return master_weight_codes(self.weight, self.master_bits)

    def output_scale(self):
        """Delta of the output codes (nested modes, out "relu" or "signed")."""
        n = self.master_bits
        if self.out == "relu":
            return torch.clamp(self.alpha, min=1e-3) / ((1 << n) - 1)
        return torch.clamp(self.absmax, min=1e-6) / ((1 << (n - 1)) - 1)

    def _init_float_quantizers(self, x, bits):
        # LSQ's initialisation 2 mean|v| / sqrt(Qp); DQNet's input clip at the first batch max.
        if self.training and not bool(self.initialised):
            with torch.no_grad():
                if self.mode == "lsq":
                    self.weight_step.fill_(2 * self.weight.abs().mean().item()
                                           / math.sqrt((1 << (bits - 1)) - 1))
                    if self.quantize_input:
                        self.input_step.fill_(max(2 * x.abs().mean().item()
                                                  / math.sqrt((1 << bits) - 1), 1e-4))
                elif self.quantize_input:
                    self.input_alpha.fill_(max(x.max().item(), 1e-3))
                self.initialised.fill_(True)

    # -- forward ---------------------------------------------------------------------------
    def forward(self, x, scale, bits):
        """Pre-quantization output y (after BN) of input `x` (codes with `scale`, or floats).

        ``bits`` is an int (every image at that width) or (candidates, index): image i runs at
        candidates[index[i]].
        """
        n = self.master_bits
        if self.mode in NESTED_MODES:
            w_codes, w_scale = self.weight_codes()

            def at(b, x):
                shift = n - b
                acc = self._op(nest_codes(x, n, b, signed=False),
                               nest_codes(w_codes, n, b, signed=True))
                return acc * self._channel(scale * w_scale * 4.0 ** shift)
        elif self.mode == "lsq":
            first = bits if isinstance(bits, int) else max(bits[0])
            self._init_float_quantizers(x, first)

            def at(b, x):
                x_b = (lsq_quant(x, self.input_step, b, signed=False) if self.quantize_input
                       else x)
                return self._op(x_b, lsq_quant(self.weight, self.weight_step, b, signed=True))
        elif self.mode == "dqnet":
            self._init_float_quantizers(x, n)

            def at(b, x):
                x_b = x
                if self.quantize_input:
                    step = torch.clamp(self.input_alpha, min=1e-3) / ((1 << b) - 1)
                    x_b = fake_quant(x, step, 0, (1 << b) - 1) * step
                return self._op(x_b, direct_weight_quant(self.weight, b))
        else:
            def at(b, x):
                return self._op(x, self.weight)

        if self.width_stats is not None and not isinstance(bits, int):
            return self._per_width_batch_norm(at, x, *bits)
        y = at(bits, x) if isinstance(bits, int) else self._per_image(at, x, *bits)
        if self.bias is not None:
            y = y + self._channel(self.bias)
        return y if self.norm is None else self._batch_norm(y)

    def _batch_norm(self, y):
        norm, mode = self.norm, self.bn_mode
        gain = norm.weight.abs()
        if mode == "replay":
            mean, var = self.recorded
            return F.batch_norm(y, mean, var, gain, norm.bias, training=False, eps=norm.eps)
        if mode == "record" and self.training:
            # Batch norm writes the batch's mean and unbiased variance into fresh buffers
            # (momentum 1), which then update the running statistics as it would have.
            mean, var = torch.zeros_like(norm.running_mean), torch.ones_like(norm.running_var)
            y = F.batch_norm(y, mean, var, gain, norm.bias, training=True, momentum=1.0,
                             eps=norm.eps)
            count = y.numel() // y.shape[1]
            self.recorded = (mean, var * ((count - 1) / count))
            if self.track_stats:
                with torch.no_grad():
                    norm.running_mean.lerp_(mean, norm.momentum)
                    norm.running_var.lerp_(var, norm.momentum)
            return y
        batch = self.training or mode == "calibrate"
        track = (self.training and self.track_stats) or mode == "calibrate" or not batch
        return F.batch_norm(y, norm.running_mean if track else None,
                            norm.running_var if track else None, gain, norm.bias,
                            training=batch,
                            momentum=1.0 if mode == "calibrate" else norm.momentum,
                            eps=norm.eps)

    def _per_width_batch_norm(self, at, x, candidates, index):
        """Batch norm (evaluation) with the statistics of each image's own width; an empty
        `width_stats` first takes them from every image of `x` at every candidate."""
        norm, out = self.norm, None
        collect = not self.width_stats
        for k, b in enumerate(candidates):
            rows = torch.nonzero(index == k).flatten()
            if collect:
                y = at(b, x)
                dims = [0] + list(range(2, y.dim()))
                self.width_stats[b] = (y.mean(dims), y.var(dims))   # unbiased, as calibrate
                y = y[rows]
            elif len(rows):
                y = at(b, x[rows])
            else:
                continue
            mean, var = self.width_stats[b]
            part = F.batch_norm(y, mean, var, norm.weight.abs(), norm.bias, training=False,
                                eps=norm.eps)
            out = part.new_empty((len(x),) + part.shape[1:]) if out is None else out
            out[rows] = part
        return out

    @staticmethod
    def _per_image(at, x, candidates, index):
        """Each image's output at its own candidate width candidates[index[i]]: the images of
        one width run together, so the pass costs one width's convolutions."""
        groups = [torch.nonzero(index == k).flatten() for k in range(len(candidates))]
        groups = [(b, rows) for b, rows in zip(candidates, groups) if len(rows)]
        if len(groups) == 1:
            return at(groups[0][0], x)
        parts = [at(b, x[rows]) for b, rows in groups]
        order = torch.argsort(torch.cat([rows for _, rows in groups]))
        return torch.cat(parts)[order]

    def quantize_output(self, y):
        """(codes, Delta) in the nested modes, (float activation, None) otherwise."""
        if self.out == "logits":
            return y, None
        if self.mode not in NESTED_MODES:
            return (F.relu(y) if self.out == "relu" else y), None
        n = self.master_bits
        if self.out == "signed" and self.training and self.track_stats:
            with torch.no_grad():
                peak = y.abs().max()
                if float(self.absmax) == 0.0:
                    self.absmax.copy_(peak)
                else:
                    self.absmax.mul_(1 - EMA_MOMENTUM).add_(EMA_MOMENTUM * peak)
        scale = self.output_scale()
        lo, hi = code_limits(n, signed=True) if self.out == "signed" else code_limits(n, False)
        return fake_quant(y, scale, lo, hi), scale

    def run(self, act, bits):
        return self.quantize_output(self(act[0], act[1], bits))


class Join(nn.Module):
    """Residual join: ReLU(a + b), PACT-quantized to unsigned master codes in nested modes."""

    def __init__(self, mode, master_bits):
        super().__init__()
        self.mode, self.master_bits = mode, master_bits
        if mode in NESTED_MODES:
            self.alpha = nn.Parameter(torch.tensor(PACT_INIT))

    def output_scale(self):
        return torch.clamp(self.alpha, min=1e-3) / ((1 << self.master_bits) - 1)

    def forward(self, a, b):
        if self.mode not in NESTED_MODES:
            return F.relu(a[0] + b[0]), None
        total = a[0] * a[1] + b[0] * b[1]
        scale = self.output_scale()
        return fake_quant(total, scale, 0, (1 << self.master_bits) - 1), scale


def pool_constants(height, width):
    """(M, r) of global average pooling over height x width: M / 2^r ~ 1 / (H W)."""
    return quantize_multiplier(1.0 / (height * width))


def global_pool(act, master_bits=None):
    """Global average pooling. Nested (master_bits given): the golden
    clip(round_shift(sum * M, r), 0, 2^n - 1) exactly (sums * M < 2^53, so float64 is exact),
    with the gradient of the mean."""
    x, scale = act
    nested = master_bits is not None
    mean = x.mean(dim=(2, 3))
    if not nested:
        return mean, None
    multiplier, shift = pool_constants(x.shape[2], x.shape[3])
    total = x.detach().to(torch.float64).sum(dim=(2, 3))
    exact = torch.floor(total * multiplier / 2.0 ** shift + 0.5)
    exact = torch.clamp(exact, 0, (1 << master_bits) - 1).to(mean.dtype)
    return mean + (exact - mean).detach(), scale


def grid_side(size, grid):
    """Side of the controller's pooled map: windows of floor(size / grid), stride = window."""
    return size // (size // grid)


def grid_pool(act, grid, master_bits=None):
    """The controller's features: average pooling with window = stride = floor(size / grid),
    flattened (C, H, W) row-major. The map has grid_side(size, grid) windows a side (grid when
    size is a multiple of grid; rows and columns past the last whole window are left out).
    grid = 1 is global average pooling. Nested: the golden avg_pool2d (window sum * M,
    rounded shift, clip) exactly, like global_pool."""
    if grid == 1:
        return global_pool(act, master_bits)
    x, scale = act
    window = x.shape[2] // grid
    mean = F.avg_pool2d(x, window, window)
    if master_bits is not None:
        multiplier, shift = pool_constants(window, window)
        total = F.avg_pool2d(x.detach().to(torch.float64), window, window,
                             divisor_override=1)
        exact = torch.floor(total * multiplier / 2.0 ** shift + 0.5)
        exact = torch.clamp(exact, 0, (1 << master_bits) - 1).to(mean.dtype)
        mean = mean + (exact - mean).detach()
    return mean.flatten(1), scale


class Block(nn.Module):
    """Basic residual block: conv1 (ReLU) -> conv2 (signed), shortcut, join."""

    def __init__(self, cin, cout, stride, mode, master_bits):
        super().__init__()
        common = dict(mode=mode, master_bits=master_bits, norm=True)
        self.conv1 = QLayer("conv2d", cin, cout, kernel=3, stride=stride, padding=1,
                            out="relu", **common)
        self.conv2 = QLayer("conv2d", cout, cout, kernel=3, stride=1, padding=1,
                            out="signed", **common)
        self.shortcut = (QLayer("conv2d", cin, cout, kernel=1, stride=stride, padding=0,
                                out="signed", **common)
                         if stride != 1 or cin != cout else None)
        self.join = Join(mode, master_bits)

    def layers(self):
        return [self.conv1, self.conv2] + ([self.shortcut] if self.shortcut is not None else [])

    def forward(self, act, bits):
        """`bits`: one spec per layer of `layers()`."""
        hidden = self.conv1.run(act, bits[0])
        branch = self.conv2.run(hidden, bits[1])
        skip = self.shortcut.run(act, bits[2]) if self.shortcut is not None else act
        return self.join(skip, branch)


class QResNet(nn.Module):
    """The model; see the module docstring. ``forward(codes)`` takes n-bit master codes."""

    def __init__(self, config):
        super().__init__()
        _validate(config)
        self.config = config
        mode, n, w = config.mode, config.master_bits, config.width
        self.mode, self.master_bits = mode, n
        self.nested = mode in NESTED_MODES
        self.dynamic = mode in DYNAMIC_MODES
        self.stem = QLayer("conv2d", config.in_channels, w, kernel=3, stride=config.stem_stride,
                           padding=1, norm=True, out="relu", mode=mode, master_bits=n,
                           quantize_input=False)
        blocks, cin = [], w
        for stage, (count, stride) in enumerate(zip(config.blocks, (1, 2, 2))):
            cout = w << stage
            for index in range(count):
                blocks.append(Block(cin, cout, stride if index == 0 else 1, mode, n))
                cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.fc = QLayer("linear", cin, config.num_classes, norm=False, out="logits",
                         mode=mode, master_bits=n)
        self.controlled = [layer for block in self.blocks for layer in block.layers()]
        self.layer_names = [name for block_index, block in enumerate(self.blocks)
                            for name in (f"block{block_index}.conv1", f"block{block_index}.conv2",
                                         f"block{block_index}.shortcut")[:len(block.layers())]]
        if self.dynamic:
            count = len(self.controlled) * len(config.candidates)
            stem_size = _out_size(config.image_size, 3, config.stem_stride, 1)
            if config.controller_grid > stem_size:
                raise ValueError(f"`controller_grid` {config.controller_grid} is larger than "
                                 f"the stem output ({stem_size} x {stem_size})")
            features = w * grid_side(stem_size, config.controller_grid) ** 2
            self.ctrl_fc1 = QLayer("linear", features, config.controller_hidden, norm=False,
                                   out="relu", mode=mode, master_bits=n)
            self.ctrl_fc2 = QLayer("linear", config.controller_hidden, count, norm=False,
                                   out="logits", mode=mode, master_bits=n)
            nn.init.normal_(self.ctrl_fc2.weight, std=1e-3)   # start near a uniform choice
        if config.static_bits is not None:
            if len(config.static_bits) != len(self.controlled):
                raise ValueError(f"`static_bits` must give one bit-width per controlled layer "
                                 f"({len(self.controlled)}), not {len(config.static_bits)}")
            for bits in config.static_bits:
                check_layer_bits(bits, n, "static")
        self._count_macs()

    # -- bookkeeping -----------------------------------------------------------------------
    def _count_macs(self):
        size = _out_size(self.config.image_size, 3, self.config.stem_stride, 1)
        self.stem.macs = size * size * self.stem.weight[0].numel() * self.stem.weight.shape[0]
        for block in self.blocks:
            stride = block.conv1.stride
            out = _out_size(size, 3, stride, 1)
            for layer in block.layers():
                layer.macs = out * out * layer.weight[0].numel() * layer.weight.shape[0]
            size = out
        self.final_size = size
        self.fc.macs = self.fc.weight.numel()
        if self.dynamic:
            self.ctrl_fc1.macs = self.ctrl_fc1.weight.numel()
            self.ctrl_fc2.macs = self.ctrl_fc2.weight.numel()

    def fixed_layers(self):
        """Layers always at n bits: stem, classifier and (dynamic modes) the controller."""
        extra = [self.ctrl_fc1, self.ctrl_fc2] if self.dynamic else []
        return [self.stem, self.fc] + extra

    def static_layer_bits(self):
        """Per controlled layer bit-width of a static-precision model."""
        if self.config.static_bits is not None:
            return list(self.config.static_bits)
        return [self.master_bits] * len(self.controlled)

    @contextlib.contextmanager
    def frozen_stats(self):
        """Run forward passes that use batch statistics without updating running ones (nested
        uses leave the outer one in force)."""
        modules = [m for m in self.modules() if isinstance(m, _Tracked)]
        before = [module.track_stats for module in modules]
        for module in modules:
            module.track_stats = False
        try:
            yield
        finally:
            for module, value in zip(modules, before):
                module.track_stats = value

    # -- forward ---------------------------------------------------------------------------
    def _pool_bits(self):
        return self.master_bits if self.nested else None

    def input_activation(self, codes):
        """The stem's input: master codes with scale 1 / (2^n - 1), or the real values."""
        top = (1 << self.master_bits) - 1
        codes = codes.to(torch.float32)
        if self.nested:
            return codes, torch.tensor(1.0 / top)
        return codes / top, None

    def controller_features(self, stem_act):
        """The controller's input: the stem output, detached (the controller reads the
        features but does not shape them), pooled to the controller grid."""
        features = (stem_act[0].detach(),
                    None if stem_act[1] is None else stem_act[1].detach())
        return grid_pool(features, self.config.controller_grid, self._pool_bits())

    def controller(self, stem_act):
        """Controller logits (N, L, K) from the stem output (`controller_features`)."""
        hidden = self.ctrl_fc1.run(self.controller_features(stem_act), self.master_bits)
        logits, _ = self.ctrl_fc2.run(hidden, self.master_bits)
        return logits.view(logits.shape[0], len(self.controlled), len(self.config.candidates))

    def forward(self, codes, bits=None, *, noise=0.0, offset=None, record=False):
        """Logits of master-code images (N, C, H, W).

        ``bits``: None (the model's own precision: static assignment or controller choice), an
        int (every controlled layer at that width) or a list (one width per controlled layer).
        The controller picks argmax_k(logits + offset + noise * g) per image and layer, g
        standard Gumbel noise, `offset` (L, K) or None (noise = 0 and no offset: the argmax
        inference takes). ``record`` (training) keeps what `counterfactual` needs: every
        block's input and every batch norm's batch statistics.
        Returns {"logits", "bits": int64 (N, L) bit-width per image and controlled layer (32
        for fp32), "controller_logits" (N, L, K), "probs": their softmax, "choice": the
        one-hot choice (N, L, K)}; the last three are None for a fixed precision.
        """
        n = self.master_bits
        act = self.stem.run(self.input_activation(codes), n)
        controller_logits = probs = choice = None
        if bits is None and self.dynamic:
            controller_logits = self.controller(act)
            probs = F.softmax(controller_logits, dim=-1)
            perturbed = controller_logits.detach()
            if offset is not None:
                perturbed = perturbed + offset
            if noise > 0:
                uniform = torch.rand_like(perturbed).clamp_(1e-10, 1.0)
                perturbed = perturbed + noise * -torch.log(-torch.log(uniform))
            index = perturbed.argmax(dim=-1)
            choice = F.one_hot(index, perturbed.shape[-1]).to(perturbed.dtype)
            specs = [(self.config.candidates, index[:, i]) for i in range(len(self.controlled))]
            layer_bits = torch.tensor(self.config.candidates)[index]
        else:
            if bits is None:
                specs = self.static_layer_bits()
            elif isinstance(bits, int):
                specs = [bits] * len(self.controlled)
            else:
                specs = list(bits)
            layer_bits = torch.tensor([32 if self.mode == "fp32" else b for b in specs])
            layer_bits = layer_bits.expand(len(codes), -1)
        with self._bn_mode("record") if record else contextlib.nullcontext():
            logits = self._backbone(act, specs, 0, record)
        return {"logits": logits, "bits": layer_bits, "controller_logits": controller_logits,
                "probs": probs, "choice": choice}

    def _backbone(self, act, specs, first_block, record=False):
        """Blocks from `first_block` on, pooling and classifier; `specs` for every layer."""
        if record:
            self.recorded = {"inputs": [], "specs": specs}
        position = sum(len(block.layers()) for block in self.blocks[:first_block])
        for block in self.blocks[first_block:]:
            if record:
                self.recorded["inputs"].append(
                    (act[0].detach(), act[1].detach() if act[1] is not None else None))
            count = len(block.layers())
            act = block(act, specs[position:position + count])
            position += count
        pooled = global_pool(act, self._pool_bits())
        return self.fc.run(pooled, self.master_bits)[0]

    @torch.no_grad()
    def counterfactual(self, layer, bits, rows):
        """Logits of images `rows` (indices into the last recorded batch, repeats allowed) had
        controlled layer `layer` run at `bits` (an int, or candidate indices (len(rows),) for
        a dynamic model) and every other layer as recorded; batch norm replays the recorded
        batch's statistics, so each row's result is the one its image alone would get. Runs
        from the block holding the layer."""
        first, position = 0, 0
        while position + len(self.blocks[first].layers()) <= layer:
            position += len(self.blocks[first].layers())
            first += 1
        specs = [spec if isinstance(spec, int) else (spec[0], spec[1][rows])
                 for spec in self.recorded["specs"]]
        specs[layer] = bits if isinstance(bits, int) else (self.config.candidates, bits)
        codes, scale = self.recorded["inputs"][first]
        with self._bn_mode("replay"), self.frozen_stats():
            return self._backbone((codes[rows], scale), specs, first)

    @contextlib.contextmanager
    def _bn_mode(self, mode):
        layers = [m for m in self.modules() if isinstance(m, _Tracked)]
        for layer in layers:
            layer.bn_mode = mode
        try:
            yield
        finally:
            for layer in layers:
                layer.bn_mode = None

    def front(self):
        """The stem and (dynamic modes) the controller: what decides the bit choices."""
        return [self.stem] + ([self.ctrl_fc1, self.ctrl_fc2] if self.dynamic else [])

    def freeze_front(self):
        """Stop training the stem and controller: no gradients, and the stem's batch norm
        uses its running statistics in training too, so training-time choices are the ones
        inference makes. Not saved in checkpoints (inference never trains)."""
        self.front_frozen = True
        for module in self.front():
            for parameter in module.parameters():
                parameter.requires_grad_(False)
        self.train(self.training)

    def train(self, mode=True):
        super().train(mode)
        if getattr(self, "front_frozen", False):
            for module in self.front():
                module.eval()
        return self

    @contextlib.contextmanager
    def per_width_bn(self, codes):
        """Evaluation in which every controlled layer's batch norm has one set of statistics
        per candidate width: those of `codes` with that layer at that width (every image) and
        the layers before it as the controller chooses; each image is normalized with its own
        width's. The trained statistics stay untouched."""
        if not self.dynamic:
            raise ValueError("per-width batch norm needs a dynamic model")
        layers = [layer for layer in self.controlled if layer.norm is not None]
        for layer in layers:
            layer.width_stats = {}
        try:
            self.eval()
            with torch.no_grad():
                self(codes)
            yield
        finally:
            for layer in layers:
                layer.width_stats = None

    def calibrating_bn(self):
        """In eval mode: every batch norm takes the statistics of the next batch as its running
        statistics; for BN recalibration at one bit-width."""
        return self._bn_mode("calibrate")

    def integer_forward(self, codes):
        """Integer emulation: {"logits": int64 (N, classes)[, "bits": int64 (N, L)]}.

        Runs `train.integerize.to_graph(self)` with the PyTorch integer interpreter; equals
        `dqt_hw.golden.run_graph(to_graph(self), codes)` exactly.
        """
        from .integerize import emulate, to_graph
        return emulate(to_graph(self), codes)


def build_model(config):
    """A QResNet from a ModelConfig or a dict of its fields."""
    if isinstance(config, dict):
        known = {f.name for f in dataclasses.fields(ModelConfig)}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(f"unknown model config field(s) {', '.join(unknown)}")
        config = ModelConfig(**config)
    return QResNet(config)
