"""Integer emulation (train.integerize) against the golden interpreter, exactly."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dqt_hw.golden import GRAPH_FORMAT, GRAPH_VERSION, quantize_multiplier, run_graph
from train.data import load_dataset, to_master_codes
from train.integerize import LOGIT_FRAC_BITS, emulate, to_graph
from train.model import build_model

SEED = 20261128


def _graph(ops, shape, outputs, master_bits=8):
    return {"format": GRAPH_FORMAT, "version": GRAPH_VERSION, "master_bits": master_bits,
            "inputs": {"image": {"shape": list(shape)}}, "outputs": outputs, "ops": ops}


def _layer(rng, kind, name, source, channels_in, channels_out, bits, *, master_bits=8,
           kernel=3, signed_out=False):
    top = (1 << (master_bits - 1)) - 1
    shape = (channels_out, channels_in, kernel, kernel) if kind == "conv2d" else \
        (channels_out, channels_in)
    multipliers, shifts = zip(*(quantize_multiplier(r) for r in rng.uniform(1e-4, 1e-2,
                                                                            channels_out)))
    op = {"op": kind, "name": name, "input": source, "output": name,
          "weight": rng.integers(-top, top + 1, shape),
          "bias": rng.integers(-5000, 5000, channels_out),
          "multiplier": np.array(multipliers), "shift": np.array(shifts), "bits": bits,
          "lo": -top if signed_out else 0, "hi": top if signed_out else (1 << master_bits) - 1}
    if kind == "conv2d":
        op.update(stride=int(rng.integers(1, 3)), padding=int(rng.integers(0, 2)))
    return op


def _check(graph, codes):
    want = run_graph(graph, codes)
    got = emulate(graph, torch.as_tensor(codes))
    assert set(got) == set(want)
    for name in want:
        assert np.array_equal(got[name].numpy(), want[name]), name


@pytest.mark.parametrize("trial", range(6))
def test_random_static_layers(trial):
    rng = np.random.default_rng(SEED + trial)
    print("seed", SEED + trial)
    master_bits = int(rng.choice([6, 8]))
    bits = int(rng.integers(2, master_bits + 1))
    ops = [_layer(rng, "conv2d", "conv", "image", 3, 5, bits, master_bits=master_bits,
                  kernel=int(rng.integers(1, 4))),
           {"op": "avg_pool2d", "name": "avg", "input": "conv", "output": "avg", "kernel": 2,
            "stride": 1, "multiplier": 1 << 14, "shift": 16, "lo": 0,
            "hi": (1 << master_bits) - 1},
           _layer(rng, "conv2d", "conv_b", "avg", 5, 5, master_bits, master_bits=master_bits,
                  signed_out=True),
           {"op": "clip", "name": "relu", "input": "conv_b", "output": "relu", "lo": 0,
            "hi": 100},
           {"op": "flatten", "name": "flat", "input": "relu", "output": "flat"}]
    codes = rng.integers(0, 1 << master_bits, (7, 3, 9, 9))
    # Size the linear layer from the golden's own flatten output.
    flat = run_graph(_graph(ops, (3, 9, 9), ["flat"], master_bits), codes)["flat"]
    ops.append(_layer(rng, "linear", "fc", "flat", flat.shape[1], 4, bits,
                      master_bits=master_bits))
    _check(_graph(ops, (3, 9, 9), ["fc", "conv", "conv_b"], master_bits), codes)


@pytest.mark.parametrize("trial", range(4))
def test_random_dynamic_layers_and_join(trial):
    rng = np.random.default_rng(SEED + 100 + trial)
    print("seed", SEED + 100 + trial)
    candidates = [2, 4, 8] if trial % 2 else [3, 5, 6, 8]
    select_in = _layer(rng, "linear", "ctrl", "pool", 3, 2 * len(candidates), 8)
    select_in.update(lo=-(1 << 31), hi=(1 << 31) - 1)
    ops = [{"op": "global_avg_pool", "name": "pool", "input": "image", "output": "pool",
            "multiplier": quantize_multiplier(1 / 36)[0],
            "shift": quantize_multiplier(1 / 36)[1], "lo": 0, "hi": 255},
           select_in,
           {"op": "select_bits", "name": "select", "input": "ctrl", "output": "bits",
            "candidates": candidates, "layers": 2},
           _layer(rng, "conv2d", "a", "image", 3, 3, {"select": "bits", "index": 0},
                  signed_out=True),
           _layer(rng, "conv2d", "b", "image", 3, 3, {"select": "bits", "index": 1},
                  signed_out=True)]
    ops[-1].update(stride=ops[-2]["stride"], padding=ops[-2]["padding"])
    ops.append({"op": "add", "name": "join", "inputs": ["a", "b"], "output": "join",
                "k1": int(rng.integers(1, 1 << 15)), "k2": int(rng.integers(1, 1 << 15)),
                "k3": int(rng.integers(-100, 100)), "shift": int(rng.integers(0, 17)),
                "lo": 0, "hi": 255})
    codes = rng.integers(0, 256, (40, 3, 6, 6))
    _check(_graph(ops, (3, 6, 6), ["join", "bits"]), codes)


def _trained(mode, **extra):
    """A tiny digits model after a few training steps (non-trivial BN, PACT and EMA state)."""
    torch.manual_seed(3)
    images, labels = load_dataset("digits", "train")
    model = build_model(dict(image_size=8, stem_stride=1, width=4, mode=mode, **extra))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for step in range(6):
        rows = slice(step * 64, (step + 1) * 64)
        codes = to_master_codes(torch.from_numpy(images[rows]), 8)
        if model.dynamic:                       # move the controller too
            result = model(codes, noise=1.0)
            loss = (result["probs"] * torch.tensor(model.config.candidates)).sum(-1).mean() / 50
        else:
            result, loss = model(codes), 0
        loss = loss + F.cross_entropy(result["logits"], torch.from_numpy(labels[rows]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    test_images, _ = load_dataset("digits", "test")
    return model, to_master_codes(test_images, 8)


@pytest.mark.parametrize("mode, extra", [
    ("static", dict(static_bits=(4, 2, 8, 3, 5, 4, 6, 7))),
    ("static", {}),
    ("dqt", {}),
    ("dqt", dict(candidates=(3, 8, 5))),
    ("dqt", dict(controller_grid=2)),
    ("dqt", dict(controller_grid=3)),          # windows of 8 // 3 = 2: a 4 x 4 map
])
def test_whole_net_emulation_equals_golden(mode, extra):
    model, codes = _trained(mode, **extra)
    graph = to_graph(model)
    want = run_graph(graph, codes)
    got = model.integer_forward(torch.from_numpy(codes))
    assert sorted(got) == sorted(want) == (["bits", "logits"] if mode == "dqt" else ["logits"])
    for name in want:
        assert np.array_equal(got[name].numpy(), want[name]), name
    # The integer model is the fake-quant model up to constant rounding: same predictions
    # almost everywhere and logits within a few hundredths.
    with torch.no_grad():
        fake = model(torch.from_numpy(codes))
    integer_logits = got["logits"].double() / 2 ** LOGIT_FRAC_BITS
    assert (fake["logits"].argmax(1) == got["logits"].argmax(1)).float().mean() > 0.95
    assert (fake["logits"].double() - integer_logits).abs().median() < 0.05
    if mode == "dqt":
        assert set(np.unique(want["bits"])) <= set(model.config.candidates)
        assert want["bits"].shape == (len(codes), len(model.controlled))
        chosen = torch.tensor(model.config.candidates)[fake["choice"].argmax(-1)]
        assert (chosen == got["bits"]).float().mean() > 0.95


@pytest.mark.parametrize("size, grid, side", [(14, 2, 2), (14, 3, 3), (14, 4, 4), (8, 3, 4)])
def test_grid_pool_is_the_golden_avg_pool(size, grid, side):
    from dqt_hw.golden import ops
    from train.model import grid_pool, grid_side, pool_constants
    assert grid_side(size, grid) == side
    codes = torch.randint(0, 256, (3, 5, size, size)).float()
    got, _ = grid_pool((codes, None), grid, master_bits=8)
    window = size // grid
    multiplier, shift = pool_constants(window, window)
    want = ops.avg_pool2d(codes.long().numpy(), kernel=window, stride=window,
                          multiplier=multiplier, shift=shift, lo=0, hi=255)
    assert want.shape[2:] == (side, side)
    assert np.array_equal(got.long().numpy(), want.reshape(3, -1))


def test_grid_controller_graph():
    model, _ = _trained("dqt", controller_grid=2)
    ops = {op["name"]: op for op in to_graph(model)["ops"]}
    assert ops["ctrl_pool"]["op"] == "avg_pool2d" and ops["ctrl_pool"]["kernel"] == 4
    assert ops["ctrl_flatten"]["input"] == "ctrl_pool"
    assert ops["ctrl_fc1"]["input"] == "ctrl_flatten"
    assert ops["ctrl_fc1"]["weight"].shape == (64, 4 * 2 * 2)


def test_graph_layout_and_weights():
    model, _ = _trained("dqt")
    graph = to_graph(model)
    names = [op["name"] for op in graph["ops"]]
    assert names[:5] == ["stem", "ctrl_pool", "ctrl_fc1", "ctrl_fc2", "select_bits"]
    controlled = [op for op in graph["ops"] if isinstance(op.get("bits"), dict)]
    assert [op["name"] for op in controlled] == model.layer_names
    assert [op["bits"]["index"] for op in controlled] == list(range(len(model.controlled)))
    stem = graph["ops"][0]
    assert np.array_equal(stem["weight"], model.stem.weight_codes()[0].detach().numpy())
    for op in graph["ops"]:
        for key, value in op.items():
            if isinstance(value, np.ndarray):
                assert np.issubdtype(value.dtype, np.integer), (op["name"], key)
            elif key not in ("op", "name", "input", "output", "inputs", "bits", "candidates"):
                assert isinstance(value, int), (op["name"], key)


@pytest.mark.parametrize("mode", ["fp32", "lsq", "dqnet"])
def test_float_baselines_do_not_export(mode):
    model = build_model(dict(image_size=8, stem_stride=1, width=4, mode=mode))
    with pytest.raises(ValueError, match=f"mode '{mode}' has no nested integer form"):
        to_graph(model)
