"""python -m dqt_hw.firmware: an integer model package -> C source for the firmware runtime.

    python -m dqt_hw.firmware build/pkg-digits-dqt --out build/firmware-model
    python -m dqt_hw.firmware PKG --out DIR --images 20 --data-words 4096 ...

Compiles the package for the accelerator configuration (the --options of
`python -m dqt_hw.accel.compile`) and writes, atomically:

    DIR/model.c, DIR/model.h   `const dqt_model SYMBOL` (firmware/include/dqt.h)
    DIR/model.json             the compiled model's description and its configuration
    DIR/images.c, images.h     with --images N: N test images of the package's dataset as
                               (C, H, W) master codes, and their labels
    DIR/images.npz             the same images and labels, for the host-side comparison
"""

import argparse
import json
import sys
from pathlib import Path

from . import images_c_header, images_c_source, model_c_header, model_c_source


def write_model_sources(package, out, config, *, symbol="dqt_model_default", images=0,
                        first=0, dataset=None):
    """Compile `package` for `config` and write the C sources to `out` (see the module
    docstring); returns the `CompiledModel`."""
    import numpy as np

    from ..accel.compiler import compile_package
    from ..atomic import atomic_dir
    from ..package import load_package

    model = compile_package(package, config)
    files = {"model.h": model_c_header(symbol),
             "model.c": model_c_source(model, symbol, name=Path(package).name)}
    description = dict(model.describe(), symbol=symbol, package=str(package))
    arrays = None
    if images:
        from ..eval import load_test_set
        _, manifest = load_package(package)
        dataset = dataset or manifest.get("metadata", {}).get("dataset")
        if not dataset:
            raise ValueError("the package does not name its dataset; give --dataset")
        codes, labels = load_test_set(dataset, manifest["master_bits"],
                                      manifest["inputs"]["image"]["shape"])
        if first < 0 or first + images > len(codes):
            raise ValueError(f"{dataset} has {len(codes)} test images; --first {first} "
                             f"--images {images} asks beyond that")
        codes, labels = codes[first:first + images], labels[first:first + images]
        files["images.h"] = images_c_header()
        files["images.c"] = images_c_source(codes, labels, first=first, dataset=dataset)
        description["images"] = {"dataset": dataset, "first": first, "count": images}
        arrays = dict(images=codes, labels=labels)
    files["model.json"] = json.dumps(description, indent=1) + "\n"
    with atomic_dir(out) as staging:
        for name, text in files.items():
            (staging / name).write_text(text)
        if arrays is not None:
            np.savez(staging / "images.npz", **arrays)
    return model


def main(argv=None):
    from ..accel.compile import add_config_arguments, parse_config
    from ..package import run_cli

    parser = argparse.ArgumentParser(
        prog="python -m dqt_hw.firmware",
        description=__doc__.split("\n\n")[2].replace("\n", " "),
        epilog="docs/firmware.md describes the runtime and how to add a model.")
    parser.add_argument("package", metavar="PKG", help="package directory (dqt_hw.export)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--symbol", default="dqt_model_default",
                        help="C name of the dqt_model (dqt_model_default)")
    parser.add_argument("--images", type=int, default=0,
                        help="also write this many test images as C arrays (0)")
    parser.add_argument("--first", type=int, default=0, help="index of the first test image")
    parser.add_argument("--dataset", default=None,
                        help="digits or fashion-mnist (default: the package's)")
    add_config_arguments(parser)
    args = parser.parse_args(argv)
    if args.images < 0:
        parser.error("--images must be 0 or more")

    def run(_):
        out = Path(args.out)
        if out.exists() and not (out / "model.json").is_file() and any(out.iterdir()):
            raise ValueError(f"{out} exists and is not a firmware model folder; choose "
                             f"another --out")
        config = parse_config(args)
        model = write_model_sources(args.package, out, config, symbol=args.symbol,
                                    images=args.images, first=args.first,
                                    dataset=args.dataset)
        print(f"{args.package}: {len(model.program)} program words, {model.data.size} data "
              f"words (weights and {len(model.constants)} constants), {len(model.slots)} slots "
              f"({config.describe()}) -> {out}/model.c"
              + (f", {args.images} images" if args.images else ""))
        return 0

    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())
