"""Fake-quantizers of train/: golden-exact forward values and gradient flow through each one."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dqt_hw.golden import nest
from train.model import MODES, build_model
from train.quant import (direct_weight_quant, fake_quant, lsq_quant, master_weight_codes,
                         nest_codes, round_half_up)


def test_round_half_up_is_not_torch_round():
    x = torch.tensor([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.49, -0.51])
    assert round_half_up(x).tolist() == [-2, -1, 0, 1, 2, 3, 0, -1]
    assert torch.round(x).tolist() != round_half_up(x).tolist()


@pytest.mark.parametrize("master_bits", [4, 8])
@pytest.mark.parametrize("signed", [False, True])
def test_nest_codes_equals_golden_on_every_code(master_bits, signed):
    hi = (1 << (master_bits - 1)) - 1 if signed else (1 << master_bits) - 1
    codes = np.arange(-hi if signed else 0, hi + 1)
    for bits in range(2, master_bits + 1):
        ours = nest_codes(torch.tensor(codes, dtype=torch.float32), master_bits, bits, signed)
        want = nest(codes, master_bits=master_bits, bits=bits, signed=signed)
        assert np.array_equal(ours.numpy().astype(np.int64), want), bits


def test_fake_quant_codes_and_clip():
    codes = fake_quant(torch.tensor([-1.0, 0.26, 0.74, 100.0]), torch.tensor(0.5), 0, 15)
    assert codes.tolist() == [0, 1, 1, 15]


def test_fused_quantizers_equal_the_composed_ste():
    # The autograd functions must give the values and gradients of the plain composition.
    torch.manual_seed(3)
    x = torch.randn(6, 5, 3, 3) * 4
    scale = torch.rand(1, 5, 1, 1) + 0.1
    upstream = torch.randn(6, 5, 3, 3)

    def composed(v, s):
        return round_half_up(torch.clamp(v / s, -7, 7))
    for fn in (composed, lambda v, s: fake_quant(v, s, -7, 7)):
        leaves = [x.clone().requires_grad_(True), scale.clone().requires_grad_(True)]
        out = fn(*leaves)
        (out * upstream).sum().backward()
        if fn is composed:
            want = (out.detach(), leaves[0].grad, leaves[1].grad)
        else:
            assert torch.equal(out.detach(), want[0])
            assert torch.allclose(leaves[0].grad, want[1])
            assert torch.allclose(leaves[1].grad, want[2], rtol=1e-4)
    q = torch.arange(-127.0, 128.0).requires_grad_(True)
    nested = nest_codes(q, 8, 3, signed=True)
    (nested * torch.arange(255.0)).sum().backward()
    scaled = q.detach() / 32
    assert torch.equal(nested.detach(), torch.clamp(torch.floor(scaled + 0.5), -3, 3))
    assert torch.equal(q.grad, torch.arange(255.0) / 32)


def test_master_weight_codes_are_signed_narrow_range():
    weight = torch.randn(6, 3, 3, 3)
    codes, scale = master_weight_codes(weight, 8)
    assert codes.abs().amax(dim=(1, 2, 3)).tolist() == [127] * 6
    assert torch.equal(codes, torch.floor(weight / scale.view(-1, 1, 1, 1) + 0.5))
    assert torch.allclose(codes * scale.view(-1, 1, 1, 1), weight, atol=float(scale.max()))


def _grad(fn, *leaves):
    leaves = [leaf.clone().requires_grad_(True) for leaf in leaves]
    fn(*leaves).sum().backward()
    return [leaf.grad for leaf in leaves]


def test_gradient_through_each_quantizer():
    torch.manual_seed(0)
    x = torch.rand(64) * 3
    (gx, gs) = _grad(lambda v, s: fake_quant(v, s, 0, 15) * s, x, torch.tensor(0.1))
    assert torch.equal(gx, (x / 0.1 <= 15).float())            # STE inside, zero past the clip
    assert gs != 0                                               # PACT/LSQ gradient of the scale
    q = torch.arange(0.0, 256.0)
    (gq,) = _grad(lambda v: nest_codes(v, 8, 3, False), q)
    assert torch.all(gq == 2.0 ** -5)
    (gw,) = _grad(lambda w: master_weight_codes(w, 8)[0], torch.randn(4, 5))
    assert torch.all(gw > 0)
    gv, gstep = _grad(lambda v, s: lsq_quant(v, s, 4, False), x, torch.tensor(0.2))
    assert gv.abs().sum() > 0 and gstep != 0
    (gw,) = _grad(lambda w: direct_weight_quant(w, 3), torch.randn(4, 5))
    assert torch.all(gw == 1)


@pytest.mark.parametrize("mode", MODES)
def test_every_parameter_gets_a_gradient(mode):
    torch.manual_seed(1)
    model = build_model(dict(image_size=8, stem_stride=1, width=4, mode=mode,
                             blocks=(1, 1, 1), candidates=(2, 4, 8) if mode == "dqt"
                             else (3, 4, 5),
                             static_bits=(4, 3, 2, 5, 4, 6, 8, 2) if mode in ("static", "lsq")
                             else None))
    model.train()
    codes = torch.randint(0, 256, (16, 1, 8, 8))
    target = torch.randint(0, 10, (16,))
    result = model(codes, noise=1.0) if model.dynamic else model(codes)
    loss = F.cross_entropy(result["logits"], target)
    if model.dynamic:                           # the controller learns from its own loss
        loss = loss + result["probs"][..., 0].mean()
    if mode == "dqt":
        with model.frozen_stats():
            loss = loss + F.cross_entropy(model(codes, bits=2)["logits"], target)
    loss.backward()
    missing = [name for name, p in model.named_parameters()
               if p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0]
    assert missing == []


@pytest.mark.parametrize("mode", ["lsq", "dqnet"])
def test_stem_takes_the_image_without_an_input_quantizer(mode):
    torch.manual_seed(2)
    model = build_model(dict(image_size=8, stem_stride=1, width=4, mode=mode))
    model.train()
    codes = torch.randint(0, 256, (4, 1, 8, 8))
    model(codes)
    stem = model.stem
    assert not hasattr(stem, "input_step") and not hasattr(stem, "input_alpha")
    assert hasattr(model.fc, "input_step" if mode == "lsq" else "input_alpha")
    image = codes.float() / 255
    weight = (lsq_quant(stem.weight, stem.weight_step, 8, signed=True) if mode == "lsq"
              else direct_weight_quant(stem.weight, 8))
    stem.norm = None                                       # compare the conv itself
    assert torch.equal(stem(image, None, 8), F.conv2d(image, weight, padding=1))


def test_frozen_stats_keeps_running_statistics():
    model = build_model(dict(image_size=8, stem_stride=1, width=4, mode="dqt"))
    model.train()
    codes = torch.randint(0, 256, (8, 1, 8, 8))
    model(codes)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with model.frozen_stats():
        model(codes, bits=2)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
