"""Packed data layouts of the compute blocks' ports, defined once (`amaranth.lib.data`).

The Amaranth blocks, their simulator tests, the cocotb benches on the generated Verilog and any
exporter build their packed words from these functions, so a bit position is never written
down twice. In Verilog a layout-shaped port is one flat vector; field `f` of a `StructLayout`
occupies bits [offset, offset + width) where `layout["f"]` gives offset and width, and element
i of an `ArrayLayout` occupies [i * elem_width, (i + 1) * elem_width). To pack values in
Python use `layout.const({...}).as_value().value`; to unpack use `layout.from_bits(raw)` (see
rtl/README.md).
"""

from amaranth.hdl import signed, unsigned
from amaranth.lib import data

from ..golden import MIN_BITS

__all__ = ["SHIFT_BITS", "bits_shape", "code_shape", "lanes_layout", "operands_layout",
           "results_layout", "requantizer_input_layout", "residual_operands_layout"]

#: Width of the run-time right-shift amounts r (requantizer, residual adder): 0..63.
SHIFT_BITS = 6


def bits_shape(master_bits):
    """Shape of a run-time bit-width port: b in [MIN_BITS, n] (4 bits for n = 8)."""
    return range(MIN_BITS, master_bits + 1)


def code_shape(master_bits, signed_codes):
    """An n-bit code: unsigned (activations) or two's complement (weights)."""
    return signed(master_bits) if signed_codes else unsigned(master_bits)


def lanes_layout(master_bits, lanes, signed_codes):
    """`lanes` n-bit codes side by side; lane i is bits [i*n, (i+1)*n)."""
    return data.ArrayLayout(code_shape(master_bits, signed_codes), lanes)


def operands_layout(rows, cols, lanes, master_bits):
    """One beat of the MAC array's operand stream.

    activations[r][l]: unsigned master code of lane l for array row r;
    weights[c][l]: signed narrow-range master code of lane l for array column c;
    last: this beat ends the dot products (the accumulators are emitted after it).
    """
    return data.StructLayout({
        "activations": data.ArrayLayout(lanes_layout(master_bits, lanes, False), rows),
        "weights": data.ArrayLayout(lanes_layout(master_bits, lanes, True), cols),
        "last": 1,
    })


def results_layout(rows, cols, acc_width):
    """One beat of the MAC array's result stream: acc[r][c], signed `acc_width` bits each."""
    return data.ArrayLayout(data.ArrayLayout(signed(acc_width), cols), rows)


def requantizer_input_layout(acc_width, multiplier_bits):
    """One accumulator with its output channel's constants (M, r, bias), as the requantizer
    takes them: acc and bias signed `acc_width`, multiplier unsigned, shift unsigned."""
    return data.StructLayout({
        "acc": signed(acc_width),
        "multiplier": unsigned(multiplier_bits),
        "shift": unsigned(SHIFT_BITS),
        "bias": signed(acc_width),
    })


def residual_operands_layout(master_bits, signed_codes):
    """The two codes q1, q2 joined by the residual adder."""
    shape = code_shape(master_bits, signed_codes)
    return data.StructLayout({"q1": shape, "q2": shape})
