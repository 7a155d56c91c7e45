"""`python -m dqt_hw.demo`: the whole flow on the 8x8 digits, in a few minutes.

Shows the nesting rule on real pixels and the shift-only precision switch, then runs the
pipeline a user runs, command by command: train a DQT model, export it to an integer package,
evaluate the package with the golden interpreter against the PyTorch integer emulation, and
(unless --no-build) synthesize the compute blocks and write the hardware report (area,
transition cost, energy per inference of the trained model).
"""

import argparse
import os
import shlex
import subprocess
import sys

import numpy as np

from . import golden


def _digits_codes(count):
    """`count` 8x8 test digits as 8-bit master codes, through the one input quantizer."""
    from train.data import load_dataset, to_master_codes
    images, _ = load_dataset("digits", "test")
    return np.asarray(to_master_codes(images[:count], 8))


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


def run_pipeline(out, *, epochs, build):
    print("\n3. The pipeline, as you would run it yourself")
    run = os.path.join(out, "digits-dqt")
    package = os.path.join(out, "pkg-digits-dqt")
    steps = [
        ["-m", "train.fit", "--dataset", "digits", "--mode", "dqt", "--epochs", str(epochs),
         "--width", "8", "--out", run],
        ["-m", "dqt_hw.export", os.path.join(run, "checkpoint.pt"), "--out", package],
        ["-m", "dqt_hw.eval", package, "--dataset", "digits",
         "--compare", os.path.join(run, "checkpoint.pt")],
    ]
    if build:
        # Synthesis only keeps the demo to minutes; drop --no-pnr for Fmax (about 7 more).
        steps.append(["-m", "dqt_hw.build", "--bits", "8", "--model", package,
                      "--dataset", "digits", "--no-pnr", "--out", os.path.join(out, "hw")])
    for step in steps:
        print(f"\n$ python {shlex.join(step)}", flush=True)
        result = subprocess.run([sys.executable] + step)
        if result.returncode:
            print(f"error: step failed (exit {result.returncode}): python {shlex.join(step)}",
                  file=sys.stderr)
            return result.returncode
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m dqt_hw.demo", description=__doc__)
    parser.add_argument("--out", default="build/demo", help="folder for every output")
    parser.add_argument("--epochs", type=int, default=10, help="training epochs (default 10)")
    parser.add_argument("--no-build", dest="build", action="store_false",
                        help="skip synthesis and the hardware report")
    parser.add_argument("--no-pipeline", dest="pipeline", action="store_false",
                        help="only show the nesting rule and the shift-only switch")
    args = parser.parse_args(argv)
    show_nesting(_digits_codes(1)[0])
    show_switch()
    if args.pipeline:
        return run_pipeline(args.out, epochs=args.epochs, build=args.build)
    return 0


if __name__ == "__main__":
    sys.exit(main())
