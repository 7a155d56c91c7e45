"""Soft RISC-V CPUs (RV32I) from PyPI's `pythondata-cpu-*` packages, wrapped with `Instance`
behind one signature: a Wishbone classic master `bus` (30-bit word addresses) and a `reset`
input. `verilog_files()` lists the Verilog sources a simulator or synthesis run must read.

- `PicoRV32` (pythondata-cpu-picorv32, `picorv32_wb`): one bus, multi-cycle (about 4 cycles per
  instruction plus the bus), small.
- `VexRiscv` (pythondata-cpu-vexriscv, the `Min` build LiteX uses): a 5-stage pipeline with
  instruction and data buses, merged here by an `Arbiter`; `VexRiscvLite` adds a 2 KiB
  instruction cache.
- `Serv` (pythondata-cpu-serv, `serv_rf_top`): bit-serial, the smallest, about 32 cycles per
  instruction; its register file sits in a RAM.

docs/firmware.md gives the measured area and speed that chose the SoC's default.
"""

from pathlib import Path

from amaranth.hdl import ClockSignal, Const, Instance, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .wishbone import Arbiter, bus_signature

__all__ = ["CPU_CLASSES", "DEFAULT_CPU", "cpu_class", "make_cpu", "PicoRV32", "VexRiscv", "VexRiscvLite", "Serv",
           "CpuMissing"]


class CpuMissing(RuntimeError):
    """The pythondata package with a CPU's Verilog is not installed."""


def _data_location(module, package):
    try:
        imported = __import__(module)
    except ImportError:
        raise CpuMissing(f"the CPU's Verilog is not installed: pip install {package}") from None
    return Path(imported.data_location)


class _Cpu(wiring.Component):
    """A CPU: Wishbone master `bus`, active-high `reset` (synchronous)."""

    name = None

    def __init__(self):
        super().__init__({"bus": Out(bus_signature(30)), "reset": In(1)})

    @classmethod
    def verilog_files(cls):
        raise NotImplementedError


class PicoRV32(_Cpu):
    name = "picorv32"
    PARAMETERS = dict(ENABLE_COUNTERS=0, ENABLE_COUNTERS64=0, ENABLE_REGS_16_31=1,
                      ENABLE_REGS_DUALPORT=1, TWO_STAGE_SHIFT=1, BARREL_SHIFTER=0,
                      COMPRESSED_ISA=0, CATCH_MISALIGN=1, CATCH_ILLINSN=1, ENABLE_PCPI=0,
                      ENABLE_MUL=0, ENABLE_DIV=0, ENABLE_IRQ=0, PROGADDR_RESET=0)

    @classmethod
    def verilog_files(cls):
        return [_data_location("pythondata_cpu_picorv32", "pythondata-cpu-picorv32")
                / "picorv32.v"]

    def elaborate(self, platform):
        m = Module()
        bus = self.bus
        address = Signal(32)
        m.d.comb += bus.adr.eq(address[2:])
        m.submodules.core = Instance(
            "picorv32_wb",
            **{f"p_{k}": Const(v, 32) if k == "PROGADDR_RESET" else v
               for k, v in self.PARAMETERS.items()},
            i_wb_clk_i=ClockSignal(), i_wb_rst_i=self.reset,
            o_wbm_adr_o=address, o_wbm_dat_o=bus.dat_w, i_wbm_dat_i=bus.dat_r,
            o_wbm_we_o=bus.we, o_wbm_sel_o=bus.sel, o_wbm_stb_o=bus.stb,
            i_wbm_ack_i=bus.ack, o_wbm_cyc_o=bus.cyc,
            i_pcpi_wr=0, i_pcpi_rd=Const(0, 32), i_pcpi_wait=0, i_pcpi_ready=0,
            i_irq=Const(0, 32))
        return m


class VexRiscv(_Cpu):
    name = "vexriscv"
    BUILD = "Min"

    @classmethod
    def verilog_files(cls):
        return [_data_location("pythondata_cpu_vexriscv", "pythondata-cpu-vexriscv")
                / f"VexRiscv_{cls.BUILD}.v"]

    def elaborate(self, platform):
        m = Module()
        m.submodules.arbiter = arbiter = Arbiter(2)
        wiring.connect(m, arbiter.bus, wiring.flipped(self.bus))
        ports = {}
        for prefix, master in (("iBusWishbone", arbiter.m0), ("dBusWishbone", arbiter.m1)):
            ports.update({
                f"o_{prefix}_CYC": master.cyc, f"o_{prefix}_STB": master.stb,
                f"i_{prefix}_ACK": master.ack, f"o_{prefix}_WE": master.we,
                f"o_{prefix}_ADR": master.adr, f"i_{prefix}_DAT_MISO": master.dat_r,
                f"o_{prefix}_DAT_MOSI": master.dat_w, f"o_{prefix}_SEL": master.sel,
                f"i_{prefix}_ERR": 0,
            })
        m.submodules.core = Instance(
            "VexRiscv", i_clk=ClockSignal(), i_reset=self.reset,
            i_externalResetVector=Const(0, 32), i_timerInterrupt=0, i_softwareInterrupt=0,
            i_externalInterruptArray=Const(0, 32), **ports)
        return m


class VexRiscvLite(VexRiscv):
    """VexRiscv's `Lite` build: `Min` plus a 2 KiB instruction cache (data accesses stay
    uncached, so the accelerator's registers need no cache rules)."""
    name = "vexriscv-lite"
    BUILD = "Lite"


class Serv(_Cpu):
    name = "serv"

    @classmethod
    def verilog_files(cls):
        rtl = _data_location("pythondata_cpu_serv", "pythondata-cpu-serv") / "rtl"
        return sorted(p for p in rtl.glob("serv_*.v") if p.name != "serv_synth_wrapper.v")

    def elaborate(self, platform):
        m = Module()
        m.submodules.arbiter = arbiter = Arbiter(2)
        wiring.connect(m, arbiter.bus, wiring.flipped(self.bus))
        ibus, dbus = arbiter.m0, arbiter.m1
        i_address, d_address = Signal(32), Signal(32)
        m.d.comb += [ibus.adr.eq(i_address[2:]), ibus.stb.eq(ibus.cyc), ibus.sel.eq(0b1111),
                     dbus.adr.eq(d_address[2:]), dbus.stb.eq(dbus.cyc)]
        m.submodules.core = Instance(
            "serv_rf_top", p_RESET_PC=Const(0, 32), p_WITH_CSR=0,
            i_clk=ClockSignal(), i_i_rst=self.reset, i_i_timer_irq=0,
            o_o_ibus_adr=i_address, o_o_ibus_cyc=ibus.cyc, i_i_ibus_rdt=ibus.dat_r,
            i_i_ibus_ack=ibus.ack,
            o_o_dbus_adr=d_address, o_o_dbus_dat=dbus.dat_w, o_o_dbus_sel=dbus.sel,
            o_o_dbus_we=dbus.we, o_o_dbus_cyc=dbus.cyc, i_i_dbus_rdt=dbus.dat_r,
            i_i_dbus_ack=dbus.ack,
            i_i_ext_rd=Const(0, 32), i_i_ext_ready=0)
        return m


CPU_CLASSES = {cls.name: cls for cls in (PicoRV32, VexRiscv, VexRiscvLite, Serv)}

#: The SoC's CPU: the only one measured under 5 % of the accelerator's cycles outside it per
#: Fashion-MNIST inference (docs/firmware.md, "The SoC").
DEFAULT_CPU = "vexriscv-lite"


def cpu_class(name):
    if name not in CPU_CLASSES:
        raise ValueError(f"`cpu` must be one of {', '.join(CPU_CLASSES)}, not {name!r}")
    return CPU_CLASSES[name]


def make_cpu(name):
    return cpu_class(name)()
