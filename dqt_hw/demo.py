"""`python -m dqt_hw.demo`: the integer contract at work, in a minute.

Shows the nesting rule on real pixels, the shift-only precision switch of one layer, and a whole
integer network run by the golden interpreter at 8, 4 and 2 bits.
"""

import argparse
import sys

import numpy as np

from . import golden


def _digits_codes(count):
    """`count` 8x8 digits as 8-bit master codes (pixel 0..16 scaled to 0..255, integers only)."""
    from sklearn.datasets import load_digits
    digits = load_digits()
    pixels = digits.images[:count].astype(np.int64)
    return (pixels * 255 + 8) // 16, digits.target[:count]


def show_nesting(codes):
    print("1. Nesting: one stored 8-bit code, every narrower code derived by a shift (§2)")
    row = codes.reshape(-1)[20:28]
    print(f"   master  : {row.tolist()}")
    for bits in (6, 4, 2):
        nested = golden.nest(row, master_bits=8, bits=bits, signed=False)
        print(f"   {bits}-bit   : {nested.tolist()}   (x 2^{8 - bits} ~ {(nested << (8 - bits)).tolist()})")


def show_switch():
    print("\n2. A precision switch changes a shift amount, never a multiplier (§5.2)")
    multiplier, shift = golden.quantize_multiplier(0.0123)
    print(f"   master constants: M = {multiplier}, r = {shift} (ratio 0.0123)")
    for bits in (8, 4, 2):
        m_b, r_b = golden.quantize_multiplier(0.0123 * 4 ** (8 - bits))
        print(f"   b = {bits}: accumulator shifted left by {2 * (8 - bits):2d}; constants derived "
              f"from the b-bit scales: M = {m_b}, r = {r_b}")


def show_network(images, labels, seed):
    print("\n3. A whole integer network in the golden interpreter (§8)")
    rng = np.random.default_rng(seed)
    weight = rng.integers(-127, 128, (10, 64))
    layer = dict(op="linear", name="fc", input="flat", output="logits", weight=weight,
                 bias=np.zeros(10, np.int64), multiplier=np.full(10, 1 << 14),
                 shift=np.full(10, 16), lo=-32767, hi=32767)
    for bits in (8, 4, 2):
        graph = {"format": golden.GRAPH_FORMAT, "version": golden.GRAPH_VERSION,
                 "master_bits": 8, "inputs": {"image": {"shape": [1, 8, 8]}},
                 "outputs": ["logits"],
                 "ops": [dict(op="flatten", name="flatten", input="image", output="flat"),
                         dict(layer, bits=bits)]}
        logits = golden.run_graph(graph, images[:, None])["logits"]
        print(f"   random-weight linear layer at {bits} bits: logits of image 0 = "
              f"{logits[0].tolist()}")
    print("   (trained networks: python -m train.fit, then python -m dqt_hw.export)")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m dqt_hw.demo", description=__doc__)
    parser.add_argument("--seed", type=int, default=0, help="seed of the random demo weights")
    args = parser.parse_args(argv)
    images, labels = _digits_codes(16)
    show_nesting(images[0])
    show_switch()
    show_network(images, labels, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
