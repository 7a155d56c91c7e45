"""An 8N1 UART: a receiver and a transmitter with byte streams (`amaranth.lib.stream`).

`divisor` is clock cycles per bit (clock frequency / baud rate, rounded; at least 4). The
receiver synchronizes the pin with two flip-flops, waits half a bit after the start edge,
checks the start bit, samples eight data bits (least significant first) and the stop bit, each
one bit time apart, in the middle of the bit; so the baud rates of the two ends may differ by
about 1 / (2 * 10) = 5 % minus a cycle of quantisation.
"""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..hdl.arith import check_int_at_least

__all__ = ["UARTReceiver", "UARTTransmitter", "uart_divisor"]

_MIN_DIVISOR = 4


def uart_divisor(clock_hz, baud):
    """Cycles per bit for `baud` at `clock_hz`; ValueError when the error exceeds 2 % or the
    clock is too slow (fewer than 4 cycles per bit)."""
    divisor = round(clock_hz / baud)
    if divisor < _MIN_DIVISOR:
        raise ValueError(f"a {baud} baud UART needs a clock of at least {_MIN_DIVISOR * baud} "
                         f"Hz, not {clock_hz:.0f}")
    error = abs(clock_hz / divisor - baud) / baud
    if error > 0.02:
        raise ValueError(f"{baud} baud is {100 * error:.1f} % off at {clock_hz:.0f} Hz "
                         f"(divisor {divisor}); choose a baud rate within 2 %")
    return divisor


class UARTReceiver(wiring.Component):
    """Bytes from the `rx` pin to `output` (a stream; a byte stays valid until taken or until
    the next byte's first data bit arrives, at least two bit times after its stop bit: the byte
    is its shift register, no copy).

    `framing_error` pulses for a byte without its stop bit (the byte is dropped); `overrun`
    pulses when the next byte's first data bit arrives while a byte is still untaken (that one
    is lost).
    """

    rx: In(1, init=1)
    output: Out(stream.Signature(8))
    framing_error: Out(1)
    overrun: Out(1)

    def __init__(self, divisor):
        check_int_at_least("divisor", divisor, _MIN_DIVISOR, f"an integer >= {_MIN_DIVISOR}")
        self.divisor = divisor
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        pin = Signal(2, init=0b11)
        m.d.sync += pin.eq(Cat(self.rx, pin[0]))           # two-flip-flop synchronizer
        rx = pin[1]
        timer = Signal(range(self.divisor))
        bits = Signal(range(9))
        shift = self.output.payload
        with m.If(self.output.ready):
            m.d.sync += self.output.valid.eq(0)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(~rx):
                    m.d.sync += timer.eq(self.divisor // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                with m.If(timer == 0):
                    with m.If(rx):                          # a glitch, not a start bit
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += [timer.eq(self.divisor - 1), bits.eq(0)]
                        m.next = "DATA"
                with m.Else():
                    m.d.sync += timer.eq(timer - 1)
            with m.State("DATA"):
                with m.If(timer == 0):
                    m.d.sync += [timer.eq(self.divisor - 1), shift.eq(Cat(shift[1:], rx)),
                                 bits.eq(bits + 1), self.output.valid.eq(0)]
                    m.d.comb += self.overrun.eq(self.output.valid & ~self.output.ready)
                    with m.If(bits == 7):
                        m.next = "STOP"
                with m.Else():
                    m.d.sync += timer.eq(timer - 1)
            with m.State("STOP"):
                with m.If(timer == 0):
                    with m.If(rx):
                        m.d.sync += self.output.valid.eq(1)
                        m.next = "IDLE"
                    with m.Else():
                        m.d.comb += self.framing_error.eq(1)
                        m.next = "BREAK"
                with m.Else():
                    m.d.sync += timer.eq(timer - 1)
            with m.State("BREAK"):                          # wait for the line to go idle
                with m.If(rx):
                    m.next = "IDLE"
        return m


class UARTTransmitter(wiring.Component):
    """Bytes from `input` (a stream) to the `tx` pin: start bit, 8 data bits, stop bit.
    `input.ready` is high while the transmitter is idle; a byte takes 10 bit times."""

    input: In(stream.Signature(8))
    tx: Out(1, init=1)

    def __init__(self, divisor):
        check_int_at_least("divisor", divisor, _MIN_DIVISOR, f"an integer >= {_MIN_DIVISOR}")
        self.divisor = divisor
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        timer = Signal(range(self.divisor))
        shift = Signal(10, init=0x3FF)
        left = Signal(range(11))
        m.d.comb += [self.input.ready.eq(left == 0), self.tx.eq(shift[0])]
        with m.If(self.input.valid & self.input.ready):
            m.d.sync += [shift.eq(Cat(0, self.input.payload, 1)), left.eq(10),
                         timer.eq(self.divisor - 1)]
        with m.Elif(left != 0):
            with m.If(timer == 0):
                m.d.sync += [shift.eq(Cat(shift[1:], 1)), left.eq(left - 1),
                             timer.eq(self.divisor - 1)]
            with m.Else():
                m.d.sync += timer.eq(timer - 1)
        return m
