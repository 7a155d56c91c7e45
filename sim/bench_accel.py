"""The accelerator benchmark: whole-network co-simulations, resumable, one JSON per finished run.

    python sim/bench_accel.py --package build/pkg-fmnist-dqt --name fmnist-dqt --images 1000
    python sim/bench_accel.py --package build/pkg-fmnist-dqt --name fmnist-dqt --pinned
    python sim/bench_accel.py --report          # the markdown tables of docs/results.md

Runs sim/net.py in chunks of `--chunk` images (default 50) and writes each finished chunk's
summary to bench/accel/<name>/images-<first>-<last>.json; a chunk whose file exists is skipped,
so an interrupted benchmark continues where it stopped. `--pinned` runs one image with every
dynamic layer at 8, at 4 and at 2 bits (their cycle counts do not depend on the image).
`--report` reads every JSON there and prints the tables: mismatches, accuracy, cycles per
image, per-layer cycles at 8/4/2/dynamic with MAC utilisation, the cost of a precision switch,
and the co-simulation's images/s.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

SIM_DIR = Path(__file__).resolve().parent
REPO_DIR = SIM_DIR.parent
BENCH_DIR = REPO_DIR / "bench" / "accel"
sys.path.insert(0, str(SIM_DIR))
sys.path.insert(0, str(REPO_DIR))

from net import NetJob, run_net  # noqa: E402


def _save(path, summary):
    from dqt_hw.atomic import write_atomic
    write_atomic(path, json.dumps(summary) + "\n")


def run_chunks(args):
    folder = BENCH_DIR / args.name
    folder.mkdir(parents=True, exist_ok=True)
    for first in range(args.first, args.first + args.images, args.chunk):
        count = min(args.chunk, args.first + args.images - first)
        path = folder / f"images-{first:05d}-{first + count - 1:05d}.json"
        if path.exists():
            print(f"{path.name}: done before, skipped")
            continue
        summary = run_net(NetJob(package=args.package, images=count, first=first,
                                 checkpoint=args.checkpoint, torch=not args.no_torch,
                                 cols=args.cols))
        _save(path, summary)
        print(f"{path.name}: {summary['mismatches']} mismatches, "
              f"{summary['images_per_s']:.2f} images/s", flush=True)
        if summary["mismatches"]:
            return 1
    return 0


def run_pinned(args):
    folder = BENCH_DIR / args.name
    folder.mkdir(parents=True, exist_ok=True)
    for bits in (8, 4, 2):
        path = folder / f"pinned-{bits}.json"
        if path.exists():
            print(f"{path.name}: done before, skipped")
            continue
        summary = run_net(NetJob(package=args.package, images=1, pin_bits=bits, cols=args.cols))
        _save(path, summary)
        print(f"{path.name}: {summary['cycles_mean']:.0f} cycles", flush=True)
    return 0


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _switch_cost(chunks, pinned):
    """What switching precision costs: each dynamic image's op cycles minus the cycles the same
    op takes in the pinned run at the width it ran at (ops without a choice: the 8-bit run)."""
    extra = []
    for chunk in chunks:
        for op_cycles, bits in zip(chunk["per_image"]["op_cycles"], chunk["per_image"]["bits"]):
            expected = 0
            for index, source in enumerate(chunk["op_bits"]):
                width = bits[source["slot"]] if isinstance(source, dict) else 8
                expected += pinned[width]["per_image"]["op_cycles"][0][index]
            extra.append(sum(op_cycles) - expected)
    extra = np.asarray(extra)
    return (f"\nPrecision switches: an image's cycles minus what its ops take in the pinned "
            f"runs at the widths it chose: mean {extra.mean():.1f}, min {extra.min()}, max "
            f"{extra.max()} cycles per image ({len(extra)} images; goal: nothing beyond loading "
            f"the shift amounts).")


def report():
    out = []
    for folder in sorted(p for p in BENCH_DIR.glob("*") if p.is_dir()):
        chunks = [json.loads(p.read_text()) for p in sorted(folder.glob("images-*.json"))]
        pinned = {int(p.stem.split("-")[1]): json.loads(p.read_text())
                  for p in folder.glob("pinned-*.json")}
        out.append(f"### {folder.name}\n")
        if chunks:
            images = sum(c["images"] for c in chunks)
            cycles = np.concatenate([c["per_image"]["cycles"] for c in chunks])
            run_s = sum(c["run_s"] for c in chunks)
            accuracy = (sum(c["accuracy"] * c["images"] for c in chunks) / images
                        if chunks[0]["accuracy"] is not None else None)
            bits = [c["per_image"]["bits"] for c in chunks if c["per_image"]["bits"]]
            out.append(_table(
                ["images", "mismatches (golden, PyTorch)", "top-1", "cycles/image mean (min-max)",
                 "co-simulation images/s"],
                [[images, sum(c["mismatches"] for c in chunks),
                  f"{100 * accuracy:.2f} %" if accuracy is not None else "-",
                  f"{cycles.mean():.0f} ({cycles.min()}-{cycles.max()})",
                  f"{images / run_s:.2f}"]]))
            if bits:
                matrix = np.concatenate(bits)
                vectors = len({tuple(row) for row in matrix.tolist()})
                switches = int(np.sum(np.any(matrix[1:] != matrix[:-1], axis=1)))
                out.append(f"\n{vectors} distinct bit vectors; consecutive images differ in "
                           f"{switches} of {len(matrix) - 1} cases; mean bits "
                           f"{matrix.mean():.2f}.")
            out.append("")
        if pinned:
            ops = pinned[8]["ops"]
            cols = pinned[8]["config"]["cols"]
            rows = []
            dyn = None
            if chunks:
                dyn = np.concatenate([np.asarray(c["per_image"]["op_cycles"]) for c in chunks])
            macs = pinned[8].get("macs", {})
            lanes = {8: 1, 4: 4, 2: 16}
            for index, op in enumerate(ops):
                cycles = {b: pinned[b]["per_image"]["op_cycles"][0][index] for b in (8, 4, 2)}
                row = [op] + [cycles[b] for b in (8, 4, 2)]
                row += [f"{cycles[4] / cycles[8]:.3f}", f"{cycles[2] / cycles[8]:.3f}"]
                for b in (8, 2):
                    controlled = cycles[2] < cycles[8]
                    row.append(f"{100 * macs[op] / (cols * lanes[b] * cycles[b]):.0f} %"
                               if op in macs and (b == 8 or controlled) else "-")
                row.append(f"{dyn[:, index].mean():.0f}" if dyn is not None else "-")
                rows.append(row)
            out.append(_table(["op", "cycles b=8", "b=4", "b=2", "b=4 / b=8", "b=2 / b=8",
                               "MAC util. b=8", "b=2", "dynamic (mean)"], rows))
            controlled = [i for i, op in enumerate(ops)
                          if pinned[2]["per_image"]["op_cycles"][0][i]
                          < pinned[8]["per_image"]["op_cycles"][0][i]]
            sums = {b: sum(pinned[b]["per_image"]["op_cycles"][0][i] for i in controlled)
                    for b in (8, 4, 2)}
            util = (sum(macs.values())
                    / (cols * pinned[8]["cycles_mean"])) if macs else float("nan")
            out.append(f"\nControlled layers together: b=4 takes {sums[4] / sums[8]:.3f}x and "
                       f"b=2 {sums[2] / sums[8]:.3f}x their b=8 cycles (goals 0.30x, 0.10x); MAC "
                       f"utilisation of the whole image at b=8 {100 * util:.1f} % (goal 70 %).")
            if chunks and all("op_bits" in c for c in chunks):
                out.append(_switch_cost(chunks, pinned))
            total = {b: pinned[b]["cycles_mean"] for b in (8, 4, 2)}
            out.append(f"\nWhole image: {total[8]:.0f} / {total[4]:.0f} / {total[2]:.0f} cycles "
                       f"at 8 / 4 / 2 bits ({cols} columns).\n")
    return "\n".join(out)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python sim/bench_accel.py",
                                     description=__doc__.split("\n\n")[1])
    parser.add_argument("--package", help="an exported package directory (to run)")
    parser.add_argument("--name", help="folder under bench/accel/ for this package's runs")
    parser.add_argument("--images", type=int, default=1000,
                        help="test images to co-simulate (default 1000)")
    parser.add_argument("--first", type=int, default=0, help="first test image (default 0)")
    parser.add_argument("--chunk", type=int, default=50,
                        help="images per sim/net.py run and per saved JSON (default 50)")
    parser.add_argument("--checkpoint", default=None,
                        help="the checkpoint the package came from, for the PyTorch comparison "
                             "(default: the one the package's metadata names)")
    parser.add_argument("--no-torch", action="store_true",
                        help="compare with the golden model only")
    parser.add_argument("--cols", type=int, default=4, help="array columns (default 4)")
    parser.add_argument("--pinned", action="store_true",
                        help="one image with every dynamic layer at 8, 4 and 2 bits")
    parser.add_argument("--report", action="store_true",
                        help="print the tables of every stored run and exit")
    args = parser.parse_args(argv)
    if args.report:
        print(report())
        return 0
    if not args.package or not args.name:
        parser.error("--package and --name are needed to run")
    return run_pinned(args) if args.pinned else run_chunks(args)


if __name__ == "__main__":
    sys.exit(main())
