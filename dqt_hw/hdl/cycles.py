"""python -m dqt_hw.hdl.cycles: measure, in the Amaranth simulator, the cycles each block takes.

Streams one K-term dot product per bit-width through the scalable and the fixed MAC array
(operands always valid, results always ready) and counts clock edges; measures the latency of
the nest unit, requantizer, residual adder and dequantize/requantize unit. Prints a Markdown
report (the source of the "Compute blocks (RTL)" section of docs/results.md).
"""

import argparse
import sys
import time

import numpy as np

from ..golden import code_range, linear, nest
from .arith import check_positive_int
from .dequant_requant import DequantRequant, float32_bits
from .mac_array import MacArray
from .nest_unit import NestUnit
from .requantizer import Requantizer
from .residual_adder import ResidualAdder
from .sim import latency_of, simulate

__all__ = ["dot_product_cycles", "block_latency", "main"]


def dot_product_cycles(array, bits, activations, weights):
    """Clock edges from accepting the first beat of one dot product to `results.valid`
    (beats + latency - 1 at full throughput), and the accumulators the array returned."""
    beats = array.operand_beats(bits, activations, weights)
    measured = []

    async def testbench(ctx):
        ctx.set(array.bits, bits)
        ctx.set(array.results.ready, 0)
        count = 0
        for beat in beats:
            ctx.set(array.operands.payload, beat)
            ctx.set(array.operands.valid, 1)
            await ctx.tick().until(array.operands.ready)
            count += 1
        ctx.set(array.operands.valid, 0)
        while not ctx.get(array.results.valid):
            await ctx.tick()
            count += 1
        payload = ctx.get(array.results.payload)
        measured.append((count, [[payload[r][c] for c in range(array.cols)]
                                 for r in range(array.rows)]))

    simulate(array, testbench)
    return measured[0]


def block_latency(block):
    """Simulated latency in cycles: for the combinational nest unit, 0 after checking that
    `nested` follows `master` with no clock edge; for a stream block, `sim.latency_of`."""
    measured = []

    async def combinational(ctx):
        ctx.set(block.bits, 4)
        ctx.set(block.master, 200)
        measured.append(0 if ctx.get(block.nested) == 13 else None)   # 200/16 + 1/2 -> 13

    async def pipelined(ctx):
        if isinstance(block, ResidualAdder):
            ctx.set(block.k1, 1)
            payload = {"q1": 1, "q2": 1}
        elif isinstance(block, Requantizer):
            ctx.set(block.bits, 8)
            payload = {"acc": 1, "multiplier": 1, "shift": 0, "bias": 0}
        else:
            ctx.set(block.bits, 8)
            ctx.set(block.scale, float32_bits(1.0))
            payload = 1
        measured.append(await latency_of(ctx, block.input, block.output, payload))

    if isinstance(block, NestUnit):
        simulate(block, combinational, clocked=False)
    else:
        simulate(block, pipelined)
    return measured[0]


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m dqt_hw.hdl.cycles",
        description="Measure cycles per bit-width mode of the MAC array and the latency of "
                    "each compute block in the Amaranth simulator; print a Markdown report.")
    parser.add_argument("--rows", type=int, default=2, help="array rows (default 2)")
    parser.add_argument("--cols", type=int, default=2, help="array columns (default 2)")
    parser.add_argument("--terms", type=int, default=576,
                        help="dot product length K (default 576 = 3x3x64)")
    parser.add_argument("--seed", type=int, default=2026, help="operand seed (default 2026)")
    args = parser.parse_args(argv)
    try:
        # Checked before any component exists: a constructor that raises would leave an
        # unused-elaboratable warning behind.
        for name in ("rows", "cols", "terms"):
            check_positive_int(name, getattr(args, name))
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    arrays = {scalable: MacArray(rows=args.rows, cols=args.cols, master_bits=8,
                                 max_terms=args.terms, scalable=scalable)
              for scalable in (True, False)}
    rng = np.random.default_rng(args.seed)
    lo, hi = code_range(8, signed=True)
    x = rng.integers(0, 256, (args.rows, args.terms))
    w = rng.integers(lo, hi + 1, (args.cols, args.terms))
    started = time.time()
    latency = arrays[True].latency
    lines = [f"MAC array {args.rows}x{args.cols}, n = 8, one K = {args.terms} dot product per "
             f"mode (seed {args.seed}), operands always valid, results always ready. Cycles "
             f"are beats + latency - 1 (latency {latency}); MACs/cycle/PE count the beats "
             f"(K / beats, the rate of back-to-back dot products):", "",
             "| b | mode | cycles scalable | cycles fixed | MACs/cycle/PE scalable | "
             "MACs/cycle/PE fixed | speed-up |", "|---|---|---|---|---|---|---|"]
    for bits in (8, 7, 6, 5, 4, 3, 2):
        cycles = {}
        for scalable, array in arrays.items():
            count, got = dot_product_cycles(array, bits, x, w)
            want = linear(nest(x, master_bits=8, bits=bits, signed=False),
                          nest(w, master_bits=8, bits=bits, signed=True))
            if got != want.tolist():
                print(f"error: b={bits} scalable={scalable}: accumulators differ from the "
                      f"golden model", file=sys.stderr)
                return 1
            cycles[scalable] = count
        mode = 1 << (bits - 1).bit_length()
        beats = {scalable: count - (arrays[scalable].latency - 1)
                 for scalable, count in cycles.items()}
        lines.append(f"| {bits} | {mode}x{mode} | {cycles[True]} | {cycles[False]} | "
                     f"{args.terms / beats[True]:.2f} | {args.terms / beats[False]:.2f} | "
                     f"{beats[False] / beats[True]:.2f}x |")
    blocks = {"NestUnit": NestUnit(master_bits=8, signed=False),
              "Requantizer": Requantizer(master_bits=8, max_terms=args.terms),
              "ResidualAdder": ResidualAdder(master_bits=8),
              "DequantRequant": DequantRequant(master_bits=8, signed=False)}
    lines += ["", "Latency (cycles from accepting an input to its output valid; all blocks "
              "accept one input per cycle):", "", "| block | latency |", "|---|---|"]
    lines += [f"| {name} | {block_latency(block)} |" for name, block in blocks.items()]
    print("\n".join(lines))
    print(f"\n(simulated in {time.time() - started:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
