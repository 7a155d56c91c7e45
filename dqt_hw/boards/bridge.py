"""The UART-to-Wishbone bridge: the host link's frames (`dqt_hw.boards.protocol`) become
Wishbone classic accesses.

`UARTBridge(clock_hz=, baud=)` has the UART pins (`rx`, `tx`), a Wishbone classic master
(`bus`, 32-bit data, word addresses of `address_width` bits: the byte address of a frame
shifted right by 2, higher bits dropped) and an `activity` pulse per byte for a link LED. It
holds no buffer: a write frame's word goes to the bus as soon as its fourth byte is in, a read
frame's words are read one by one while the answer is sent. The bus must acknowledge within
one byte time (10 bit times) for writes at the line rate, and within BUS_TIMEOUT_CYCLES at all
(else the access is abandoned, a read answers 0 and FLAGS.BUS is set).
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..hdl.arith import check_int_at_least
from . import protocol
from .uart import UARTReceiver, UARTTransmitter, uart_divisor

__all__ = ["bus_signature", "crc8_step", "UARTBridge"]


def bus_signature(address_width):
    """Wishbone classic (B4, 32-bit data, word addresses) as the master drives it; with
    address_width 18 it is `dqt_hw.hdl.accelerator.wishbone_signature()`."""
    return wiring.Signature({
        "cyc": Out(1), "stb": Out(1), "we": Out(1), "sel": Out(4),
        "adr": Out(address_width), "dat_w": Out(32),
        "dat_r": In(32), "ack": In(1),
    })


def crc8_step(crc, byte):
    """The CRC-8 of `protocol.crc8` after one more byte, as an Amaranth expression: the update
    is linear in crc ^ byte, so each output bit is the XOR of a fixed set of its bits."""
    value = Value.cast(crc) ^ byte
    columns = [protocol.crc8(bytes([1 << i])) for i in range(8)]
    return Cat(*(Cat(*(value[i] for i in range(8) if columns[i] >> j & 1)).xor()
                 for j in range(8)))


class UARTBridge(wiring.Component):
    """See the module docstring. Parameters: `clock_hz` (the clock of the sync domain),
    `baud`, `address_width` (bus word-address bits, default 18: the accelerator's)."""

    def __init__(self, *, clock_hz, baud, address_width=18):
        check_int_at_least("clock_hz", clock_hz, 1, "a positive integer (Hz)")
        check_int_at_least("baud", baud, 1, "a positive integer")
        check_int_at_least("address_width", address_width, 1, "a positive integer")
        if address_width > 30:
            raise ValueError(f"`address_width` must be at most 30 (32-bit byte addresses), "
                             f"not {address_width}")
        self.clock_hz, self.baud, self.address_width = clock_hz, baud, address_width
        self.divisor = uart_divisor(clock_hz, baud)
        #: Cycles of silence after which an unfinished frame is dropped.
        self.timeout_cycles = protocol.TIMEOUT_BYTES * protocol.BITS_PER_BYTE * self.divisor
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1), "activity": Out(1),
                          "bus": Out(bus_signature(address_width))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.receiver = receiver = UARTReceiver(self.divisor)
        m.submodules.transmitter = transmitter = UARTTransmitter(self.divisor)
        m.d.comb += [receiver.rx.eq(self.rx), self.tx.eq(transmitter.tx)]
        rx, tx = receiver.output, transmitter.input
        bus = self.bus

        command = Signal(8)
        left = Signal(8)                   # words after the current one
        address = Signal(2 + self.address_width)      # the bits the bus uses, of a byte address
        data = Signal(32)
        index = Signal(4)                  # byte of the current field
        crc = Signal(8)                    # of the frame's bytes so far
        reply_crc = Signal(8)
        flags = Signal(8)
        events = Signal(8)                 # flags raised this cycle
        silence = Signal(range(self.timeout_cycles + 1))
        bus_wait = Signal(range(protocol.BUS_TIMEOUT_CYCLES + 1))
        byte = rx.payload
        got = rx.valid & rx.ready

        m.d.comb += [
            events[2].eq(receiver.framing_error), events[4].eq(receiver.overrun),
            self.activity.eq(got | (tx.valid & tx.ready)),
            bus.sel.eq(0xF), bus.adr.eq(address[2:2 + self.address_width]),
            bus.dat_w.eq(data),
        ]
        m.d.sync += flags.eq(flags | events)
        with m.If(got):
            m.d.sync += [crc.eq(crc8_step(crc, byte)), silence.eq(0)]
        with m.If(tx.valid & tx.ready):
            m.d.sync += reply_crc.eq(crc8_step(reply_crc, tx.payload))

        def send(value, then):
            """Offer `value` to the transmitter; go to `then` once it is taken."""
            m.d.comb += [tx.valid.eq(1), tx.payload.eq(value)]
            with m.If(tx.ready):
                m.next = then

        def receiving():
            """A frame is half-way: count the silence, drop the frame when it lasts too long."""
            m.d.comb += rx.ready.eq(1)
            with m.If(~got):
                m.d.sync += silence.eq(silence + 1)
                with m.If(silence == self.timeout_cycles):
                    m.d.comb += events[3].eq(1)
                    m.next = "IDLE"

        def bus_access(write, then):
            m.d.comb += [bus.cyc.eq(1), bus.stb.eq(1), bus.we.eq(write)]
            m.d.sync += bus_wait.eq(bus_wait + 1)
            done = bus.ack | (bus_wait == protocol.BUS_TIMEOUT_CYCLES)
            with m.If(done):
                m.d.sync += bus_wait.eq(0)
                with m.If(~bus.ack):
                    m.d.comb += events[5].eq(1)
                if not write:
                    m.d.sync += data.eq(Mux(bus.ack, bus.dat_r, 0))
                then()

        identity = list(protocol.BRIDGE_MAGIC) + [protocol.PROTOCOL_VERSION] + list(
            self.clock_hz.to_bytes(4, "little"))
        identity_bytes = Array(Const(b, 8) for b in identity)

        with m.FSM(name="bridge"):
            with m.State("IDLE"):
                m.d.comb += rx.ready.eq(1)
                m.d.sync += [index.eq(0), reply_crc.eq(0)]
                with m.If(got):
                    m.d.sync += [command.eq(byte), crc.eq(crc8_step(0, byte))]
                    with m.If((byte == protocol.CMD_WRITE) | (byte == protocol.CMD_READ)):
                        m.next = "COUNT"
                    with m.Elif(byte == protocol.CMD_IDENTIFY):
                        m.next = "CHECK"
                    with m.Else():
                        m.d.comb += events[1].eq(1)
            with m.State("COUNT"):
                receiving()
                with m.If(got):
                    m.d.sync += left.eq(byte)
                    m.next = "ADDRESS"
            with m.State("ADDRESS"):
                receiving()
                with m.If(got):
                    m.d.sync += index.eq(index + 1)
                    for at in range(0, len(address), 8):       # higher bytes are dropped
                        with m.If(index == at // 8):
                            m.d.sync += address[at:at + 8].eq(byte)
                    with m.If(index == 3):
                        m.d.sync += index.eq(0)
                        m.next = "WRITE_DATA"
                        with m.If(command == protocol.CMD_READ):
                            m.next = "CHECK"
            with m.State("WRITE_DATA"):
                receiving()
                with m.If(got):
                    m.d.sync += [data.eq(Cat(data[8:], byte)), index.eq(index + 1)]
                    with m.If(index == 3):
                        m.d.sync += index.eq(0)
                        m.next = "WRITE_BUS"
            with m.State("WRITE_BUS"):
                def next_word():
                    m.d.sync += [address.eq(address + 4), left.eq(left - 1)]
                    m.next = "WRITE_DATA"
                    with m.If(left == 0):
                        m.next = "CHECK"
                bus_access(True, next_word)
            with m.State("CHECK"):                   # the frame's CRC byte
                receiving()
                with m.If(got):
                    good = byte == crc
                    with m.If(command == protocol.CMD_WRITE):
                        with m.If(~good):
                            m.d.comb += events[0].eq(1)
                        m.next = "IDLE"
                    with m.Elif(~good):
                        m.next = "REPLY_ERROR"
                    with m.Elif(command == protocol.CMD_READ):
                        m.next = "REPLY_READ"
                    with m.Else():
                        m.next = "REPLY_IDENTIFY"
            with m.State("REPLY_ERROR"):
                send(protocol.REPLY_ERROR, "FLAGS")
            with m.State("REPLY_IDENTIFY"):
                send(protocol.REPLY_IDENTIFY, "IDENTITY")
            with m.State("IDENTITY"):
                send(identity_bytes[index], "IDENTITY")
                with m.If(tx.ready):
                    m.d.sync += index.eq(index + 1)
                    with m.If(index == len(identity) - 1):
                        m.next = "FLAGS"
            with m.State("REPLY_READ"):
                send(protocol.REPLY_READ, "READ_BUS")
            with m.State("READ_BUS"):
                def read_done():
                    m.next = "READ_DATA"
                bus_access(False, read_done)
            with m.State("READ_DATA"):
                send(data[:8], "READ_DATA")
                with m.If(tx.ready):
                    m.d.sync += [data.eq(data >> 8), index.eq(index + 1)]
                    with m.If(index == 3):
                        m.d.sync += [index.eq(0), address.eq(address + 4), left.eq(left - 1)]
                        m.next = "READ_BUS"
                        with m.If(left == 0):
                            m.next = "FLAGS"
            with m.State("FLAGS"):
                send(flags, "CRC")
                with m.If(tx.ready):
                    m.d.sync += flags.eq(events)      # reported: only this cycle's stay
            with m.State("CRC"):
                send(reply_crc, "IDLE")
        return m
