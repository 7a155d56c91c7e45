"""The SoC: a soft RISC-V CPU, firmware ROM, RAM, a UART, the system controller and the
accelerator on one Wishbone bus (memory map: `dqt_hw.soc.memory_map`, docs/firmware.md).

    SoC(firmware, cpu="vexriscv-lite", accelerator=AcceleratorConfig(...), model=None,
        ram_bytes=8192, clock_hz=25_000_000, baud=115200, data_memory="portable")

`firmware` is the ROM image (bytes of `classify.bin`, or 32-bit words); the ROM is the next
power of two that holds it. `model` (a `CompiledModel`) puts a model in the accelerator's
memories at configuration time, for `dqt_load_model(..., DQT_LOAD_PRESENT)`. `data_memory`
picks the accelerator's data memory (`Accelerator`'s "portable" or "ice40-spram"). The CPU is held
in reset for 16 cycles after configuration (and after the clock domain's reset, on a board).
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..accel.config import AcceleratorConfig
from ..hdl.accelerator import Accelerator
from .cpu import DEFAULT_CPU, cpu_class, make_cpu
from .memory_map import ACCELERATOR_SPAN, REGIONS
from .peripherals import UART, SystemController, WishboneMemory
from .wishbone import Decoder

__all__ = ["SoC", "firmware_words"]

_POWER_ON_CYCLES = 16


def firmware_words(image):
    """A firmware image (bytes, little-endian) as 32-bit words, or words as a list."""
    if isinstance(image, (bytes, bytearray)):
        image = bytes(image) + b"\0" * (-len(image) % 4)
        return [int.from_bytes(image[i:i + 4], "little") for i in range(0, len(image), 4)]
    return [int(w) for w in image]


def _power_of_two_words(size_bytes, name):
    words = max(size_bytes // 4, 1)
    if size_bytes % 4 or words & (words - 1):
        raise ValueError(f"`{name}` must be a power of two of at least 4 bytes, "
                         f"not {size_bytes!r}")
    return words


class SoC(wiring.Component):
    """Ports: `uart_tx`, `uart_rx`, `halt` and `exit_code` (the firmware wrote EXIT),
    `busy`/`done`/`error` (the accelerator's, for LEDs)."""

    def __init__(self, firmware, *, cpu=DEFAULT_CPU, accelerator=None, model=None,
                 ram_bytes=8192, clock_hz=25_000_000, baud=115200, data_memory="portable"):
        self.firmware = firmware_words(firmware)
        if not self.firmware:
            raise ValueError("`firmware` is empty")
        self.cpu_name = cpu
        cpu_class(cpu)                                  # validates the name
        self.config = accelerator or AcceleratorConfig()
        if not isinstance(self.config, AcceleratorConfig):
            raise TypeError(f"`accelerator` must be an AcceleratorConfig, not {accelerator!r}")
        if model is not None and model.config != self.config:
            raise ValueError("`model` was compiled for another accelerator configuration")
        self.model = model
        self.data_memory = data_memory
        self.rom_words = 1 << (len(self.firmware) - 1).bit_length()
        self.ram_words = _power_of_two_words(ram_bytes, "ram_bytes")
        if not isinstance(clock_hz, int) or clock_hz < 1:
            raise ValueError(f"`clock_hz` must be a positive integer, not {clock_hz!r}")
        if not isinstance(baud, int) or not 1 <= baud <= clock_hz // 4:
            raise ValueError(f"`baud` must be an integer between 1 and clock_hz / 4, "
                             f"not {baud!r}")
        self.clock_hz, self.baud = clock_hz, baud
        super().__init__({"uart_tx": Out(1), "uart_rx": In(1, init=1), "halt": Out(1),
                          "exit_code": Out(8), "busy": Out(1), "done": Out(1),
                          "error": Out(1)})

    @property
    def uart_divisor(self):
        return round(self.clock_hz / self.baud)

    def verilog_files(self):
        """The CPU's Verilog sources (the rest is Amaranth)."""
        return cpu_class(self.cpu_name).verilog_files()

    def elaborate(self, platform):
        m = Module()
        m.submodules.cpu = cpu = make_cpu(self.cpu_name)
        regions = [("rom", REGIONS["ROM"][0] >> 2, (self.rom_words - 1).bit_length() or 1),
                   ("ram", REGIONS["RAM"][0] >> 2, (self.ram_words - 1).bit_length() or 1),
                   ("system", REGIONS["SYSTEM"][0] >> 2, 2),
                   ("uart", REGIONS["UART"][0] >> 2, 2),
                   ("accel", REGIONS["ACCEL"][0] >> 2, (ACCELERATOR_SPAN >> 2).bit_length() - 1)]
        m.submodules.decoder = decoder = Decoder(regions)
        wiring.connect(m, cpu.bus, decoder.bus)

        m.submodules.rom = rom = WishboneMemory(self.rom_words, self.firmware, writable=False)
        m.submodules.ram = ram = WishboneMemory(self.ram_words, writable=True)
        m.submodules.system = system = SystemController(self.clock_hz)
        m.submodules.uart = uart = UART(self.uart_divisor)
        model = self.model
        preload = (dict(program=model.program, data=model.data, table=model.table)
                   if model is not None else {})
        m.submodules.accelerator = accelerator = Accelerator(self.config, **preload,
                                                             data_memory=self.data_memory)
        for name, slave in (("rom", rom), ("ram", ram), ("system", system), ("uart", uart),
                            ("accel", accelerator)):
            wiring.connect(m, getattr(decoder, name), slave.bus)

        power_on = Signal(range(_POWER_ON_CYCLES + 1), init=_POWER_ON_CYCLES)
        with m.If(power_on != 0):
            m.d.sync += power_on.eq(power_on - 1)
        m.d.comb += [
            cpu.reset.eq(power_on != 0),
            self.uart_tx.eq(uart.tx), uart.rx.eq(self.uart_rx),
            self.halt.eq(system.halt), self.exit_code.eq(system.exit_code),
            self.busy.eq(accelerator.busy), self.done.eq(accelerator.done),
            self.error.eq(accelerator.error),
        ]
        return m
