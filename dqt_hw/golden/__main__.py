"""`python -m dqt_hw.golden`: measured facts of the nesting rule over every master code.

For each nested width b: how many unsigned master codes round differently under round half to
even (`torch.round`, `np.round`) than under the rule's round half up, and how many saturate.
"""

import argparse
import sys

import numpy as np

from .codes import check_master_bits, code_range, nest


def pitfall_table(master_bits):
    """Markdown rows (b, s, half-to-even disagreements, saturating codes) for unsigned codes."""
    lo, hi = code_range(master_bits, signed=False)
    codes = np.arange(lo, hi + 1)
    total = len(codes)
    rows = ["| b | s | round half to even differs | codes that saturate |", "|---|---|---|---|"]
    for bits in range(master_bits - 1, 1, -1):
        shift = master_bits - bits
        top = (1 << bits) - 1
        nested = nest(codes, master_bits=master_bits, bits=bits, signed=False)
        half_even = np.clip(np.round(codes / 2 ** shift), 0, top).astype(np.int64)
        rounded = (codes >> shift) + ((codes >> (shift - 1)) & 1)
        rows.append(f"| {bits} | {shift} | {int((nested != half_even).sum())} of {total} | "
                    f"{int((rounded > top).sum())} of {total} |")
    return "\n".join(rows)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m dqt_hw.golden", description=__doc__)
    parser.add_argument("--master-bits", type=int, default=8, help="master width n (default 8)")
    args = parser.parse_args(argv)
    try:
        master_bits = check_master_bits(args.master_bits)
    except (TypeError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(pitfall_table(master_bits))
    return 0


if __name__ == "__main__":
    sys.exit(main())
