"""The accelerator: a whole exported network in hardware, controller included.

`Accelerator(config)` holds the memories (data, program, controller table, wide values,
choices, op cycles), the `Sequencer`, the three engines (`WindowEngine` for conv2d,
linear and pooling on the MAC array, `ElementwiseEngine` for residual adds and clips,
`SelectEngine` for the controller's argmax), the `TensorWriter` and a 32-bit Wishbone
classic slave that exposes the register map of `dqt_hw.accel.regmap`. A host (or a CPU) loads
a compiled model through the memory windows, writes an image through the IMAGE window, sets
CONTROL.START and waits for STATUS.DONE; logits come back through the WIDE window and the
controller's choices through the BITS registers. docs/accelerator.md describes it all.
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, ResetInserter, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..accel.config import AcceleratorConfig
from ..accel.program import Opcode, PROGRAM_VERSION
from ..accel.regmap import ACCEL_ID, HARDWARE_VERSION, REGMAP_VERSION, register_map
from .data_memory import DATA_MEMORIES, DataArbiter, DataMemory, NIBBLES
from .elementwise_engine import ElementwiseEngine
from .requantize_stage import RequantizeStage
from .select_engine import SelectEngine
from .sequencer import Sequencer
from .tensor_writer import TensorWriter
from .window_engine import WindowEngine

__all__ = ["wishbone_signature", "Accelerator"]

BUS_ADDRESS_BITS = 18          # 32-bit word addresses: a 1 MiB byte window


def wishbone_signature():
    """A Wishbone classic bus (B4, 32-bit data, word addresses), as the master drives it."""
    return wiring.Signature({
        "cyc": Out(1), "stb": Out(1), "we": Out(1), "sel": Out(4),
        "adr": Out(BUS_ADDRESS_BITS), "dat_w": Out(32),
        "dat_r": In(32), "ack": In(1),
    })


class Accelerator(wiring.Component):
    """The accelerator top level.

    Parameters: `config` (`AcceleratorConfig`); optional initial contents `program`,
    `data`, `table` (lists of words, e.g. a `CompiledModel`'s, so that a bitstream can hold a
    model; the host may still load another one through the bus); `data_memory`: "portable"
    (`lib.memory.Memory`, the default) or "ice40-spram" (the UP5K's SPRAMs, which cannot hold
    initial contents: a model is then loaded over the bus).

    Ports: `bus` (Wishbone classic slave), `busy`, `done`, `error` (for status LEDs).
    """

    def __init__(self, config=None, *, program=(), data=(), table=(), data_memory="portable"):
        self.config = config or AcceleratorConfig()
        if not isinstance(self.config, AcceleratorConfig):
            raise TypeError(f"`config` must be an AcceleratorConfig, not {config!r}")
        self.regmap = register_map(self.config)
        self.init = dict(program=list(program), data=[int(w) for w in data],
                         table=list(table))
        for name, depth in (("program", self.config.program_words),
                            ("data", self.config.data_words),
                            ("table", self.config.table_words)):
            if len(self.init[name]) > depth:
                raise ValueError(f"`{name}` has {len(self.init[name])} words but the memory "
                                 f"holds {depth}")
        if data_memory not in DATA_MEMORIES:
            raise ValueError(f"`data_memory` must be one of {', '.join(DATA_MEMORIES)}, "
                             f"not {data_memory!r}")
        if data_memory == "ice40-spram" and self.init["data"]:
            raise ValueError("the iCE40 SPRAM data memory has no initial contents; load the "
                             "data image over the bus, or use the portable data memory")
        self.data_memory = data_memory
        super().__init__({
            "bus": In(wishbone_signature()),
            "busy": Out(1),
            "done": Out(1),
            "error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        soft_reset = Signal()

        # -- memories --------------------------------------------------------------------------
        if self.data_memory == "portable":
            data = DataMemory(depth=cfg.data_words, init=self.init["data"])
        else:
            data = DATA_MEMORIES[self.data_memory](depth=cfg.data_words)
        m.submodules.data = data
        m.submodules.program = program = Memory(shape=unsigned(32), depth=cfg.program_words,
                                                init=self.init["program"])
        m.submodules.table = table = Memory(shape=unsigned(32), depth=cfg.table_words,
                                            init=self.init["table"])
        m.submodules.wide = wide = Memory(shape=unsigned(32), depth=cfg.wide_words, init=[])
        # Block RAM even when small: in flip-flops its eight bits per slot and the two read
        # ports' multiplexers took about 150 iCE40 logic cells for 8 slots.
        m.submodules.choice = choice = Memory(shape=unsigned(8), depth=cfg.slots, init=[],
                                              attrs={"ram_style": "block"})
        m.submodules.op_cycles = op_cycles = Memory(shape=unsigned(32), depth=cfg.max_ops,
                                                    init=[])
        # For simulators that inspect the memories (the data memory's is set by its block).
        self.memories = dict(data=data, program=program, table=table,
                             wide=wide, choice=choice, op_cycles=op_cycles)

        # -- the run: sequencer and engines, all reset by CONTROL.SOFT_RESET ---------------
        sequencer = Sequencer(cfg)
        window = self.window = WindowEngine(cfg)      # for simulators (its weight buffer)
        elementwise = ElementwiseEngine(acc_width=cfg.value_bits,
                                        buffered=cfg.elementwise_buffered)
        stage = self.stage = RequantizeStage(cfg)     # for simulators (its places queue)
        select = SelectEngine(cfg)
        writer = TensorWriter(wide_depth=cfg.wide_words, staged=cfg.writer_staged)
        arbiter = DataArbiter(6)
        for name, block in (("sequencer", sequencer), ("window", window),
                            ("elementwise", elementwise), ("select", select),
                            ("stage", stage), ("writer", writer)):
            m.submodules[name] = ResetInserter(soft_reset)(block)
        m.submodules.arbiter = arbiter
        wiring.connect(m, arbiter.memory, data.port)
        wiring.connect(m, writer.port, arbiter.clients[0])
        wiring.connect(m, elementwise.port, arbiter.clients[1])
        wiring.connect(m, window.fetch_port, arbiter.clients[2])
        wiring.connect(m, window.load_port, arbiter.clients[3])
        wiring.connect(m, window.const_port, arbiter.clients[4])
        bus_port = arbiter.clients[5]

        instr = sequencer.instr
        for engine in (window, elementwise, select):
            m.d.comb += engine.instr.eq(instr)
        m.d.comb += [
            window.start.eq(sequencer.start_window),
            elementwise.start.eq(sequencer.start_elementwise),
            select.start.eq(sequencer.start_select),
            sequencer.engine_done.eq(window.done | elementwise.done | select.done),
            window.drained.eq(stage.idle & writer.idle),
            elementwise.drained.eq(stage.idle & writer.idle),
        ]
        # The requantize stage takes the active engine's requests and feeds the writer.
        from_elementwise = instr.opcode == Opcode.ELEMENTWISE
        source_window, source_elementwise = window.requests, elementwise.requests
        m.d.comb += [
            stage.requests.valid.eq(Mux(from_elementwise, source_elementwise.valid,
                                        source_window.valid)),
            stage.requests.payload.eq(Mux(from_elementwise, source_elementwise.payload,
                                          source_window.payload)),
            source_window.ready.eq(stage.requests.ready & ~from_elementwise),
            source_elementwise.ready.eq(stage.requests.ready & from_elementwise),
            stage.bits.eq(Mux(instr.opcode == Opcode.CONV, window.bits, cfg.master_bits)),
            stage.lo.eq(instr.lo), stage.hi.eq(instr.hi),
            stage.full_range.eq(instr.full_range),
        ]
        wiring.connect(m, stage.output, writer.input)
        program_run = program.read_port()
        m.d.comb += [program_run.addr.eq(sequencer.prog_addr),
                     sequencer.prog_data.eq(program_run.data)]
        table_run = table.read_port()
        m.d.comb += [table_run.addr.eq(Mux(instr.opcode == Opcode.SELECT, select.table_addr,
                                           window.table_addr)),
                     window.table_data.eq(table_run.data), select.table_data.eq(table_run.data)]
        choice_run = choice.read_port()
        choice_write = choice.write_port()
        # The choice and wide memories are written by one op and read by another: each read
        # port reads only during the ops that use it, so no read meets a write of its address
        # (synthesis leaves that undefined; docs/accelerator.md "Memories").
        m.d.comb += [choice_run.addr.eq(window.choice_addr),
                     choice_run.en.eq(instr.opcode != Opcode.SELECT),
                     window.choice_data.eq(choice_run.data),
                     choice_write.addr.eq(select.choice_addr),
                     choice_write.data.eq(select.choice_data),
                     choice_write.en.eq(select.choice_en)]
        wide_run = wide.read_port()
        wide_write = wide.write_port()
        m.d.comb += [wide_run.addr.eq(select.wide_addr),
                     wide_run.en.eq(instr.opcode == Opcode.SELECT),
                     select.wide_data.eq(wide_run.data)]
        opc_write = op_cycles.write_port()
        m.d.comb += [opc_write.addr.eq(sequencer.opc_addr), opc_write.data.eq(sequencer.opc_data),
                     opc_write.en.eq(sequencer.opc_en)]
        m.d.comb += [self.busy.eq(sequencer.busy), self.done.eq(sequencer.done),
                     self.error.eq(sequencer.error)]

        # -- the bus -------------------------------------------------------------------------
        bus = self.bus
        regmap = self.regmap
        # A Wishbone classic master holds the access until it is acknowledged: it is decoded
        # and carried out from the bus signals themselves, with no copy of them.
        address = Signal(BUS_ADDRESS_BITS + 2)          # byte address of the access
        write, wdata = bus.we, bus.dat_w
        m.d.comb += address.eq(bus.adr << 2)
        # The data of a read is selected when it is acknowledged: `source` (set while decoding)
        # picks a register or a memory window, whose read data is stable by then.
        source = Signal(range(32))
        start_ignored, bus_error = Signal(), Signal()

        def span_bits(name):
            """A window (or register array) spans a power-of-two block of bytes at a multiple
            of its size."""
            item = regmap[name]
            words = item.words if hasattr(item, "words") else item.count
            bits = max(2, (4 * words - 1).bit_length())
            assert item.offset % (1 << bits) == 0, name
            return bits

        def in_window(name):
            # The address bits above the window's block say whether it is inside.
            win, bits = regmap[name], span_bits(name)
            return address[bits:] == win.offset >> bits, win

        def index_in(name):
            """The 32-bit word index of the access within the window."""
            return address[2:span_bits(name)]

        program_bus = program.read_port()
        wide_bus = wide.read_port()
        choice_bus, opc_bus = choice.read_port(), op_cycles.read_port()
        program_write = program.write_port()
        table_write = table.write_port()
        m.d.comb += [
            program_bus.addr.eq(index_in("PROGRAM")),
            program_write.addr.eq(index_in("PROGRAM")), program_write.data.eq(wdata),
            table_write.addr.eq(index_in("TABLE")), table_write.data.eq(wdata),
            choice_bus.addr.eq(index_in("BITS")),
            opc_bus.addr.eq(index_in("OP_CYCLES")),
        ]
        # While a run is busy the bus cannot read WIDE: its port then re-reads the select
        # engine's best score, during SELECT ops only (no wide write happens then).
        m.d.comb += [wide_bus.addr.eq(Mux(sequencer.busy, select.best_addr, index_in("WIDE"))),
                     wide_bus.en.eq(~sequencer.busy | (instr.opcode == Opcode.SELECT)),
                     select.best_data.eq(wide_bus.data)]
        # The wide memory is the writer's alone (the bus reads it: WIDE is read-only).
        m.d.comb += [wide_write.addr.eq(writer.wide_addr), wide_write.data.eq(writer.wide_data),
                     wide_write.en.eq(writer.wide_en)]
        data_word, data_half = index_in("DATA")[1:], index_in("DATA")[0]
        image_element = index_in("IMAGE") << 2          # first code of the bus word
        image_lane = image_element[:4]
        image_high = Cat(*(wdata[8 * i + 4:8 * i + 8] for i in range(4)))
        image_low = Cat(*(wdata[8 * i:8 * i + 4] for i in range(4)))
        image_phase = Signal()

        control = regmap["CONTROL"]
        status_value = Cat(sequencer.busy, sequencer.done, sequencer.error, Const(0, 5),
                           sequencer.error_code, start_ignored, bus_error)
        config_value = Cat(Const(cfg.cols, 8), Const(cfg.pool_lanes, 8),
                           Const(cfg.master_bits, 4),
                           Const(sum(1 << b for b in cfg.supported_bits), 9))
        registers = {
            "ID": Const(ACCEL_ID, 32),
            "VERSION": Const(HARDWARE_VERSION | PROGRAM_VERSION << 8 | REGMAP_VERSION << 16, 32),
            "CONFIG": config_value,
            "MAX_TERMS": Const(cfg.max_terms, 32),
            "DATA_WORDS": Const(cfg.data_words, 32),
            "STATUS": status_value,
            "CYCLES": sequencer.cycles,
            "OPS_DONE": sequencer.ops_done,
        }
        memory_windows = {"PROGRAM": program_bus.data,
                          "WIDE": wide_bus.data,
                          "BITS": choice_bus.data, "OP_CYCLES": opc_bus.data}
        if cfg.data_readable:
            memory_windows["DATA"] = data.port.rdata.word_select(data_half, 32)
        sources = ["none"] + list(registers) + list(memory_windows)
        values = [Const(0, 32)] + list(registers.values()) + list(memory_windows.values())
        start = Signal()
        m.d.comb += sequencer.start.eq(start)

        with m.FSM(name="bus"):
            with m.State("IDLE"):
                with m.If(bus.cyc & bus.stb):
                    m.d.sync += [source.eq(0), image_phase.eq(0)]
                    m.next = "ACCESS"
            with m.State("ACCESS"):
                m.next = "ACK"
                decoded = Signal()
                # The registers sit in the first 256 bytes: one case per word, in parallel.
                with m.If(address[8:] == 0):
                    with m.Switch(address[2:8]):
                        for name, value in registers.items():
                            with m.Case(regmap[name].offset >> 2):
                                m.d.comb += decoded.eq(1)
                                m.d.sync += source.eq(sources.index(name))
                        with m.Case(control.offset >> 2):
                            m.d.comb += decoded.eq(1)
                            with m.If(write):
                                with m.If(wdata[1]):
                                    m.d.comb += soft_reset.eq(1)
                                    m.d.sync += [start_ignored.eq(0), bus_error.eq(0)]
                                with m.Elif(wdata[0]):
                                    with m.If(sequencer.busy):
                                        m.d.sync += start_ignored.eq(1)
                                    with m.Else():
                                        m.d.comb += start.eq(1)
                                with m.If(wdata[2]):
                                    m.d.sync += [start_ignored.eq(0), bus_error.eq(0)]
                for array in ("BITS", "OP_CYCLES"):
                    reg = regmap[array]
                    with m.If((address[span_bits(array):] == reg.offset >> span_bits(array))
                              & (index_in(array) < reg.count)):
                        m.d.comb += decoded.eq(1)
                        with m.If(~write):
                            m.d.sync += source.eq(sources.index(array))
                            m.next = "READ"
                for name in ("PROGRAM", "TABLE", "WIDE", "IMAGE", "DATA"):
                    inside, win = in_window(name)
                    with m.If(inside):
                        m.d.comb += decoded.eq(1)
                        refused = {"rw": 0, "ro": write, "wo": ~write}[win.access]
                        with m.If(sequencer.busy | (address >= win.offset + 4 * win.words)
                                  | refused):
                            m.d.sync += bus_error.eq(1)
                        with m.Elif(write):
                            if name == "PROGRAM":
                                m.d.comb += program_write.en.eq(1)
                            elif name == "TABLE":
                                m.d.comb += table_write.en.eq(1)
                            elif name == "IMAGE":
                                m.next = "IMAGE"
                            elif name == "DATA":
                                m.next = "DATA_WRITE"
                        with m.Else():
                            if "r" in win.access:
                                m.d.sync += source.eq(sources.index(name))
                                m.next = "DATA_READ" if name == "DATA" else "READ"
                with m.If(~decoded):
                    m.d.sync += bus_error.eq(1)
            with m.State("READ"):             # the memory's data for `address` comes out
                m.next = "ACK"
            if cfg.data_readable:
                with m.State("DATA_READ"):
                    m.d.comb += [bus_port.addr.eq(data_word), bus_port.read.eq(1)]
                    with m.If(bus_port.grant):
                        m.next = "READ"
            with m.State("DATA_WRITE"):
                m.d.comb += [bus_port.addr.eq(data_word), bus_port.write.eq(1),
                             bus_port.wdata.eq(wdata.replicate(2)),
                             bus_port.wmask.eq(Mux(data_half, 0xFF00, 0x00FF))]
                with m.If(bus_port.grant):
                    m.next = "ACK"
            with m.State("IMAGE"):
                m.d.comb += [bus_port.addr.eq(Cat(image_phase, image_element[4:])),
                             bus_port.write.eq(1),
                             bus_port.wdata.eq(Mux(image_phase, image_low, image_high)
                                               .replicate(NIBBLES // 4)),
                             bus_port.wmask.eq(Const(0xF, NIBBLES) << image_lane)]
                with m.If(bus_port.grant):
                    m.d.sync += image_phase.eq(1)
                    with m.If(image_phase):
                        m.next = "ACK"
            with m.State("ACK"):
                m.d.comb += [bus.ack.eq(1), bus.dat_r.eq(Array(values)[source])]
                m.next = "IDLE"
        return m
