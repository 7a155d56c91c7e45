"""The top level of a board bitstream: clock and reset, the UART bridge, the accelerator with
its model in the memory initialisation, and the status LEDs.

`BoardTop(board, accelerator, clock=plan, baud=...)` is an Elaboratable without ports: it
requests the board's pins from the platform it is built for (an `amaranth-boards` platform, or
the same platform prepared for simulation, see sim/board.py). `status_lights` and
`uart_pins` are the pieces a SoC top (firmware) can reuse.
"""

import dataclasses

from amaranth.hdl import ClockDomain, Elaboratable, Module, Signal
from amaranth.lib import io, wiring

from .bridge import UARTBridge
from .catalog import Board
from .clocks import ClockPlan, ClockReset
from .lights import StatusLights

__all__ = ["BoardTop", "BoardDesign", "board_design", "uart_pins", "status_lights"]


def uart_pins(platform, m):
    """(rx, tx) signals of the board's USB-serial UART 0 (`rx` is the host's transmit line)."""
    uart = platform.request("uart", 0, dir="-")
    m.submodules.uart_rx = rx_buffer = io.Buffer("i", uart.rx)
    m.submodules.uart_tx = tx_buffer = io.Buffer("o", uart.tx)
    rx, tx = Signal(init=1), Signal(init=1)
    m.d.comb += [rx.eq(rx_buffer.i), tx_buffer.o.eq(tx)]
    return rx, tx


def status_lights(platform, m, board, clock_hz, levels):
    """Drive the board's LEDs: `levels` maps roles ("error", "done", "busy", "link") to
    signals; "link" and "alive" are timed by `StatusLights` (dqt_hw/boards/lights.py)."""
    m.submodules.lights = lights = StatusLights(round(clock_hz))
    m.d.comb += lights.activity.eq(levels["link"])
    levels = {**levels, "link": lights.link, "alive": lights.alive}
    for role, (name, number) in board.leds:
        m.submodules[f"led_{role}"] = led = io.Buffer("o", platform.request(name, number,
                                                                            dir="-"))
        m.d.comb += led.o.eq(levels[role])


class BoardTop(Elaboratable):
    """See the module docstring. `accelerator` is a `dqt_hw.hdl.accelerator.Accelerator`
    (usually with a compiled model in its memories); `clock` the `ClockPlan` of the design
    clock; `baud` the UART's rate."""

    def __init__(self, board, accelerator, *, clock, baud):
        if not isinstance(board, Board):
            raise TypeError(f"`board` must be a Board, not {board!r}")
        if not isinstance(clock, ClockPlan):
            raise TypeError(f"`clock` must be a ClockPlan, not {clock!r}")
        self.board, self.accelerator, self.clock, self.baud = board, accelerator, clock, baud
        self.bridge = UARTBridge(clock_hz=round(clock.clock_hz), baud=baud)

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = ClockDomain("sync")
        m.submodules.clocks = ClockReset(self.clock, self.board.oscillator)
        m.submodules.accelerator = accelerator = self.accelerator
        m.submodules.bridge = bridge = self.bridge
        wiring.connect(m, bridge.bus, accelerator.bus)
        rx, tx = uart_pins(platform, m)
        m.d.comb += [bridge.rx.eq(rx), tx.eq(bridge.tx)]
        status_lights(platform, m, self.board, self.clock.clock_hz, {
            "error": accelerator.error, "done": accelerator.done, "busy": accelerator.busy,
            "link": bridge.activity})
        return m


@dataclasses.dataclass
class BoardDesign:
    """Everything a board build and the simulated board share: the top level and what it
    was made from."""
    board: Board
    top: BoardTop
    config: object              # AcceleratorConfig
    model: object               # CompiledModel in the memories
    clock: ClockPlan
    baud: int


def board_design(board, graph, *, cols=None, clock_hz=None, baud=None):
    """The `BoardDesign` of `graph` (a loaded package) on `board`: the accelerator sized to the
    model (`dqt_hw.accel.sizing.fitted_config`, `cols` or the board's), the model in its
    memories (program and controller table always; the data memory's weights and constants
    where the board's data memory can hold initial contents, `Board.data_in_bitstream`), the
    design clock `clock_hz` (default the board's) and the UART at `baud` (default the
    board's). Raises ValueError (`CompileError`) for what cannot be built."""
    from ..hdl.accelerator import Accelerator
    from .clocks import plan_clock
    from ..accel.sizing import family_settings, fitted_config
    from .uart import uart_divisor
    clock = plan_clock(board.family, board.oscillator_hz, clock_hz or board.clock_hz)
    baud = baud or board.baud
    uart_divisor(round(clock.clock_hz), baud)
    # The area settings of every build for the board's device family (`dqt_hw.build --model`
    # takes the same).
    config, model = fitted_config(graph, cols=cols or board.cols,
                                  **family_settings(board.family))
    accelerator = Accelerator(config, program=model.program, table=model.table,
                              data=model.data if board.data_in_bitstream else (),
                              data_memory=board.data_memory)
    return BoardDesign(board, BoardTop(board, accelerator, clock=clock, baud=baud), config,
                       model, clock, baud)
