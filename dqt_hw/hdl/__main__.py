"""python -m dqt_hw.hdl: write (or --check) the reference Verilog under rtl/."""

import argparse
import sys
from pathlib import Path

from .rtl import REFERENCE_DESIGNS, check_rtl, write_rtl


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m dqt_hw.hdl",
        description="Generate the reference Verilog of the dqt-hw compute blocks (n = 8) with "
                    "Amaranth, one file rtl/<design>.v per design, top module <design>. "
                    "rtl/README.md documents each design's configuration and ports.")
    parser.add_argument("--out", type=Path, default=Path("rtl"),
                        help="output folder (default: rtl)")
    parser.add_argument("--check", action="store_true",
                        help="regenerate in a temporary folder and exit 1 if --out differs")
    parser.add_argument("--design", action="append", choices=list(REFERENCE_DESIGNS),
                        metavar="NAME",
                        help="write only this design (repeatable; default: all): "
                             + ", ".join(REFERENCE_DESIGNS)
                             + " (the names `python -m dqt_hw.build --blocks` uses)")
    args = parser.parse_args(argv)
    if args.check:
        if not args.out.is_dir():
            print(f"error: {args.out} is not a folder", file=sys.stderr)
            return 1
        problems = check_rtl(args.out)
        if problems:
            print("\n".join(problems), file=sys.stderr)
            print(f"error: {args.out} is stale; regenerate with `python -m dqt_hw.hdl "
                  f"--out {args.out}`", file=sys.stderr)
            return 1
        print(f"{args.out}: {len(REFERENCE_DESIGNS)} designs up to date")
        return 0
    try:
        paths = write_rtl(args.out, args.design)
    except OSError as error:
        print(f"error: cannot write {args.out}: {error.strerror or error}", file=sys.stderr)
        return 1
    for path in paths:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
