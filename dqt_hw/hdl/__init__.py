"""Amaranth 0.5 compute blocks for nested-integer inference (docs/hardware.md).

Each block is a `wiring.Component` in its own module; `layouts` holds the packed port layouts
shared with the simulator tests and the cocotb benches; `rtl` lists the reference
configurations written to rtl/ by `python -m dqt_hw.hdl`.
"""

from .dequant_requant import DequantRequant, dequant_requant_reference, float32_bits
from .mac_array import MacArray
from .nest_unit import NestUnit
from .pe import ProcessingElement, mode_bits
from .requantizer import Requantizer
from .residual_adder import ResidualAdder

__all__ = ["NestUnit", "ProcessingElement", "mode_bits", "MacArray", "Requantizer",
           "ResidualAdder", "DequantRequant", "dequant_requant_reference", "float32_bits"]
