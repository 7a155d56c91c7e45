"""The whole accelerator in the Amaranth simulator: small networks run bit-exactly through the
bus, and the bus's documented behaviour for bad programs and bad accesses."""

import dataclasses

import numpy as np
import pytest

from dqt_hw.accel.compiler import compile_graph
from dqt_hw.accel.config import AcceleratorConfig
from dqt_hw.accel.driver import AcceleratorDriver, AcceleratorError, model_writes
from dqt_hw.accel.program import PROGRAM_VERSION, encode_program
from dqt_hw.accel.sizing import family_settings
from dqt_hw.accel.regmap import ACCEL_ID, ErrorCode, register_map
from dqt_hw.golden import run_graph
from dqt_hw.hdl.accelerator import Accelerator
from dqt_hw.hdl.sim import WishboneTransport, simulate, test_seed

from test_export_package import random_graph, random_images

CONFIG = AcceleratorConfig(cols=2, data_words=2048, program_words=256, wide_words=64,
                           table_words=64, slots=8, max_ops=16, max_terms=256)
REGMAP = register_map(CONFIG)
STATUS, CONTROL = REGMAP["STATUS"].offset, REGMAP["CONTROL"].offset


def _status(value):
    return {"busy": value & 1, "done": value >> 1 & 1, "error": value >> 2 & 1,
            "code": value >> 8 & 0xFF, "start_ignored": value >> 16 & 1,
            "bus_error": value >> 17 & 1}


@pytest.mark.parametrize("dynamic, family", [(True, None), (False, None), (True, "ice40")])
def test_networks_run_bit_exact_through_the_bus(dynamic, family):
    # The iCE40 family's settings: 8-bit products on DSPs, the short fetch lookahead, one
    # pooling lane, an elementwise engine that re-reads its operands lane by lane.
    seed = test_seed(f"accelerator network dynamic={dynamic} family={family}")
    graph = random_graph(seed % 1000, dynamic=dynamic)
    images = random_images(2, seed=seed % 1000 + 1)
    settings = family_settings(family)
    settings.pop("data_words", None)             # the test's memory, not the UP5K's SPRAMs
    config = dataclasses.replace(CONFIG, **settings)
    model = compile_graph(graph, config)
    expected = run_graph(graph, images)
    dut = Accelerator(config)
    results = []

    async def bench(ctx):
        driver = AcceleratorDriver(WishboneTransport(ctx, dut.bus), model, poll_cycles=64)
        await driver.check_identity()
        await driver.load_model()
        for codes in images:
            results.append(await driver.infer(codes))

    collisions = []

    async def monitor(ctx):
        # Synthesis leaves a read of an address in the cycle it is written undefined
        # (`dqt_hw.build.targets`): no read whose data a run uses may meet a write there.
        # (While no run is busy, the run's ports read nothing anyone uses.)
        memories = {name: dut.memories[name] for name in ("program", "table", "wide", "choice")}
        memories["weight buffer"] = dut.window.buffer.memory
        memories["result places"] = dut.stage.places
        reads = [(name, memory, memory.read_ports[0]) for name, memory in memories.items()]
        # The wide memory's bus port re-reads the select engine's best score during a run.
        reads.append(("wide, best score", memories["wide"], memories["wide"].read_ports[1]))
        while True:
            await ctx.tick()
            if not ctx.get(dut.busy):
                continue
            for name, memory, read in reads:
                for write in memory.write_ports:
                    if (ctx.get(read.en) and ctx.get(write.en)
                            and ctx.get(read.addr) == ctx.get(write.addr)):
                        collisions.append(name)

    simulate(dut, bench, background=[monitor])
    assert not collisions
    for index, result in enumerate(results):
        assert result.logits.tolist() == expected["logits"][index].tolist()
        if dynamic:
            assert result.bits == expected["bits"][index].tolist()
        assert result.prediction == int(np.argmax(expected["logits"][index]))
        assert len(result.op_cycles) == len(model.ops) and all(result.op_cycles)
        assert sum(result.op_cycles) == result.cycles        # each cycle belongs to an op


def _run_program(program, *, extra=None):
    """Load `program` (words) with a compiled model's other memories, start, return STATUS
    and what `extra(ctx, transport)` returns."""
    model = compile_graph(random_graph(0, dynamic=True), CONFIG)
    dut = Accelerator(CONFIG, data=model.data, table=model.table)
    out = {}

    async def bench(ctx):
        bus = WishboneTransport(ctx, dut.bus)
        for i, word in enumerate(program):
            await bus.write(REGMAP["PROGRAM"].offset + 4 * i, word)
        await bus.write(CONTROL, 1)
        if extra is not None:
            out["extra"] = await extra(ctx, bus)
        for _ in range(20000):
            status = _status(await bus.read(STATUS))
            if status["done"]:
                break
            await bus.wait(16)
        out["status"] = status

    simulate(dut, bench)
    return out, model


def test_a_corrupt_program_is_refused_before_it_runs():
    model = compile_graph(random_graph(0, dynamic=True), CONFIG)
    program = list(model.program)
    program[40] ^= 1 << 7                      # one flipped bit in an instruction
    out, _ = _run_program(program)
    assert out["status"] == dict(busy=0, done=1, error=1, code=ErrorCode.BAD_CHECKSUM,
                                 start_ignored=0, bus_error=0)
    out, _ = _run_program([0x12345678] + program[1:])
    assert out["status"]["code"] == ErrorCode.BAD_HEADER
    out, _ = _run_program(program[:1] + [PROGRAM_VERSION - 1 | 1 << 16] + program[2:])
    assert out["status"]["code"] == ErrorCode.BAD_HEADER          # another version
    out, _ = _run_program(program[:1] + [PROGRAM_VERSION | 200 << 16] + program[2:])
    assert out["status"]["code"] == ErrorCode.TOO_MANY_OPS


def test_bad_instructions_stop_the_run_with_their_code():
    out, _ = _run_program(encode_program([dict(opcode=7)]))
    assert out["status"]["code"] == ErrorCode.BAD_OPCODE and out["status"]["error"]
    out, _ = _run_program(encode_program([dict(opcode=1, out_h=0)]))
    assert out["status"]["code"] == ErrorCode.BAD_INSTRUCTION
    out, _ = _run_program(encode_program([]))
    assert out["status"] == dict(busy=0, done=1, error=0, code=0, start_ignored=0,
                                 bus_error=0)


def test_start_while_busy_is_ignored_and_memories_are_closed():
    model = compile_graph(random_graph(0, dynamic=True), CONFIG)

    async def during_the_run(ctx, bus):
        await bus.write(CONTROL, 1)                                # START again
        seen = _status(await bus.read(STATUS))
        data = await bus.read(REGMAP["DATA"].offset)               # a window while busy
        return seen, data, _status(await bus.read(STATUS))

    out, _ = _run_program(model.program, extra=during_the_run)
    seen, data, after = out["extra"]
    assert seen["busy"] and seen["start_ignored"] and not seen["bus_error"]
    assert data == 0 and after["bus_error"]
    assert out["status"]["done"] and not out["status"]["error"]


def test_identity_undefined_addresses_and_soft_reset():
    model = compile_graph(random_graph(0, dynamic=True), CONFIG)
    dut = Accelerator(CONFIG, program=model.program, data=model.data,
                      table=model.table)
    seen = {}

    async def bench(ctx):
        bus = WishboneTransport(ctx, dut.bus)
        seen["id"] = await bus.read(REGMAP["ID"].offset)
        seen["undefined"] = await bus.read(0x0030)
        seen["after_undefined"] = _status(await bus.read(STATUS))
        await bus.write(CONTROL, 0b100)                           # CLEAR
        seen["cleared"] = _status(await bus.read(STATUS))
        await bus.write(CONTROL, 1)
        await bus.wait(50)
        seen["running"] = _status(await bus.read(STATUS))
        await bus.write(CONTROL, 0b10)                            # SOFT_RESET
        seen["reset"] = _status(await bus.read(STATUS))
        await bus.write(0x40000, 0xFFFFFFFF)                      # between windows: dropped
        seen["dropped"] = _status(await bus.read(STATUS))
        await bus.write(CONTROL, 0b100)
        await bus.write(REGMAP["WIDE"].offset, 0x12345678)        # a read-only window
        seen["wide_written"] = _status(await bus.read(STATUS))
        seen["wide"] = await bus.read(REGMAP["WIDE"].offset)
        await bus.write(CONTROL, 0b100)
        seen["image"] = await bus.read(REGMAP["IMAGE"].offset)    # a write-only window
        seen["image_read"] = _status(await bus.read(STATUS))
        await bus.write(CONTROL, 0b100)
        seen["table"] = await bus.read(REGMAP["TABLE"].offset)    # write-only too
        seen["table_read"] = _status(await bus.read(STATUS))

    simulate(dut, bench)
    assert seen["id"] == ACCEL_ID
    assert seen["undefined"] == 0 and seen["after_undefined"]["bus_error"]
    assert not seen["cleared"]["bus_error"]
    assert seen["running"]["busy"]
    assert seen["reset"] == dict(busy=0, done=0, error=0, code=0, start_ignored=0, bus_error=0)
    assert seen["dropped"]["bus_error"]
    assert seen["wide_written"]["bus_error"] and seen["wide"] != 0x12345678
    assert seen["image_read"]["bus_error"] and seen["image"] == 0
    assert seen["table_read"]["bus_error"] and seen["table"] == 0 != model.table[0]


@pytest.mark.parametrize("readable", [True, False])
def test_data_window_reads_back_only_where_readable(readable):
    config = dataclasses.replace(CONFIG, data_readable=readable)
    regmap = register_map(config)
    high_half = regmap["DATA"].offset + 4 * 2 * 5 + 4            # word 5, bits 32..63
    assert regmap["DATA"].access == ("rw" if readable else "wo")
    dut = Accelerator(config)
    seen = {}

    async def bench(ctx):
        bus = WishboneTransport(ctx, dut.bus)
        await bus.write(high_half, 0x89ABCDEF)
        seen["written"] = _status(await bus.read(STATUS))
        seen["data"] = await bus.read(high_half)
        seen["read"] = _status(await bus.read(STATUS))

    simulate(dut, bench)
    assert not seen["written"]["bus_error"]
    if readable:
        assert seen["data"] == 0x89ABCDEF and not seen["read"]["bus_error"]
    else:
        assert seen["data"] == 0 and seen["read"]["bus_error"]


def test_driver_refuses_other_hardware():
    model = compile_graph(random_graph(0, dynamic=True),
                          AcceleratorConfig(**{**CONFIG.__dict__, "cols": 4}))
    dut = Accelerator(CONFIG)
    raised = []

    async def bench(ctx):
        driver = AcceleratorDriver(WishboneTransport(ctx, dut.bus), model)
        try:
            await driver.check_identity()
        except AcceleratorError as error:
            raised.append(str(error))

    simulate(dut, bench)
    assert raised == ["the hardware has 2 columns and bit mask 0x1fc; the model was compiled "
                      "for 4 and 0x1fc"]
    assert model_writes(model)[0] == (REGMAP["PROGRAM"].offset, model.program[0])
