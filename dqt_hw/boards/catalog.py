"""The boards a model can be built for: platform, clock, UART, status LEDs, programmer.

`BOARDS[name]` is a `Board`; `Board.platform()` makes its `amaranth-boards` platform (imported
only then, so the rest of dqt-hw does not need amaranth-boards). docs/boards.md has the
pinout and the LED meanings.
"""

import dataclasses
import importlib

__all__ = ["Board", "BOARDS", "check_board", "LED_ROLES"]

#: What the status LEDs show, in the order boards list their LEDs.
LED_ROLES = ("error", "done", "busy", "link", "alive")


@dataclasses.dataclass(frozen=True)
class Board:
    """One board. `leds` maps an LED role (`LED_ROLES`) to an amaranth-boards resource (name,
    number); `target` names the device in `dqt_hw.build.targets.TARGETS` (capacity, nextpnr
    flags); `cols` is the MAC array width the build uses unless told otherwise."""
    name: str
    description: str
    platform_class: str          # "module:Class" in amaranth_boards
    family: str                  # "ice40" or "ecp5"
    target: str
    oscillator: tuple            # (resource name, number)
    oscillator_hz: int
    clock_hz: float              # default design clock
    baud: int                    # default UART baud rate
    leds: tuple                  # ((role, (resource, number)), ...)
    programmer: tuple            # (command, arguments before the bitstream...)
    bitstream: str               # file the programmer takes: "top.bin" or "top.bit"
    cols: int
    #: The accelerator's data memory (`dqt_hw.hdl.data_memory.DATA_MEMORIES`): "portable"
    #: (block RAM, holds the model's weights and constants from configuration) or
    #: "ice40-spram" (the UP5K's SPRAMs: no initial contents, the host loads them).
    data_memory: str = "portable"
    extra_resources: str | None = None   # attribute of the platform class to add first

    @property
    def data_in_bitstream(self):
        return self.data_memory == "portable"

    def platform(self):
        module, name = self.platform_class.split(":")
        try:
            cls = getattr(importlib.import_module(f"amaranth_boards.{module}"), name)
        except ImportError:
            raise ValueError("board builds need amaranth-boards: "
                             "pip install 'amaranth-boards>=0.0.21'") from None
        platform = cls()
        if self.extra_resources:
            platform.add_resources(getattr(platform, self.extra_resources))
        return platform


BOARDS = {board.name: board for board in (
    Board("icebreaker", "1BitSquared iCEBreaker (iCE40 UP5K-SG48, FTDI FT2232H USB serial)",
          "icebreaker:ICEBreakerPlatform", "ice40", "ice40-up5k",
          ("clk12", 0), 12_000_000, 12e6, 1_000_000,
          (("error", ("led_r", 0)), ("done", ("led_g", 0)),
           # The LEDs of the break-off PMOD (attached as shipped; harmless when detached).
           ("busy", ("led", 2)), ("link", ("led", 3)), ("alive", ("led", 4))),
          ("iceprog",), "top.bin", cols=1, data_memory="ice40-spram",
          extra_resources="break_off_pmod"),
    Board("ulx3s-85f", "Radiona ULX3S with an ECP5 LFE5U-85F (FTDI FT231X USB serial)",
          "ulx3s:ULX3S_85F_Platform", "ecp5", "ecp5-85f",
          ("clk25", 0), 25_000_000, 20e6, 1_000_000,
          (("error", ("led", 0)), ("done", ("led", 1)), ("busy", ("led", 2)),
           ("link", ("led", 3)), ("alive", ("led", 7))),
          ("openFPGALoader", "-b", "ulx3s"), "top.bit", cols=4),
    Board("ulx3s-25f", "Radiona ULX3S with an ECP5 LFE5U-25F (FTDI FT231X USB serial)",
          "ulx3s:ULX3S_25F_Platform", "ecp5", "ecp5-25f",
          ("clk25", 0), 25_000_000, 20e6, 1_000_000,
          (("error", ("led", 0)), ("done", ("led", 1)), ("busy", ("led", 2)),
           ("link", ("led", 3)), ("alive", ("led", 7))),
          # 28 DSPs: one column (four columns take 69 multipliers).
          ("openFPGALoader", "-b", "ulx3s"), "top.bit", cols=1),
)}


def check_board(name):
    """The `Board` called `name`, or a ValueError listing the known ones."""
    if name not in BOARDS:
        raise ValueError(f"`--board` must be one of {', '.join(BOARDS)}, not {name!r}")
    return BOARDS[name]
