"""docs/arithmetic.md §8: the integer network description and its interpreter."""

import copy

import numpy as np
import pytest

from dqt_hw.golden import (GraphError, add, avg_pool2d, global_avg_pool, nested_conv2d,
                           nested_linear, run_graph, validate_graph)
from dqt_hw.golden.graph import _select_bits


def _layer(rng, op, name, src, dst, shape, bits, lo=0, hi=255, **extra):
    channels = shape[0]
    return dict(op=op, name=name, input=src, output=dst, bits=bits, lo=lo, hi=hi,
                weight=rng.integers(-127, 128, shape),
                bias=rng.integers(-2000, 2000, channels),
                multiplier=rng.integers(1 << 14, 1 << 15, channels),
                shift=rng.integers(21, 24, channels), **extra)


def small_dynamic_net(seed=34):
    """A stem, a controller choosing the bits of two convs, a residual join and a classifier."""
    rng = np.random.default_rng(seed)
    ops = [
        _layer(rng, "conv2d", "stem", "image", "t0", (4, 1, 3, 3), 8, stride=1, padding=1),
        dict(op="global_avg_pool", name="ctrl_pool", input="t0", output="c0",
             multiplier=1 << 14, shift=18, lo=0, hi=255),
        _layer(rng, "linear", "ctrl_fc1", "c0", "c1", (8, 4), 8),
        _layer(rng, "linear", "ctrl_fc2", "c1", "c2", (6, 8), 8, lo=-32767, hi=32767),
        dict(op="select_bits", name="ctrl", input="c2", output="bits", candidates=[2, 4, 8],
             layers=2),
        _layer(rng, "conv2d", "block1", "t0", "t1", (4, 4, 3, 3), {"select": "bits", "index": 0},
               stride=1, padding=1),
        _layer(rng, "conv2d", "block2", "t1", "t2", (4, 4, 3, 3), {"select": "bits", "index": 1},
               lo=-127, hi=127, stride=1, padding=1),
        dict(op="add", name="join", inputs=["t2", "t0"], output="t3", k1=3 << 13, k2=1 << 14,
             k3=0, shift=14, lo=0, hi=255),
        dict(op="avg_pool2d", name="pool", input="t3", output="t4", kernel=2, stride=2,
             multiplier=1 << 14, shift=16, lo=0, hi=255),
        dict(op="flatten", name="flat", input="t4", output="t5"),
        dict(op="clip", name="cap", input="t5", output="t6", lo=0, hi=200),
        _layer(rng, "linear", "fc", "t6", "logits", (3, 16), 8, lo=-32767, hi=32767),
    ]
    return {"format": "dqt-hw-graph", "version": 1, "master_bits": 8,
            "inputs": {"image": {"shape": [1, 4, 4]}}, "outputs": ["logits", "bits"],
            "ops": ops}


def _by_hand(graph, image):
    """The same network, op by op, with the golden operators and per-image bits."""
    op = {o["name"]: o for o in graph["ops"]}

    def layer(name, x, bits):
        o = op[name]
        fn = nested_conv2d if o["op"] == "conv2d" else nested_linear
        extra = dict(stride=o["stride"], padding=o["padding"]) if o["op"] == "conv2d" else {}
        return fn(x, o["weight"], bias=o["bias"], multiplier=o["multiplier"], shift=o["shift"],
                  bits=bits, master_bits=8, lo=o["lo"], hi=o["hi"], **extra)

    t0 = layer("stem", image, 8)
    c0 = global_avg_pool(t0, multiplier=1 << 14, shift=18, lo=0, hi=255)
    c2 = layer("ctrl_fc2", layer("ctrl_fc1", c0, 8), 8)
    bits = np.array([2, 4, 8])[c2.reshape(-1, 2, 3).argmax(axis=2)]
    logits = []
    for i in range(image.shape[0]):
        t1 = layer("block1", t0[i:i + 1], int(bits[i, 0]))
        t2 = layer("block2", t1, int(bits[i, 1]))
        t3 = add(t2, t0[i:i + 1], k1=3 << 13, k2=1 << 14, shift=14, lo=0, hi=255)
        t4 = avg_pool2d(t3, kernel=2, stride=2, multiplier=1 << 14, shift=16, lo=0, hi=255)
        t6 = np.clip(t4.reshape(1, -1), 0, 200)
        logits.append(layer("fc", t6, 8)[0])
    return np.array(logits), bits


def test_interpreter_matches_the_network_op_by_op():
    graph = small_dynamic_net()
    image = np.random.default_rng(5).integers(0, 256, (64, 1, 4, 4))
    out = run_graph(graph, image)
    logits, bits = _by_hand(graph, image)
    assert np.array_equal(out["logits"], logits)
    assert np.array_equal(out["bits"], bits)
    assert set(np.unique(out["bits"])) == {2, 4, 8}, "the test should exercise every width"


def test_keep_all_returns_every_tensor():
    graph = small_dynamic_net()
    env = run_graph(graph, np.zeros((2, 1, 4, 4), np.int64), keep_all=True)
    assert set(env) == {"image", "t0", "c0", "c1", "c2", "bits", "t1", "t2", "t3", "t4", "t5",
                        "t6", "logits"}


def test_static_bits_and_argmax_tie_breaking():
    op = dict(name="ctrl", layers=2, candidates=[2, 4, 8])
    logits = np.array([[5, 5, 5, 1, 9, 9]])
    assert _select_bits(op, logits).tolist() == [[2, 4]]    # first maximum wins


@pytest.mark.parametrize("mutate,message", [
    (lambda g: g.update(version=2), "unsupported version 2"),
    (lambda g: g.update(format="onnx"), "format must be 'dqt-hw-graph', not 'onnx'"),
    (lambda g: g.pop("ops"), "missing field 'ops'"),
    (lambda g: g.update(master_bits=20), "`master_bits` must be between 2 and 16, not 20"),
    (lambda g: g["ops"][0].update(op="maxpool"), "op 'stem': unknown op kind 'maxpool'; known: conv2d, linear"),
    (lambda g: g["ops"][0].pop("stride"), "op 'stem': missing field(s) stride"),
    (lambda g: g["ops"][0].update(input="nowhere"),
     "op 'stem': reads tensor 'nowhere' before anything defines it"),
    (lambda g: g["ops"][0].update(bits=9), "op 'stem': `bits` must be at most `master_bits` (8), not 9"),
    (lambda g: g["ops"][0].update(bits=1), "op 'stem': `bits` must be at least 2, not 1"),
    (lambda g: g["ops"][0].update(multiplier=np.ones(3, np.int64)),
     "op 'stem': multiplier must have shape (4,) to match the weight, not (3,)"),
    (lambda g: g["ops"][0].update(weight=np.full((4, 1, 3, 3), 128)),
     "`stem.weight` holds code 128, outside the 8-bit signed range [-127, 127]"),
    (lambda g: g["ops"][0].update(weight=np.zeros((4, 1, 3, 3))),
     "`stem.weight` must hold integer codes, not an array of dtype float64"),
    (lambda g: g["ops"][0].update(bias=np.full(4, 1 << 20)),
     "op 'stem': bias must fit the 20-bit master accumulator [-524288, 524287]"),
    (lambda g: g["ops"][5].update(bits={"select": "bits", "index": 2}),
     "op 'block1': bits index 2 is outside the 2 layers of 'bits'"),
    (lambda g: g["ops"][4].update(candidates=[]), "op 'ctrl': candidates must not be empty"),
    (lambda g: g["ops"][4].update(candidates=[1, 4]),
     "op 'ctrl': candidate `bits` must be at least 2, not 1"),
    (lambda g: g["outputs"].append("nothing"), "output 'nothing' is not defined by any op"),
    # A conv/linear reads unsigned codes only; a signed tensor must be clipped first.
    (lambda g: (g["ops"][9].update(input="t2"), g["ops"][11].update(input="t5")),
     "op 'fc': reads 't5', which may hold negative codes (lo = -127)"),
    (lambda g: g["ops"][11].update(input="t2"), "op 'fc': reads 't2', which may hold negative "
     "codes (lo = -127); conv2d and linear read unsigned codes only, so clip it to lo >= 0 first"),
    (lambda g: g["ops"][8].update(kernel=[2, 2]),
     "op 'pool': kernel must be a positive integer (one size for both axes), not [2, 2]"),
    (lambda g: g["ops"][8].update(stride=0),
     "op 'pool': stride must be a positive integer or null (= kernel), not 0"),
])
def test_invalid_descriptions_are_rejected_with_a_precise_message(mutate, message):
    graph = copy.deepcopy(small_dynamic_net())
    mutate(graph)
    with pytest.raises((GraphError, TypeError, ValueError)) as info:
        validate_graph(graph)
    assert message in str(info.value)


def test_inputs_are_checked():
    graph = small_dynamic_net()
    with pytest.raises(ValueError, match=r"`image` holds code 256, outside the 8-bit unsigned"):
        run_graph(graph, np.full((1, 1, 4, 4), 256))
    with pytest.raises(GraphError, match=r"input 'image' must have shape \(N, 1, 4, 4\)"):
        run_graph(graph, np.zeros((1, 1, 5, 5), np.int64))
    with pytest.raises(TypeError, match="`image` must hold integer codes, not an array of dtype float32"):
        run_graph(graph, np.zeros((1, 1, 4, 4), np.float32))
