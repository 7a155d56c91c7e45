"""`python -m dqt_hw.demo`: the whole flow on the 8x8 digits, in a few minutes.

Shows the nesting rule on real pixels and the shift-only precision switch, then runs the
pipeline a user runs, command by command: train a DQT model (the README's width 16), export
it to an integer package, and evaluate the package with the golden interpreter against the
PyTorch integer emulation. Then per-image precision, what DQT is for: on a task as easy as the
digits the briefly trained controller settles on one width per layer for almost every image
(docs/training.md, known limits), so the demo also exports a copy of the model whose
controller output layer is random (the trained backbone unchanged; as in docs/results.md) and
shows each image picking its own widths, the package still equal to the emulation bit for bit.
Last (unless --no-build), it synthesizes the compute blocks and writes the hardware report,
with the energy per inference of that per-image mix against static widths.
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


def _run(step):
    print(f"\n$ python {shlex.join(step)}", flush=True)
    result = subprocess.run([sys.executable] + step)
    if result.returncode:
        print(f"error: step failed (exit {result.returncode}): python {shlex.join(step)}",
              file=sys.stderr)
    return result.returncode


def randomize_controller(source, target, *, seed=0):
    """Copy checkpoint `source` to `target` with random controller output weights (N(0, 0.5),
    torch seed `seed`, zero bias): the same backbone, a controller whose choices vary."""
    import torch

    from train.checkpoint import load_run, save_checkpoint
    model, config, metrics = load_run(source)
    torch.manual_seed(seed)
    with torch.no_grad():
        model.ctrl_fc2.weight.normal_(0, 0.5)
        model.ctrl_fc2.bias.zero_()
    save_checkpoint(target, model, config, metrics)


def show_choices(package, most=6):
    """Print the most common per-image patterns of controlled-layer bit-widths over the digits
    test set; return (number of patterns, layers that run at more than one width)."""
    from .eval import load_test_set
    from .package import layer_bits, load_package
    graph, manifest = load_package(package)
    codes, _ = load_test_set("digits", graph["master_bits"],
                             manifest["inputs"]["image"]["shape"])
    chosen = layer_bits(graph, golden.run_graph(graph, codes, keep_all=True), len(codes))
    layers = manifest["controlled_layers"]
    patterns, first, counts = np.unique(np.stack([chosen[name] for name in layers], axis=1),
                                        axis=0, return_index=True, return_counts=True)
    print(f"   bit-widths of {', '.join(layers)} per image: {len(patterns)} pattern(s) over "
          f"{len(codes)} test images")
    for index in np.argsort(-counts, kind="stable")[:most]:
        print(f"     {' '.join(map(str, patterns[index]))}   {counts[index]:3d} images "
              f"(first: test image {first[index]})")
    return len(patterns), sum(len(np.unique(chosen[name])) > 1 for name in layers)


def run_pipeline(out, *, epochs, build):
    print("\n3. The pipeline, as you would run it yourself")
    run = os.path.join(out, "digits-dqt")
    checkpoint = os.path.join(run, "checkpoint.pt")
    package = os.path.join(out, "pkg-digits-dqt")
    steps = [
        # --overwrite: the demo's own folder, replaced on every demo run.
        ["-m", "train.fit", "--dataset", "digits", "--mode", "dqt", "--epochs", str(epochs),
         "--width", "16", "--overwrite", "--out", run],
        ["-m", "dqt_hw.export", checkpoint, "--out", package],
        ["-m", "dqt_hw.eval", package, "--dataset", "digits", "--compare", checkpoint],
    ]
    for step in steps:
        if _run(step):
            return 1
    _, varying = show_choices(package)
    print(f"   the trained controller switches {varying} of 8 layers between images")

    print("\n4. Per image precision: the same backbone with a random controller output layer")
    mixed = os.path.join(out, "digits-dqt-mixed.pt")
    mixed_package = os.path.join(out, "pkg-digits-dqt-mixed")
    randomize_controller(checkpoint, mixed)
    print(f"   wrote {mixed} (dqt_hw.demo.randomize_controller)")
    for step in (["-m", "dqt_hw.export", mixed, "--out", mixed_package],
                 ["-m", "dqt_hw.eval", mixed_package, "--dataset", "digits", "--compare",
                  mixed]):
        if _run(step):
            return 1
    patterns, varying = show_choices(mixed_package)
    print(f"   the widths change from image to image ({patterns} patterns, {varying} of 8 layers "
          f"switching), and the package still gives the emulation's logits and choices exactly")
    if build:
        print("\n5. Hardware: the compute blocks on an iCE40 UP5K, and the energy of that mix")
        # Synthesis only keeps the demo to minutes; drop --no-pnr for Fmax (about 7 more).
        if _run(["-m", "dqt_hw.build", "--bits", "8", "--model", mixed_package, "--dataset",
                 "digits", "--no-pnr", "--out", os.path.join(out, "hw")]):
            return 1
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
