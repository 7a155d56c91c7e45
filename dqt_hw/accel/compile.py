"""python -m dqt_hw.accel.compile: an integer model package -> an accelerator program.

    python -m dqt_hw.accel.compile build/pkg-digits-dqt --out build/accel-digits-dqt [--cols 4]

Writes, atomically (a folder that is either complete or absent):

    DIR/model.json       configuration, tensor placements, controlled-layer slots, op list
    DIR/program.hex      program memory image (32-bit words, $readmemh)
    DIR/data.hex         data memory image: weights, then constants (64-bit words, from 0)
    DIR/table.hex        controller table (32-bit words)

A package this configuration cannot run is refused with one line naming what does not fit.
"""

import argparse
import dataclasses
import json
import sys
from pathlib import Path

__all__ = ["write_compiled", "main"]


def _hex(words, bits):
    digits = bits // 4
    return "".join(f"{int(w):0{digits}x}\n" for w in words)


def write_compiled(model, out_dir):
    """Write `model` (a `CompiledModel`) to `out_dir` atomically (see the module docstring)."""
    from ..atomic import atomic_dir
    files = {
        "model.json": json.dumps(model.describe(), indent=1) + "\n",
        "program.hex": _hex(model.program, 32),
        "data.hex": _hex(model.data, 64),
        "table.hex": _hex(model.table, 32),
    }

    with atomic_dir(out_dir) as staging:
        for name, text in files.items():
            (staging / name).write_text(text)


def parse_config(args):
    from .config import AcceleratorConfig
    fields = {f.name for f in dataclasses.fields(AcceleratorConfig)}
    values = {name: getattr(args, name) for name in fields
              if getattr(args, name, None) is not None}
    return AcceleratorConfig(**values)


def add_config_arguments(parser):
    """The AcceleratorConfig fields as --options (shared by the CLIs that build one)."""
    from .config import AcceleratorConfig
    defaults = AcceleratorConfig()
    group = parser.add_argument_group("accelerator configuration")
    for field in dataclasses.fields(AcceleratorConfig):
        if field.name == "supported_bits":
            continue
        if field.type in (bool, "bool"):
            group.add_argument(f"--{field.name.replace('_', '-')}", dest=field.name,
                               action=argparse.BooleanOptionalAction, default=None,
                               help=f"(default {getattr(defaults, field.name)})")
            continue
        group.add_argument(f"--{field.name.replace('_', '-')}", dest=field.name, type=int,
                           default=None,
                           help=f"(default {getattr(defaults, field.name)})")


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m dqt_hw.accel.compile",
        description="Compile an integer model package into the accelerator's program and "
                    "memory images (docs/accelerator.md).")
    parser.add_argument("package", metavar="PKG", help="package directory (dqt_hw.export)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    add_config_arguments(parser)
    args = parser.parse_args(argv)
    from ..package import run_cli

    def run(_):
        from .compiler import compile_package
        config = parse_config(args)
        out = Path(args.out)
        if out.exists() and not (out / "model.json").is_file() and any(out.iterdir()):
            raise ValueError(f"{out} exists and is not a compiled model; choose another --out")
        model = compile_package(args.package, config)
        write_compiled(model, out)
        words = model.describe()["words"]
        print(f"{args.package}: {len(model.ops)} instructions, {words['data_image']} words "
              f"of weights and constants, {words['data_used']} of {config.data_words} data "
              f"words used, "
              f"{len(model.slots)} controlled-layer slots -> {out}")
        return 0

    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())
