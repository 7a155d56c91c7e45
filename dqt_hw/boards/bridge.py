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

        reading = Signal()                 # the frame is a read
        writing = Signal()                 # ... a write (neither: an identify)
        left = Signal(8)                   # words after the current one
        address = Signal(2 + self.address_width)      # the bits the bus uses, of a byte address
        data = Signal(32)                  # bytes shift through it, least significant first
        index = Signal(4)                  # byte of the current field
        crc = Signal(8)                    # of the frame's bytes so far, then of the answer's;
                                           # 0 between frames
        flags = Signal(6)
        events = Signal(6)                 # flags raised this cycle
        # Silence in a frame and the wait for a bus acknowledge never overlap: one counter.
        timer = Signal(range(max(self.timeout_cycles, protocol.BUS_TIMEOUT_CYCLES) + 1))
        byte = rx.payload
        got = rx.valid & rx.ready
        sent = tx.valid & tx.ready
        shifted = Cat(data[8:], byte)      # receiving: the byte comes in; sending: data[:8] out

        m.d.comb += [
            events[2].eq(receiver.framing_error), events[4].eq(receiver.overrun),
            self.activity.eq(got | sent),
            bus.sel.eq(0xF), bus.adr.eq(address[2:]), bus.dat_w.eq(data),
        ]
        m.d.sync += flags.eq(flags | events)
        # A frame followed by its CRC leaves the CRC at 0 (no reflection, no final XOR): the
        # check and the answer's start need no other value.
        with m.If(got | sent):
            m.d.sync += crc.eq(crc8_step(crc, Mux(sent, tx.payload, byte)))
        with m.If(got):
            m.d.sync += timer.eq(0)

        def send(value, then):
            """Offer `value` to the transmitter; go to `then` once it is taken."""
            m.d.comb += [tx.valid.eq(1), tx.payload.eq(value)]
            with m.If(tx.ready):
                m.next = then

        def receiving():
            """A frame is half-way: count the silence, drop the frame when it lasts too long."""
            m.d.comb += rx.ready.eq(1)
            with m.If(~got):
                m.d.sync += timer.eq(timer + 1)
                with m.If(timer == self.timeout_cycles):
                    m.d.comb += events[3].eq(1)
                    m.d.sync += crc.eq(0)
                    m.next = "IDLE"

        def bus_access(write, then):
            m.d.comb += [bus.cyc.eq(1), bus.stb.eq(1), bus.we.eq(write)]
            m.d.sync += timer.eq(timer + 1)
            with m.If(bus.ack | (timer == protocol.BUS_TIMEOUT_CYCLES)):
                m.d.sync += timer.eq(0)
                with m.If(~bus.ack):
                    m.d.comb += events[5].eq(1)
                if not write:
                    m.d.sync += data.eq(Mux(bus.ack, bus.dat_r, 0))
                then()

        identity = [protocol.REPLY_IDENTIFY, *protocol.BRIDGE_MAGIC, protocol.PROTOCOL_VERSION,
                    *self.clock_hz.to_bytes(4, "little")]
        identity_bytes = Array(Const(b, 8) for b in identity)

        with m.FSM(name="bridge"):
            with m.State("IDLE"):
                m.d.comb += rx.ready.eq(1)
                m.d.sync += index.eq(0)
                with m.If(got):
                    m.d.sync += [writing.eq(byte == protocol.CMD_WRITE),
                                 reading.eq(byte == protocol.CMD_READ)]
                    with m.If((byte == protocol.CMD_WRITE) | (byte == protocol.CMD_READ)):
                        m.next = "COUNT"
                    with m.Elif(byte == protocol.CMD_IDENTIFY):
                        m.next = "CHECK"
                    with m.Else():
                        m.d.comb += events[1].eq(1)
                        m.d.sync += crc.eq(0)
            with m.State("COUNT"):
                receiving()
                with m.If(got):
                    m.d.sync += left.eq(byte)
                    m.next = "ADDRESS"
            with m.State("ADDRESS"):
                receiving()
                with m.If(got):
                    m.d.sync += [data.eq(shifted), index.eq(index + 1)]
                    with m.If(index == 3):
                        m.d.sync += [address.eq(shifted), index.eq(0)]   # higher bits dropped
                        m.next = "WRITE_DATA"
                        with m.If(reading):
                            m.next = "CHECK"
            with m.State("WRITE_DATA"):
                receiving()
                with m.If(got):
                    m.d.sync += [data.eq(shifted), index.eq(index + 1)]
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
                    good = crc8_step(crc, byte) == 0
                    with m.If(writing):
                        with m.If(~good):
                            m.d.comb += events[0].eq(1)
                        m.d.sync += crc.eq(0)
                        m.next = "IDLE"
                    with m.Elif(~good):
                        m.d.sync += crc.eq(0)
                        m.next = "REPLY_ERROR"
                    with m.Elif(reading):
                        m.next = "REPLY_READ"
                    with m.Else():
                        m.next = "IDENTITY"
            with m.State("REPLY_ERROR"):
                send(protocol.REPLY_ERROR, "FLAGS")
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
                    m.d.sync += [data.eq(shifted), index.eq(index + 1)]
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
                send(crc, "IDLE")
                with m.If(tx.ready):
                    m.d.sync += crc.eq(0)
        return m
