"""The accelerator's data memory: one port, 64-bit words, a write mask per nibble.

It holds the weights and every activation tensor (docs/accelerator.md, "Data memory"; the
layout is `dqt_hw.accel.layout`). One access per cycle, read or write, as the iCE40 UP5K's
SPRAMs allow (four 16-bit SPRAMs side by side, each with a write mask per nibble); clients
share it through `DataArbiter`, which grants one request per cycle by fixed priority.
"""

from amaranth.hdl import Const, Module, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .arith import check_positive_int

__all__ = ["DATA_WORD_BITS", "NIBBLES", "data_port_signature", "DataMemory", "DataArbiter",
           "ICE40SPRAMDataMemory", "DATA_MEMORIES"]

DATA_WORD_BITS = 64
NIBBLES = DATA_WORD_BITS // 4
ADDRESS_BITS = 16


def data_port_signature():
    """A client's port (directions as the client sees them): a read or a write request held
    until `grant`; read data arrives on `rdata` the cycle after a granted read."""
    return wiring.Signature({
        "addr": Out(ADDRESS_BITS),
        "read": Out(1),
        "write": Out(1),
        "wdata": Out(DATA_WORD_BITS),
        "wmask": Out(NIBBLES),
        "grant": In(1),
        "rdata": In(DATA_WORD_BITS),
    })


class DataMemory(wiring.Component):
    """`depth` 64-bit words, one access per cycle (`lib.memory.Memory`, portable).

    Ports: `port` (In(data_port_signature())): `grant` is always high; a read's data is on
    `rdata` from the next cycle on (until the next read); a write stores the nibbles whose
    `wmask` bit is set. Addresses at or above `depth` wrap (the address is truncated).
    `init` fills the words (a list of ints) at configuration time.
    """

    latency = 1

    def __init__(self, *, depth, init=()):
        check_positive_int("depth", depth)
        self.depth = depth
        self.init = list(init)
        super().__init__({"port": In(data_port_signature())})

    def elaborate(self, platform):
        m = Module()
        m.submodules.memory = memory = Memory(shape=unsigned(DATA_WORD_BITS), depth=self.depth,
                                              init=self.init)
        self.memory = memory           # for simulators that inspect the contents
        read = memory.read_port()
        write = memory.write_port(granularity=4)
        address_bits = max(1, (self.depth - 1).bit_length())
        port = self.port
        m.d.comb += [
            port.grant.eq(1),
            read.addr.eq(port.addr[:address_bits]),
            read.en.eq(port.read),
            port.rdata.eq(read.data),
            write.addr.eq(port.addr[:address_bits]),
            write.data.eq(port.wdata),
            write.en.eq(port.wmask & port.write.replicate(NIBBLES)),
        ]
        return m


class DataArbiter(wiring.Component):
    """Fixed-priority arbiter: `clients[0]` wins over `clients[1]` and so on.

    A client's request is granted in the cycle it is the highest-priority one asking; read
    data goes back to every client (each takes it the cycle after its own grant).
    """

    def __init__(self, count):
        check_positive_int("count", count)
        self.count = count
        super().__init__({
            "clients": In(data_port_signature()).array(count),
            "memory": Out(data_port_signature()),
        })

    def elaborate(self, platform):
        m = Module()
        taken = Const(0, 1)
        for index in range(self.count):
            client = self.clients[index]
            wants = client.read | client.write
            grant = Signal(name=f"grant_{index}")
            m.d.comb += [grant.eq(wants & ~taken & self.memory.grant),
                         client.grant.eq(grant), client.rdata.eq(self.memory.rdata)]
            with m.If(wants & ~taken):
                m.d.comb += [self.memory.addr.eq(client.addr), self.memory.read.eq(client.read),
                             self.memory.write.eq(client.write),
                             self.memory.wdata.eq(client.wdata),
                             self.memory.wmask.eq(client.wmask)]
            taken = taken | wants
        return m


class ICE40SPRAMDataMemory(wiring.Component):
    """`DataMemory` on an iCE40 UltraPlus: four SB_SPRAM256KA side by side (16384 x 64 bits,
    the whole 128 KiB), SPRAM k holding nibble lanes 4k..4k+3, its MASKWREN the write mask of
    those lanes. Same signature and timing as `DataMemory` (read data on `rdata` the cycle
    after the read; after a write `rdata` is undefined). No initial contents: the SPRAMs power
    up cleared, so a model is loaded over the bus (or by firmware).

    Simulation: Yosys's techlibs/ice40/cells_sim.v models SB_SPRAM256KA.
    """

    latency = 1
    DEPTH = 16384

    def __init__(self, *, depth=DEPTH):
        if depth > self.DEPTH:
            raise ValueError(f"`depth` must be at most {self.DEPTH} (the UP5K's four SPRAMs), "
                             f"not {depth}")
        self.depth = depth
        super().__init__({"port": In(data_port_signature())})

    def elaborate(self, platform):
        from amaranth.hdl import Cat, ClockSignal, Instance
        m = Module()
        port = self.port
        outputs = []
        for k in range(4):
            out = Signal(16, name=f"spram_{k}_out")
            outputs.append(out)
            m.submodules[f"spram_{k}"] = Instance(
                "SB_SPRAM256KA",
                i_ADDRESS=port.addr[:14], i_DATAIN=port.wdata[16 * k:16 * k + 16],
                i_MASKWREN=port.wmask[4 * k:4 * k + 4], i_WREN=port.write,
                i_CHIPSELECT=port.read | port.write, i_CLOCK=ClockSignal("sync"),
                i_STANDBY=0, i_SLEEP=0, i_POWEROFF=1, o_DATAOUT=out)
        m.d.comb += [port.grant.eq(1), port.rdata.eq(Cat(*outputs))]
        return m


#: Data memory variants by name (`Accelerator(data_memory=...)`).
DATA_MEMORIES = {"portable": DataMemory, "ice40-spram": ICE40SPRAMDataMemory}
