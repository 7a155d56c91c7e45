# amaranth: UnusedElaboratable=no
"""The SoC's gateware blocks in the Amaranth simulator: decoder, arbiter, memories, UART,
system controller, and the parameter checks. The whole SoC with a CPU and firmware runs on
Verilator in tests/test_sim_soc.py."""

import pytest
from amaranth.hdl import Elaboratable, Module
from amaranth.lib import wiring

from dqt_hw.hdl.sim import WishboneTransport, simulate
from dqt_hw.soc.cpu import CPU_CLASSES, cpu_class
from dqt_hw.soc.memory_map import SYSTEM_REGISTERS, UART_REGISTERS
from dqt_hw.soc.memory_map import main as memory_map_main
from dqt_hw.soc.peripherals import UART, SystemController, WishboneMemory
from dqt_hw.soc.soc import SoC, firmware_words
from dqt_hw.soc.wishbone import Arbiter, Decoder, bus_signature


def test_memory_map_header_is_current():
    assert memory_map_main(["--check"]) == 0


def test_parameters_are_checked_with_precise_messages():
    with pytest.raises(ValueError, match=r"`address_bits` must be an integer between 1 and 30, "
                                         r"not 0"):
        bus_signature(0)
    with pytest.raises(ValueError, match=r"region 'b' overlaps 'a'"):
        Decoder([("a", 0, 4), ("b", 8, 3)])
    with pytest.raises(ValueError, match=r"`base` must be a multiple of its size 16 words, "
                                         r"not 8"):
        Decoder([("a", 8, 4)])
    with pytest.raises(ValueError, match=r"`masters` must be an integer >= 2, not 1"):
        Arbiter(1)
    with pytest.raises(ValueError, match=r"`depth` must be a power of two, not 6"):
        WishboneMemory(6, writable=True)
    with pytest.raises(ValueError, match=r"`divisor` must be an integer between 4 and 65535, "
                                         r"not 2"):
        UART(2)
    with pytest.raises(ValueError, match=r"`cpu` must be one of picorv32, vexriscv, vexriscv-lite, serv, "
                                         r"not 'z80'"):
        cpu_class("z80")
    with pytest.raises(ValueError, match=r"`firmware` is empty"):
        SoC(b"")
    with pytest.raises(ValueError, match=r"`ram_bytes` must be a power of two of at least 4 "
                                         r"bytes, not 1000"):
        SoC(b"\x13\0\0\0", ram_bytes=1000)


def test_firmware_words_are_little_endian_and_padded():
    assert firmware_words(b"\x01\x02\x03\x04\x05") == [0x04030201, 0x05]
    assert firmware_words([7, 8]) == [7, 8]


def test_cpu_sources_are_installed():
    for cls in CPU_CLASSES.values():
        files = cls.verilog_files()
        assert files and all(path.is_file() for path in files)


class _DecodedMemories(Elaboratable):
    """A decoder in front of a ROM and a RAM (the SoC's memory side)."""

    def __init__(self):
        self.decoder = Decoder([("rom", 0, 3), ("ram", 64, 4)])
        self.rom = WishboneMemory(8, list(range(100, 108)), writable=False)
        self.ram = WishboneMemory(16, writable=True)
        self.bus = self.decoder.bus

    def elaborate(self, platform):
        m = Module()
        m.submodules.decoder, m.submodules.rom, m.submodules.ram = (self.decoder, self.rom,
                                                                    self.ram)
        wiring.connect(m, self.decoder.rom, self.rom.bus)
        wiring.connect(m, self.decoder.ram, self.ram.bus)
        return m


def test_decoder_routes_regions_and_acknowledges_holes():
    dut = _DecodedMemories()
    seen = {}

    async def bench(ctx):
        bus = WishboneTransport(ctx, dut.bus)
        ctx.set(dut.bus.sel, 0b1111)
        seen["rom"] = [await bus.read(4 * i) for i in range(8)]
        await bus.write(4 * 3, 0xDEAD)                 # ROM: dropped
        seen["rom3"] = await bus.read(4 * 3)
        await bus.write(4 * 64 + 8, 0x12345678)
        ctx.set(dut.bus.sel, 0b0010)                   # one byte lane
        await bus.write(4 * 64 + 8, 0xFFFFFFFF)
        seen["ram"] = await bus.read(4 * 64 + 8)
        seen["hole"] = await bus.read(4 * 32)          # between the regions: acked, 0

    simulate(dut, bench)
    assert seen["rom"] == list(range(100, 108))
    assert seen["rom3"] == 103
    assert seen["ram"] == 0x1234FF78
    assert seen["hole"] == 0


def test_arbiter_serves_both_masters():
    m = Module()
    m.submodules.arbiter = arbiter = Arbiter(2, address_bits=4)
    m.submodules.ram = ram = WishboneMemory(16, writable=True)
    wiring.connect(m, arbiter.bus, ram.bus)
    seen = {}

    def master(port, base, key):
        async def bench(ctx):
            bus = WishboneTransport(ctx, port)
            ctx.set(port.sel, 0b1111)
            for i in range(4):
                await bus.write(4 * (base + i), 1000 * base + i)
            seen[key] = [await bus.read(4 * (base + i)) for i in range(4)]
        return bench

    simulate(m, master(arbiter.m0, 0, "m0"), master(arbiter.m1, 8, "m1"))
    assert seen == {"m0": [0, 1, 2, 3], "m1": [8000, 8001, 8002, 8003]}


def test_uart_sends_and_receives_8n1():
    divisor = 6
    dut = UART(divisor)
    sent = []
    seen = {}

    async def host(ctx):
        bus = WishboneTransport(ctx, dut.bus)
        for byte in (0x55, 0xA3):
            await bus.write(UART_REGISTERS["DATA"], byte)   # waits while busy
        seen["divisor"] = await bus.read(UART_REGISTERS["DIVISOR"])
        await ctx.tick().repeat(40 * divisor)
        seen["status"] = await bus.read(UART_REGISTERS["STATUS"])
        seen["data"] = await bus.read(UART_REGISTERS["DATA"])
        seen["again"] = await bus.read(UART_REGISTERS["DATA"])

    async def line(ctx):
        # Decode the transmitter and loop it back into the receiver.
        while len(sent) < 2:
            while ctx.get(dut.tx):
                await ctx.tick()
            await ctx.tick().repeat(divisor // 2)
            bits = []
            for _ in range(10):
                bits.append(ctx.get(dut.tx))
                await ctx.tick().repeat(divisor)
            assert bits[0] == 0 and bits[9] == 1, bits
            sent.append(sum(b << i for i, b in enumerate(bits[1:9])))

    top = Module()
    top.submodules.uart = dut
    top.d.comb += dut.rx.eq(dut.tx)                     # loop the line back
    simulate(top, host, line)
    assert sent == [0x55, 0xA3]
    assert seen["divisor"] == divisor
    assert seen["status"] == 0b10                       # idle, one byte received
    assert seen["data"] == 0x100 | 0xA3                 # the last byte (the first was overrun)
    assert seen["again"] & 0x100 == 0


def test_system_controller_counts_cycles_and_exits():
    dut = SystemController(12_000_000)
    seen = {}

    async def bench(ctx):
        bus = WishboneTransport(ctx, dut.bus)
        first = await bus.read(SYSTEM_REGISTERS["CYCLES"])
        await ctx.tick().repeat(50)
        second = await bus.read(SYSTEM_REGISTERS["CYCLES"])
        seen["delta"] = second - first
        seen["high"] = await bus.read(SYSTEM_REGISTERS["CYCLES_HI"])
        seen["clock"] = await bus.read(SYSTEM_REGISTERS["CLOCK_HZ"])
        seen["halt_before"] = ctx.get(dut.halt)
        await bus.write(SYSTEM_REGISTERS["EXIT"], 3)
        seen["halt"], seen["code"] = ctx.get(dut.halt), ctx.get(dut.exit_code)

    simulate(dut, bench)
    assert 50 < seen["delta"] < 60
    assert seen["high"] == 0 and seen["clock"] == 12_000_000
    assert (seen["halt_before"], seen["halt"], seen["code"]) == (0, 1, 3)


def test_arbiter_does_not_starve_a_master_behind_a_busy_fetch_bus():
    m = Module()
    m.submodules.arbiter = arbiter = Arbiter(2, address_bits=4)
    m.submodules.ram = ram = WishboneMemory(16, writable=True)
    wiring.connect(m, arbiter.bus, ram.bus)
    done = {}

    async def fetcher(ctx):                  # cyc stays high from one access to the next
        port = arbiter.m0
        ctx.set(port.cyc, 1)
        ctx.set(port.stb, 1)
        for i in range(40):
            ctx.set(port.adr, i % 8)
            await ctx.tick().until(port.ack)
        done["fetcher"] = True
        ctx.set(port.cyc, 0)
        ctx.set(port.stb, 0)

    async def data(ctx):
        bus = WishboneTransport(ctx, arbiter.m1)
        ctx.set(arbiter.m1.sel, 0b1111)
        for i in range(4):
            await bus.write(4 * (8 + i), i + 1)
        done["data_before_fetcher"] = "fetcher" not in done

    simulate(m, fetcher, data)
    assert done == {"fetcher": True, "data_before_fetcher": True}


def test_board_top_puts_the_uart_and_leds_on_the_board_pins():
    pytest.importorskip("amaranth_boards")
    from dqt_hw.accel.config import AcceleratorConfig
    from dqt_hw.soc.board import BoardSoC, _platform
    platform = _platform("ulx3s-85f")
    config = AcceleratorConfig(data_words=256, program_words=64, wide_words=16, table_words=16,
                               slots=4, max_ops=4, max_terms=64, cols=1)
    plan = platform.prepare(BoardSoC(SoC([0x0000006F], accelerator=config,
                                         clock_hz=25_000_000)), name="soc")
    constraints = plan.files["soc.lpf"]
    for port in ("uart_0__tx__io", "uart_0__rx__io", "led_0__io", "led_3__io", "clk25_0__io"):
        assert f'LOCATE COMP "{port}"' in constraints, port
