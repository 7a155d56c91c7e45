"""The accelerator's program: a header and one fixed-size instruction per op.

The layout of an instruction is defined once here (`INSTRUCTION`, an `amaranth.lib.data`
struct) and used by the compiler to encode, by the sequencer to decode and by the tests to
inspect. docs/accelerator.md ("Program format") gives the meaning of every field.

Program memory (32-bit words):

    word 0      PROGRAM_MAGIC ("DQTP")
    word 1      PROGRAM_VERSION | op count << 16
    word 2      checksum: sum of every instruction word, modulo 2^32
    word 3      0 (reserved)
    word 4 + 16 i ... 4 + 16 i + 15: instruction i, least significant word first

The sequencer checks magic, version and checksum before it runs anything (a corrupt or
half-loaded program is refused with an error code, never executed).
"""

from amaranth.hdl import signed, unsigned
from amaranth.lib import data

__all__ = ["Opcode", "PROGRAM_MAGIC", "PROGRAM_VERSION", "HEADER_WORDS", "INSTRUCTION_WORDS",
           "INSTRUCTION", "encode_instruction", "decode_instruction", "encode_program",
           "program_checksum", "ProgramError"]

PROGRAM_MAGIC = int.from_bytes(b"DQTP", "little")
PROGRAM_VERSION = 1
HEADER_WORDS = 4
INSTRUCTION_WORDS = 16


class ProgramError(ValueError):
    """An instruction field that does not fit its width, or a malformed program image."""


class Opcode:
    CONV = 1          # conv2d and linear: the MAC array, requantizer and tensor writer
    POOL = 2          # avg_pool2d and global_avg_pool: window sums, requantizer
    ELEMENTWISE = 3   # add (residual join) and clip: the residual adder
    SELECT = 4        # select_bits: argmax per controlled layer -> chosen candidates

    NAMES = {CONV: "conv", POOL: "pool", ELEMENTWISE: "elementwise", SELECT: "select"}


INSTRUCTION = data.StructLayout({
    "opcode": unsigned(4),
    # flags
    "a_signed": unsigned(1),       # input A holds signed codes
    "b_signed": unsigned(1),       # input B holds signed codes (elementwise)
    "single": unsigned(1),         # elementwise with one input (clip)
    "out_wide": unsigned(1),       # output goes to the wide (32-bit) memory
    "bits_select": unsigned(1),    # conv: bit-width from the controller (slot), not `bits`
    "bits": unsigned(4),           # conv: fixed bit-width
    "slot": unsigned(6),           # conv: controlled-layer slot; select: first slot written
    "table_row": unsigned(10),     # controller-table row of candidate 0 (conv: of its slot)
    "candidates": unsigned(4),     # select: candidates per layer
    # tensors
    "in_a": unsigned(16),          # word address of input A (wide index for select)
    "in_b": unsigned(16),          # word address of input B (elementwise)
    "out": unsigned(16),           # word address of the output (wide index if out_wide)
    "out_c": unsigned(12),         # real output channels (select: layers)
    "out_cp": unsigned(12),        # output storage channels
    "out_h": unsigned(8),
    "out_w": unsigned(8),
    "count": unsigned(16),         # elementwise: groups to process
    # window geometry (conv, pool)
    "in_h": unsigned(8),
    "in_w": unsigned(8),
    "in_cp": unsigned(12),         # input storage channels (the products of one tap)
    "kernel_h": unsigned(4),
    "kernel_w": unsigned(4),
    "stride": unsigned(4),
    "pad": unsigned(4),
    "e_init": signed(20),          # element of the first window's top-left tap: -pad*(in_w+1)*in_cp
    "row_wrap": signed(20),        # in_w in_cp - kernel_w in_cp: from a tap row to the next
    "pixel_wrap": signed(20),      # stride in_cp - kernel_h in_w in_cp: to the next pixel
    "line_wrap": signed(20),       # stride in_w in_cp - out_w stride in_cp: to the next row
    # conv weights and constants
    "weights": unsigned(16),       # word address of output channel 0's weight row
    "row_words": unsigned(12),     # words per weight row (two per group of 16 codes)
    "consts": unsigned(16),        # data word holding output channel 0's constants
    # requantizer / adder constants
    "lo": signed(32),
    "hi": signed(32),
    "multiplier": unsigned(16),    # pool: M
    "shift": unsigned(6),          # pool and elementwise: r
    "k1": signed(16),
    "k2": signed(16),
    "k3": signed(32),
})

assert INSTRUCTION.size <= INSTRUCTION_WORDS * 32


def encode_instruction(fields):
    """A dict of field values (missing fields are 0) -> 16 32-bit words, LSB first."""
    values = {}
    for name, field in INSTRUCTION:
        value = int(fields.get(name, 0))
        shape = field.shape
        low, high = ((-(1 << (shape.width - 1)), (1 << (shape.width - 1)) - 1) if shape.signed
                     else (0, (1 << shape.width) - 1))
        if not low <= value <= high:
            raise ProgramError(f"instruction field {name} = {value} does not fit "
                               f"{shape.width} bits ({'signed' if shape.signed else 'unsigned'}; "
                               f"[{low}, {high}])")
        values[name] = value
    unknown = set(fields) - set(values)
    if unknown:
        raise ProgramError(f"unknown instruction field(s) {sorted(unknown)}")
    raw = INSTRUCTION.const(values).as_value().value
    return [(raw >> (32 * i)) & 0xFFFFFFFF for i in range(INSTRUCTION_WORDS)]


def decode_instruction(words):
    """16 words -> {field: int}."""
    raw = sum(int(w) << (32 * i) for i, w in enumerate(words))
    result = {}
    for name, field in INSTRUCTION:
        value = (raw >> field.offset) & ((1 << field.width) - 1)
        if field.shape.signed and value >> (field.width - 1):
            value -= 1 << field.width
        result[name] = value
    return result


def program_checksum(instruction_words):
    return sum(instruction_words) & 0xFFFFFFFF


def encode_program(instructions):
    """A list of field dicts -> the program memory image (list of 32-bit words)."""
    body = [word for fields in instructions for word in encode_instruction(fields)]
    return [PROGRAM_MAGIC, PROGRAM_VERSION | len(instructions) << 16, program_checksum(body),
            0] + body
