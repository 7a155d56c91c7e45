"""Test vectors for the hardware side: every layer's input and output codes for N images.

    python -m dqt_hw.vectors DIR --images N --out FILE.npz [--dataset NAME | --random SEED]

The file is a NumPy .npz archive readable without pickle (`np.load(FILE, allow_pickle=False)`):

- "meta": a 0-d string array holding JSON: {"format": "dqt-hw-vectors", "version": 1,
  "package_manifest_sha256", "master_bits", "images", "source", "inputs", "outputs",
  "ops": [{"name", "op", "inputs": [tensor], "output": tensor, "bits": "bits/<name>" or null}]}
- "tensor/<name>": int64 array (N, *shape) of every tensor of the graph: the input image codes,
  each op's output codes (master codes; accumulators never leave an op), the logits and, for a
  dynamic model, the select_bits output (N, controlled layers) of chosen bit-widths;
- "bits/<layer>": int64 (N,) bit-width each conv2d/linear layer ran at, per image;
- "labels": int64 (N,) when the images come from a dataset.

An RTL regression feeds "tensor/<input>" of an op (nested to "bits/<op>" by the hardware) and
compares its result with "tensor/<output>" for exact equality. `load_vectors` checks the
format version and says how to regenerate a stale file.
"""

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

from .atomic import atomic_file
from .golden import run_graph
from .package import MANIFEST_NAME, layer_bits, load_package, run_cli

__all__ = ["VECTORS_FORMAT", "VECTORS_VERSION", "make_vectors", "write_vectors",
           "load_vectors", "main"]

VECTORS_FORMAT = "dqt-hw-vectors"
VECTORS_VERSION = 1


def _reads(op):
    return list(op["inputs"]) if op["op"] == "add" else [op["input"]]


def make_vectors(package_dir, codes, *, labels=None, source=""):
    """(meta dict, {array name: int64 array}) for the images `codes` (N, *input shape)."""
    graph, manifest = load_package(package_dir)
    env = run_graph(graph, {next(iter(graph["inputs"])): codes}, keep_all=True)
    chosen = layer_bits(graph, env, len(codes))
    ops = [{"name": op["name"], "op": op["op"], "inputs": _reads(op), "output": op["output"],
            "bits": f"bits/{op['name']}" if op["name"] in chosen else None}
           for op in graph["ops"]]
    digest = hashlib.sha256((Path(package_dir) / MANIFEST_NAME).read_bytes()).hexdigest()
    meta = {"format": VECTORS_FORMAT, "version": VECTORS_VERSION,
            "package": str(package_dir), "package_manifest_sha256": digest,
            "master_bits": graph["master_bits"], "images": int(len(codes)), "source": source,
            "inputs": list(graph["inputs"]), "outputs": list(graph["outputs"]), "ops": ops}
    arrays = {f"tensor/{name}": np.asarray(value, dtype=np.int64) for name, value in env.items()}
    arrays.update({f"bits/{name}": bits for name, bits in chosen.items()})
    if labels is not None:
        arrays["labels"] = np.asarray(labels, dtype=np.int64)
    return meta, arrays


def write_vectors(path, meta, arrays):
    """Write the .npz atomically (temporary file beside `path`, then rename)."""
    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"`--out` must end in .npz, not {str(path)!r}")
    with atomic_file(path, "wb") as file:
        np.savez_compressed(file, meta=np.array(json.dumps(meta)), **arrays)


def load_vectors(path):
    """(meta, {array name: array}) of a vectors file; refuses another format or version."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except FileNotFoundError:
        raise ValueError(f"{path}: no such vectors file; make it with `python -m "
                         f"dqt_hw.vectors PACKAGE --images N --out {path}`") from None
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: not a vectors archive ({error})") from None
    try:
        meta = json.loads(str(arrays.pop("meta")))
    except (KeyError, ValueError):
        raise ValueError(f"{path}: lacks the 'meta' entry of a {VECTORS_FORMAT} file") from None
    if meta.get("format") != VECTORS_FORMAT or meta.get("version") != VECTORS_VERSION:
        raise ValueError(f"{path}: {meta.get('format')!r} version {meta.get('version')!r} is "
                         f"not {VECTORS_FORMAT!r} version {VECTORS_VERSION}; regenerate it "
                         f"with `python -m dqt_hw.vectors PACKAGE --images N --out {path}`")
    return meta, arrays


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m dqt_hw.vectors",
        description="Dump every layer's input/output master codes and chosen bit-widths for "
                    "N images, for RTL regressions.")
    parser.add_argument("package", metavar="DIR", help="package written by dqt_hw.export")
    parser.add_argument("--images", type=int, required=True, help="number of images N")
    parser.add_argument("--out", required=True, metavar="FILE.npz", help="output archive")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", choices=("digits", "fashion-mnist"),
                        help="take the first N images of this test set")
    source.add_argument("--random", type=int, metavar="SEED",
                        help="uniform random master codes from this seed instead of a dataset")
    args = parser.parse_args(argv)
    if args.images < 1:
        raise ValueError(f"`--images` must be a positive integer, not {args.images}")
    _, manifest = load_package(args.package)
    shape = tuple(next(iter(manifest["inputs"].values()))["shape"])
    labels = None
    if args.random is not None:
        rng = np.random.default_rng(args.random)
        codes = rng.integers(0, 1 << manifest["master_bits"], size=(args.images,) + shape)
        source = f"random seed {args.random}"
    else:
        from .eval import load_test_set
        codes, labels = load_test_set(args.dataset, manifest["master_bits"], shape)
        codes, labels = codes[:args.images], labels[:args.images]
        source = f"{args.dataset} test images 0..{len(codes) - 1}"
    meta, arrays = make_vectors(args.package, codes, labels=labels, source=source)
    write_vectors(args.out, meta, arrays)
    print(f"wrote {args.out}: {len(codes)} images, {len(meta['ops'])} ops ({source})")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
