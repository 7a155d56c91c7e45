# amaranth: UnusedElaboratable=no
"""DequantRequant (int -> float32 -> x scale -> round -> clamp) in the Amaranth simulator,
bit-exact against its NumPy float32 emulation `dequant_requant_reference`; the reference itself
pinned on hand-checked values; latency; validation."""

import os

import numpy as np
import pytest

from dqt_hw import golden
from dqt_hw.hdl import DequantRequant, NestUnit, dequant_requant_reference, float32_bits
from dqt_hw.hdl.sim import latency_of, rng_for, run_stream, simulate, test_seed

LONG = os.environ.get("DQT_LONG") == "1"


def random_scale(rng):
    """float32 scales: powers of two (ties at .5), typical mantissas over a wide exponent
    range, both signs, and arbitrary bit patterns (tiny, subnormal and huge finite values)."""
    kind = rng.random()
    if kind < 0.3:
        return np.float32(2.0 ** rng.randint(-10, 3))
    if kind < 0.85:
        sign = -1 if rng.random() < 0.1 else 1
        return np.float32(sign * rng.uniform(0.5, 1.0) * 2.0 ** rng.randint(-12, 5))
    pattern = rng.randint(0, 0xFE << 23 | 0x7FFFFF) | rng.randint(0, 1) << 31
    return np.uint32(pattern).view(np.float32)


def double_rounding_cases(rng, master_bits, count):
    """(code, scale) pairs whose exact product lies half a float32 ulp from k + 1/2: rounding
    the product to float32 (ties to even) decides which integer rint() returns, so these pin
    the multiplier's own rounding, which random scales almost never exercise."""
    cases = []
    while len(cases) < count:
        code = rng.randrange(3, 1 << (master_bits - 1), 2)             # odd, >= 3
        k = rng.randint(1, (1 << (master_bits - 1)) - 2)
        exponent = k.bit_length() - 1                                # k + 1/2 in [2^e, 2^(e+1))
        # t = k + 1/2 +- ulp/2 with ulp = 2^(e - 23): t = halves * 2^(e - 24), halves odd.
        halves = (2 * k + 1) * (1 << (23 - exponent)) + rng.choice((-1, 1))
        if halves % code == 0:
            scale = np.float32(halves // code * 2.0 ** (exponent - 24))
            assert float(scale) * code == halves * 2.0 ** (exponent - 24)   # exact
            cases.append((code, scale))
    return cases


@pytest.mark.parametrize("master_bits, signed", [(8, False), (8, True), (5, True)],
                         ids=["n8-unsigned", "n8-signed", "n5-signed"])
def test_dequant_requant_random(master_bits, signed):
    seed = test_seed(f"dequant/requant n={master_bits} signed={signed}")
    rng = rng_for(seed, master_bits, signed)
    dut = DequantRequant(master_bits=master_bits, signed=signed)
    lo, hi = golden.code_range(master_bits, signed=signed)
    items, expected = [], []
    for _ in range(4000 if LONG else 500):
        code, scale = rng.randint(lo, hi), random_scale(rng)
        bits = rng.randint(golden.MIN_BITS, master_bits)
        items.append(({"bits": bits, "scale": float32_bits(scale)}, code))
        expected.append(int(dequant_requant_reference(code, scale=scale, bits=bits,
                                                      signed=signed)))
    for code, scale in double_rounding_cases(rng, master_bits, 40):
        items.append(({"bits": master_bits, "scale": float32_bits(scale)}, code))
        expected.append(int(dequant_requant_reference(code, scale=scale, bits=master_bits,
                                                      signed=signed)))
    outputs, _ = run_stream(dut, items, rng=rng, stall=0.25)
    assert outputs == expected


def test_dequant_requant_matches_nesting_where_they_agree():
    """With scale 2^-s the float path equals nesting except on ties (half-even vs half-up),
    the difference docs/arithmetic.md describes; checked on every 8-bit code."""
    codes = np.arange(0, 256)
    for bits in range(2, 9):
        floats = dequant_requant_reference(codes, scale=2.0 ** (bits - 8), bits=bits,
                                           signed=False)
        nested = golden.nest(codes, master_bits=8, bits=bits, signed=False)
        step = 8 - bits
        ties = (codes & ((1 << step) - 1)) == (1 << step >> 1) if step else np.zeros(256, bool)
        assert np.array_equal(floats[~ties], nested[~ties])
        if step:
            assert np.any(floats[ties] != nested[ties])


def test_reference_on_hand_values():
    ref = dequant_requant_reference
    assert ref(np.array([3, 5, 7, 255]), scale=0.5, bits=8, signed=False).tolist() == \
        [2, 2, 4, 128]                                   # 1.5 -> 2, 2.5 -> 2, 3.5 -> 4
    assert ref(np.array([-3, 3]), scale=-1.0, bits=4, signed=True).tolist() == [3, -3]
    assert ref(np.array([100]), scale=1e30, bits=4, signed=True).tolist() == [7]
    assert ref(np.array([100]), scale=1e-40, bits=4, signed=True).tolist() == [0]
    assert float32_bits(1.0) == 0x3F800000 and float32_bits(-2.0) == 0xC0000000
    with pytest.raises(ValueError, match="`scale` must be a finite float32, not nan"):
        ref(np.array([1]), scale=float("nan"), bits=4, signed=False)


def test_dequant_requant_latency_and_throughput():
    dut = DequantRequant(master_bits=8, signed=False)
    items = [({"bits": 4, "scale": float32_bits(0.0625)}, code) for code in range(40)]
    outputs, cycles = run_stream(dut, items)
    assert outputs == dequant_requant_reference(np.arange(40), scale=0.0625, bits=4,
                                                signed=False).tolist()
    assert cycles == len(items) + dut.latency - 1
    measured = []

    async def testbench(ctx):
        ctx.set(dut.bits, 8)
        ctx.set(dut.scale, float32_bits(1.0))
        measured.append(await latency_of(ctx, dut.input, dut.output, 9))

    simulate(dut, testbench)
    assert measured == [dut.latency] == [3]
    assert NestUnit.latency == 0


@pytest.mark.parametrize("kwargs, error, message", [
    ({"signed": None}, TypeError, "`signed` must be a bool, not None"),
    ({"signed": True, "master_bits": 17}, ValueError,
     "`master_bits` must be between 2 and 16, not 17"),
])
def test_dequant_requant_rejects(kwargs, error, message):
    with pytest.raises(error) as info:
        DequantRequant(**kwargs)
    assert str(info.value) == message
