"""The SoC around the accelerator: a soft RISC-V CPU, firmware ROM and RAM, a UART and the
system controller on one Wishbone bus (docs/firmware.md)."""

from .cpu import CPU_CLASSES, CpuMissing, make_cpu
from .memory_map import REGIONS
from .soc import SoC, firmware_words

__all__ = ["SoC", "firmware_words", "CPU_CLASSES", "CpuMissing", "make_cpu", "REGIONS"]
