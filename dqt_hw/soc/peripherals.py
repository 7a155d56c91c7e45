"""The SoC's small Wishbone slaves: firmware memory (ROM or RAM), a UART and the system
controller (cycle counter, simulation exit). Register offsets come from `memory_map`."""

from amaranth.hdl import Cat, Const, Module, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .memory_map import SYSTEM_REGISTERS, UART_REGISTERS
from .wishbone import bus_signature

__all__ = ["WishboneMemory", "UART", "SystemController"]


class WishboneMemory(wiring.Component):
    """`depth` 32-bit words with initial contents `init`; writable (RAM, byte selects honoured)
    or not (ROM: writes are acknowledged and dropped). Two cycles per access."""

    def __init__(self, depth, init=(), *, writable):
        if not isinstance(depth, int) or depth < 1 or depth & (depth - 1):
            raise ValueError(f"`depth` must be a power of two, not {depth!r}")
        if len(init) > depth:
            raise ValueError(f"`init` has {len(init)} words but the memory holds {depth}")
        self.depth, self.init, self.writable = depth, list(init), writable
        super().__init__({"bus": In(bus_signature((depth - 1).bit_length() or 1))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.memory = memory = Memory(shape=unsigned(32), depth=self.depth,
                                              init=self.init)
        bus = self.bus
        read = memory.read_port()
        m.d.comb += [read.addr.eq(bus.adr), bus.dat_r.eq(read.data)]
        if self.writable:
            write = memory.write_port(granularity=8)
            m.d.comb += [write.addr.eq(bus.adr), write.data.eq(bus.dat_w)]
            with m.If(bus.cyc & bus.stb & bus.we & ~bus.ack):
                m.d.comb += write.en.eq(bus.sel)
        m.d.sync += bus.ack.eq(bus.cyc & bus.stb & ~bus.ack)
        return m


class UART(wiring.Component):
    """8N1 serial port. `divisor` is the reset value of the DIVISOR register (clock cycles per
    bit). A write to DATA waits (holds `ack`) until the transmitter is free, so firmware just
    writes; a read of DATA returns the received byte in bits 7..0 with bit 8 set when one was
    waiting (and takes it). STATUS: bit 0 transmitter busy, bit 1 a byte received."""

    def __init__(self, divisor):
        if not isinstance(divisor, int) or not 4 <= divisor < 1 << 16:
            raise ValueError(f"`divisor` must be an integer between 4 and 65535, "
                             f"not {divisor!r}")
        self.divisor = divisor
        super().__init__({"bus": In(bus_signature(2)), "tx": Out(1, init=1), "rx": In(1)})

    def elaborate(self, platform):
        m = Module()
        bus = self.bus
        divisor = Signal(16, init=self.divisor)
        # Transmitter: a start bit, 8 data bits, a stop bit, then one more step (idle level)
        # that ends when the stop bit has lasted a bit time.
        tx_shift = Signal(11)
        tx_bits = Signal(range(12))
        tx_count = Signal(16)
        tx_busy = tx_bits != 0
        with m.If(tx_busy):
            with m.If(tx_count == 0):
                m.d.sync += [self.tx.eq(tx_shift[0]), tx_shift.eq(tx_shift >> 1),
                             tx_bits.eq(tx_bits - 1), tx_count.eq(divisor - 1)]
            with m.Else():
                m.d.sync += tx_count.eq(tx_count - 1)
        # Receiver: sample each bit in its middle.
        rx_sync = Signal(2, init=0b11)
        m.d.sync += rx_sync.eq(Cat(self.rx, rx_sync[0]))
        rx_line = rx_sync[1]
        rx_shift, rx_data = Signal(8), Signal(8)
        rx_bits = Signal(range(11))
        rx_count = Signal(16)
        rx_valid = Signal()
        with m.If(rx_bits == 0):
            with m.If(~rx_line):
                m.d.sync += [rx_bits.eq(10), rx_count.eq(divisor >> 1)]
        with m.Elif(rx_count == 0):
            m.d.sync += [rx_count.eq(divisor - 1), rx_bits.eq(rx_bits - 1)]
            with m.If(rx_bits == 10):
                with m.If(rx_line):                  # a glitch, not a start bit
                    m.d.sync += rx_bits.eq(0)
            with m.Elif(rx_bits > 1):
                m.d.sync += rx_shift.eq(Cat(rx_shift[1:], rx_line))
            with m.Elif(rx_line):                    # a valid stop bit
                m.d.sync += [rx_data.eq(rx_shift), rx_valid.eq(1)]
        with m.Else():
            m.d.sync += rx_count.eq(rx_count - 1)

        access = bus.cyc & bus.stb & ~bus.ack
        m.d.sync += bus.ack.eq(0)
        with m.If(access):
            with m.Switch(bus.adr):
                with m.Case(UART_REGISTERS["DATA"] // 4):
                    with m.If(bus.we):
                        with m.If(~tx_busy):
                            m.d.sync += [tx_shift.eq(Cat(Const(0, 1), bus.dat_w[:8], Const(0b11, 2))),
                                         tx_bits.eq(11), tx_count.eq(0), bus.ack.eq(1)]
                    with m.Else():
                        m.d.sync += [bus.dat_r.eq(Cat(rx_data, rx_valid)), rx_valid.eq(0),
                                     bus.ack.eq(1)]
                with m.Case(UART_REGISTERS["STATUS"] // 4):
                    m.d.sync += [bus.dat_r.eq(Cat(tx_busy, rx_valid)), bus.ack.eq(1)]
                with m.Case(UART_REGISTERS["DIVISOR"] // 4):
                    with m.If(bus.we):
                        m.d.sync += divisor.eq(bus.dat_w)
                    m.d.sync += [bus.dat_r.eq(divisor), bus.ack.eq(1)]
                with m.Default():
                    m.d.sync += [bus.dat_r.eq(0), bus.ack.eq(1)]
        return m


class SystemController(wiring.Component):
    """A free-running 64-bit cycle counter (CYCLES reads the low word and latches the high
    word for CYCLES_HI), CLOCK_HZ (the clock frequency the SoC was built for) and EXIT: a
    write raises `halt` with `exit_code` (a simulation ends there; a board shows it)."""

    def __init__(self, clock_hz):
        if not isinstance(clock_hz, int) or clock_hz < 1:
            raise ValueError(f"`clock_hz` must be a positive integer, not {clock_hz!r}")
        self.clock_hz = clock_hz
        super().__init__({"bus": In(bus_signature(2)), "halt": Out(1), "exit_code": Out(8)})

    def elaborate(self, platform):
        m = Module()
        bus = self.bus
        cycles = Signal(64)
        high = Signal(32)
        m.d.sync += cycles.eq(cycles + 1)
        m.d.sync += bus.ack.eq(bus.cyc & bus.stb & ~bus.ack)
        with m.If(bus.cyc & bus.stb & ~bus.ack):
            with m.Switch(bus.adr):
                with m.Case(SYSTEM_REGISTERS["CYCLES"] // 4):
                    m.d.sync += [bus.dat_r.eq(cycles[:32]), high.eq(cycles[32:])]
                with m.Case(SYSTEM_REGISTERS["CYCLES_HI"] // 4):
                    m.d.sync += bus.dat_r.eq(high)
                with m.Case(SYSTEM_REGISTERS["CLOCK_HZ"] // 4):
                    m.d.sync += bus.dat_r.eq(self.clock_hz)
                with m.Case(SYSTEM_REGISTERS["EXIT"] // 4):
                    m.d.sync += bus.dat_r.eq(0)
                    with m.If(bus.we):
                        m.d.sync += [self.halt.eq(1), self.exit_code.eq(bus.dat_w)]
        return m
