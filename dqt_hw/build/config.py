"""The build configuration: one dataclass, parsed from the command line and validated once."""

import argparse
import dataclasses
from pathlib import Path

from ..golden import MIN_BITS, accumulator_bits
from .blocks import BLOCKS
from .targets import TARGETS, check_target

__all__ = ["BuildConfig", "parse_args", "DEFAULT_TERMS", "MIN_BUILD_BITS", "MAX_BUILD_BITS"]

#: Dot-product length K the default accumulator is sized for: a 3x3 convolution over 512
#: channels (4608 terms; 29 bits at n = 8, docs/arithmetic.md §7).
DEFAULT_TERMS = 4608
#: Master widths the build supports: the precision-scalable PE splits an n x n product into
#: 2-bit bricks, so n must be a power of two, and 16 bits keep the requantizer product in 64.
MIN_BUILD_BITS = 4
MAX_BUILD_BITS = 16


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True)
class BuildConfig:
    """What to build, for which device, and where the report goes.

    `acc_bits` None means the spec width for `terms` products of n x n bits
    (`dqt_hw.golden.accumulator_bits(n, n, terms)`).
    """
    master_bits: int = 8
    rows: int = 2
    cols: int = 2
    terms: int = DEFAULT_TERMS
    acc_bits: int | None = None
    candidates: tuple | None = None
    target: str = "ice40-up5k"
    out: Path | None = None
    seeds: int = 1
    place_route: bool = True
    dsp: bool = False
    model: Path | None = None
    dataset: str | None = None
    mix_images: int = 1000
    blocks: tuple | None = None
    cycles: Path | None = None

    def __post_init__(self):
        n = self.master_bits
        if not _is_int(n):
            raise TypeError(f"`--bits` must be an integer, not {n!r}")
        if not MIN_BUILD_BITS <= n <= MAX_BUILD_BITS or n & (n - 1):
            raise ValueError(f"`--bits` must be a power of two between {MIN_BUILD_BITS} and "
                             f"{MAX_BUILD_BITS} (the PE fuses 2-bit bricks), not {n}")
        for name, value in (("--rows", self.rows), ("--cols", self.cols),
                            ("--terms", self.terms), ("--seeds", self.seeds)):
            if not _is_int(value) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer, not {value!r}")
        if self.seeds > 20:
            raise ValueError(f"`--seeds` must be at most 20, not {self.seeds}")
        need = accumulator_bits(n, n, self.terms)
        if self.acc_bits is not None and (not _is_int(self.acc_bits) or self.acc_bits < need):
            raise ValueError(f"`--acc-bits` must be at least {need} (n = {n}, K = {self.terms}: "
                             f"accumulator_bits), not {self.acc_bits!r}")
        if self.acc_bits is not None and self.acc_bits > 64:
            raise ValueError(f"`--acc-bits` must be at most 64, not {self.acc_bits}")
        if self.candidates is None:
            # The project's candidates {2, 4, 8} (DQT_NOTES §3), and n itself, up to n.
            object.__setattr__(self, "candidates",
                               tuple(b for b in (2, 4, 8, 16) if b <= n))
        object.__setattr__(self, "candidates", tuple(self.candidates))
        if not self.candidates:
            raise ValueError("`--candidates` must name at least one bit-width")
        for bits in self.candidates:
            if not _is_int(bits) or not MIN_BITS <= bits <= n:
                raise ValueError(f"`--candidates` must hold bit-widths between {MIN_BITS} and "
                                 f"--bits ({n}), not {bits!r}")
        check_target(self.target)
        if self.dataset is not None and self.model is None:
            raise ValueError("`--dataset` measures a model's bit mix: give `--model DIR` too")
        if self.blocks is not None and "accelerator" in self.blocks and self.model is None:
            raise ValueError("`--blocks accelerator` builds the accelerator for a model: give "
                             "`--model DIR` too")
        if self.cycles is not None and self.model is None:
            raise ValueError("`--cycles` gives the accelerator's measured cycles: give "
                             "`--model DIR` too")
        if not _is_int(self.mix_images) or self.mix_images < 1:
            raise ValueError(f"`--mix-images` must be a positive integer, not "
                             f"{self.mix_images!r}")

    @property
    def builds_accelerator(self):
        """With --model the whole accelerator is built too (unless --blocks leaves it out)."""
        return self.model is not None and (self.blocks is None or "accelerator" in self.blocks)

    @property
    def accumulator_width(self):
        if self.acc_bits is not None:
            return self.acc_bits
        return accumulator_bits(self.master_bits, self.master_bits, self.terms)

    @property
    def out_dir(self):
        if self.out is not None:
            return Path(self.out)
        return Path("build") / f"{self.target}-n{self.master_bits}-{self.rows}x{self.cols}"


def _int_list(text):
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, not {text!r}")
    return values


def make_parser():
    parser = argparse.ArgumentParser(
        prog="python -m dqt_hw.build",
        description="Generate the nested-integer compute blocks as Verilog, synthesize them "
                    "with Yosys, place and route them with nextpnr, and write report.json and "
                    "report.md (area, Fmax, transition cost, flexibility tax, energy).",
        epilog="Example: python -m dqt_hw.build --bits 8 --target ecp5-25f --seeds 3. "
               "Board bitstreams: python -m dqt_hw.build --board {icebreaker, ulx3s-85f, "
               "ulx3s-25f} --model PKG (see --board BOARD --help).")
    defaults = BuildConfig()
    parser.add_argument("--bits", type=int, default=defaults.master_bits,
                        help="master width n: 4, 8 or 16 (default %(default)s)")
    parser.add_argument("--rows", type=int, default=defaults.rows,
                        help="MAC array rows (default %(default)s)")
    parser.add_argument("--cols", type=int, default=None,
                        help=f"MAC array columns (default {defaults.cols}; with --model on "
                             f"iCE40 1: the UP5K holds a one-column accelerator)")
    parser.add_argument("--terms", type=int, default=defaults.terms,
                        help="dot-product length K the accumulator must hold "
                             "(default %(default)s)")
    parser.add_argument("--acc-bits", type=int, default=None,
                        help="accumulator width (default: the spec width for --terms, "
                             "2n + ceil(log2 K))")
    parser.add_argument("--candidates", type=_int_list, default=None,
                        help="candidate bit-widths the array runs, comma-separated "
                             "(default: the powers of two 2, 4, 8, 16 up to --bits)")
    parser.add_argument("--target", default=defaults.target,
                        help=f"device: {', '.join(TARGETS)} (default %(default)s)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default build/TARGET-nBITS-ROWSxCOLS)")
    parser.add_argument("--seeds", type=int, default=defaults.seeds,
                        help="place and route with seeds 1..N and report min/median/max Fmax "
                             "(default %(default)s)")
    parser.add_argument("--no-pnr", dest="place_route", action="store_false",
                        help="synthesis only: no place and route, no Fmax")
    parser.add_argument("--dsp", action="store_true",
                        help="let Yosys map multipliers to DSP blocks (default: LUT logic "
                             "only, so the scalable PE and the fixed MAC compare like for "
                             "like)")
    parser.add_argument("--model", type=Path, default=None,
                        help="an exported integer package (python -m dqt_hw.export): builds "
                             "the whole accelerator for it (does it fit the target? Fmax) and "
                             "adds its energy per inference and transition op counts")
    parser.add_argument("--dataset", default=None,
                        help="with --model: measure the dynamic model's bit mix on this "
                             "dataset's test split (digits or fashion-mnist)")
    parser.add_argument("--mix-images", type=int, default=defaults.mix_images,
                        help="test images used to measure the bit mix (default %(default)s)")
    parser.add_argument("--blocks", type=lambda text: tuple(text.split(",")), default=None,
                        metavar="A,B,...",
                        help="comma-separated subset of the blocks to build (default: all): "
                             + ", ".join(spec.name for spec in BLOCKS)
                             + " (the names of rtl/ and `python -m dqt_hw.hdl --design`; "
                               "mac_array is --rows x --cols); `accelerator` is the whole "
                               "accelerator for --model")
    parser.add_argument("--cycles", type=Path, default=None,
                        help="with --model: a `sim/net.py --json` summary of the accelerator's "
                             "measured cycles per image, for images/s at Fmax")
    return parser


def parse_args(argv=None):
    """A `BuildConfig` from the command line (ValueError on bad values)."""
    args = make_parser().parse_args(argv)
    if args.cols is None:
        target = TARGETS.get(args.target)
        one_column = args.model is not None and target is not None and target.family == "ice40"
        args.cols = 1 if one_column else BuildConfig.cols
    return BuildConfig(master_bits=args.bits, rows=args.rows, cols=args.cols, terms=args.terms,
                       acc_bits=args.acc_bits, candidates=args.candidates,
                       target=args.target, out=args.out, seeds=args.seeds,
                       place_route=args.place_route, dsp=args.dsp, model=args.model,
                       dataset=args.dataset, mix_images=args.mix_images, blocks=args.blocks,
                       cycles=args.cycles)
