"""The host-side driver: load a compiled model into the accelerator and run images.

`AcceleratorDriver(transport, model)` talks to the register map (`dqt_hw.accel.regmap`)
through a *transport* with two coroutines, `read(address) -> int` and `write(address,
value)` (byte addresses, 32-bit values), and optionally `wait(cycles)`, which lets time pass
between STATUS polls (a simulator advances its clock, a board sleeps), and
`read_words(address, count) -> list`, consecutive words in one go (a board's link: one round
trip for the logits, one for the bits, one for the per-op cycles, not one per word). The
same driver runs against the Amaranth simulator, cocotb on the generated Verilog and
(through a serial bridge) a board; the C firmware follows the same steps. All methods are
coroutines, so simulators that advance time on `await` drive it directly; synchronous
transports are wrapped by `asyncio.run`.
"""

import dataclasses

import numpy as np

from .regmap import ACCEL_ID, HARDWARE_VERSION, ErrorCode, register_map
from .program import PROGRAM_VERSION

__all__ = ["AcceleratorError", "Inference", "AcceleratorDriver", "model_writes",
           "image_words"]


class AcceleratorError(RuntimeError):
    """The accelerator reported an error, timed out, or is not the expected hardware."""


@dataclasses.dataclass
class Inference:
    """One image's results: logits (int64 vector), chosen bits per slot, the prediction,
    total cycles and cycles per op (program order: fetching, checking and running it, the
    first op with the program's check; they add up to the total)."""
    logits: np.ndarray
    bits: list
    prediction: int
    cycles: int
    op_cycles: list


def model_writes(model, regmap=None):
    """(byte address, 32-bit value) writes that load `model` (a `CompiledModel`): program,
    data memory image (weights and constants) and controller table."""
    regmap = regmap or register_map(model.config)
    writes = []
    base = regmap["PROGRAM"].offset
    writes += [(base + 4 * i, int(w)) for i, w in enumerate(model.program)]
    base = regmap["DATA"].offset
    for i, word in enumerate(model.data):
        word = int(word)
        writes += [(base + 8 * i, word & 0xFFFFFFFF), (base + 8 * i + 4, word >> 32)]
    base = regmap["TABLE"].offset
    writes += [(base + 4 * i, int(w)) for i, w in enumerate(model.table)]
    return writes


def image_words(model, codes):
    """The input tensor's stored elements (HWC, Cp channels) packed four codes per 32-bit
    word, code e in byte e % 4 of word e // 4: what the IMAGE window takes from the input
    tensor's first word on."""
    placement = model.tensors[model.inputs[0]["name"]]
    elements = placement.to_elements(codes)
    padded = np.zeros(-(-elements.size // 4) * 4, dtype=np.int64)
    padded[:elements.size] = elements & 0xFF
    quads = padded.reshape(-1, 4)
    return [int(q[0] | q[1] << 8 | q[2] << 16 | q[3] << 24) for q in quads]


class AcceleratorDriver:
    """Drive one accelerator (see the module docstring). `timeout_cycles` bounds the wait for
    DONE, counted in STATUS polls."""

    def __init__(self, transport, model, *, max_polls=10**6, poll_cycles=256):
        self.transport = transport
        self.model = model
        self.regmap = register_map(model.config)
        self.max_polls = max_polls
        self.poll_cycles = poll_cycles
        self._logits = next(o for o in model.outputs if o["name"] != "bits"
                            and o.get("memory") != "slots")
        self._bits = next((o for o in model.outputs if o.get("memory") == "slots"), None)

    def _addr(self, name, index=0):
        return self.regmap[name].offset + 4 * index

    async def read(self, name, index=0):
        return await self.transport.read(self._addr(name, index))

    async def read_block(self, name, first, count):
        """`count` consecutive words of `name` (a window or register array) from `first`."""
        address = self._addr(name, first)
        burst = getattr(self.transport, "read_words", None)
        if burst is not None:
            return list(await burst(address, count))
        return [await self.transport.read(address + 4 * i) for i in range(count)]

    async def write(self, name, value, index=0):
        await self.transport.write(self._addr(name, index), value)

    async def check_identity(self):
        """Refuse hardware that is not a dqt-hw accelerator of this version and config."""
        ident = await self.read("ID")
        if ident != ACCEL_ID:
            raise AcceleratorError(f"ID register reads {ident:#010x}, not {ACCEL_ID:#010x}: "
                                   f"not a dqt-hw accelerator (or the link is wrong)")
        version = await self.read("VERSION")
        if version & 0xFF != HARDWARE_VERSION or (version >> 8) & 0xFF != PROGRAM_VERSION:
            raise AcceleratorError(f"hardware version {version & 0xFF} / program version "
                                   f"{(version >> 8) & 0xFF}; this driver needs "
                                   f"{HARDWARE_VERSION} / {PROGRAM_VERSION}")
        config = await self.read("CONFIG")
        cfg = self.model.config
        cols, mask = config & 0xFF, (config >> 20) & 0x1FF
        want = sum(1 << b for b in cfg.supported_bits)
        if cols != cfg.cols or mask != want:
            raise AcceleratorError(f"the hardware has {cols} columns and bit mask {mask:#x}; "
                                   f"the model was compiled for {cfg.cols} and {want:#x}")
        for name, need in (("MAX_TERMS", cfg.max_terms), ("DATA_WORDS", cfg.data_words)):
            have = await self.read(name)
            if have != need:
                raise AcceleratorError(f"the hardware's {name} is {have}; the model was "
                                       f"compiled for {need}")

    async def load_model(self):
        for address, value in model_writes(self.model, self.regmap):
            await self.transport.write(address, value)

    async def write_image(self, codes):
        placement = self.model.tensors[self.model.inputs[0]["name"]]
        base = self.regmap["IMAGE"].offset + 8 * placement.base   # 2 bus words per data word
        for i, word in enumerate(image_words(self.model, codes)):
            await self.transport.write(base + 4 * i, word)

    async def run(self):
        """START, then poll STATUS until DONE; raise on an error code or a timeout."""
        await self.write("CONTROL", 1)
        wait = getattr(self.transport, "wait", None)
        for _ in range(self.max_polls):
            status = await self.read("STATUS")
            if status & 0b10 and not status & 0b1:
                break
            if wait is not None:
                await wait(self.poll_cycles)
        else:
            raise AcceleratorError(f"no DONE after {self.max_polls} STATUS polls")
        if status & 0b100:
            code = (status >> 8) & 0xFF
            raise AcceleratorError(f"the accelerator stopped with error {code}: "
                                   f"{ErrorCode.DESCRIPTIONS.get(code, 'unknown error code')}")

    async def read_results(self):
        logits = self._logits
        words = await self.read_block("WIDE", logits["base"], int(np.prod(logits["shape"])))
        values = [value - (1 << 32) if value >> 31 else value for value in words]
        bits = []
        if self._bits is not None:
            slots = self._bits["slots"]
            first = min(slots)
            choices = await self.read_block("BITS", first, max(slots) - first + 1)
            bits = [choices[slot - first] >> 4 for slot in slots]
        cycles = await self.read("CYCLES")
        ends = await self.read_block("OP_CYCLES", 0, len(self.model.ops))
        op_cycles = np.diff(ends, prepend=0).tolist()
        logits = np.asarray(values, dtype=np.int64)
        return Inference(logits=logits, bits=bits, prediction=int(np.argmax(logits)),
                         cycles=cycles, op_cycles=op_cycles)

    async def infer(self, codes):
        """One image (its master codes, shape (C, H, W)) -> `Inference`."""
        await self.write_image(codes)
        await self.run()
        return await self.read_results()
