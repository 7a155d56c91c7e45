"""The accelerator's program: a header and one fixed-size instruction per op.

The layout of an instruction is defined once here (`INSTRUCTION`, an `amaranth.lib.data`
layout whose opcode-specific fields share bits) and used by the compiler to encode, by the
sequencer to decode and by the tests to inspect. docs/accelerator.md ("Program format")
gives the meaning of every field.

Program memory (32-bit words):

    word 0      PROGRAM_MAGIC ("DQTP")
    word 1      PROGRAM_VERSION | op count << 16
    word 2      checksum: sum of every instruction word, modulo 2^32
    word 3      0 (reserved)
    word 4 + 10 i ... 4 + 10 i + 9: instruction i, least significant word first

The sequencer checks magic, version and checksum before it runs anything (a corrupt or
half-loaded program is refused with an error code, never executed).
"""

from amaranth.hdl import signed, unsigned
from amaranth.lib import data

__all__ = ["Opcode", "PROGRAM_MAGIC", "PROGRAM_VERSION", "HEADER_WORDS", "INSTRUCTION_WORDS",
           "RANGE_BOUND_BITS", "INSTRUCTION", "OPCODE_FIELDS", "encode_instruction",
           "decode_instruction", "encode_program", "program_checksum", "ProgramError"]

PROGRAM_MAGIC = int.from_bytes(b"DQTP", "little")
PROGRAM_VERSION = 3
HEADER_WORDS = 4
INSTRUCTION_WORDS = 10

#: Width of the clip bounds lo, hi: every code range fits (docs/arithmetic.md: [-128, 255] at
#: n = 8); a 32-bit output (logits) is clipped at the int32 limits (`full_range`) or as a code.
RANGE_BOUND_BITS = 10


class ProgramError(ValueError):
    """An instruction field that does not fit its width, or a malformed program image."""


class Opcode:
    CONV = 1          # conv2d and linear: the MAC array, requantizer and tensor writer
    POOL = 2          # avg_pool2d and global_avg_pool: window sums, requantizer
    ELEMENTWISE = 3   # add (residual join) and clip: the residual adder
    SELECT = 4        # select_bits: argmax per controlled layer -> chosen candidates

    NAMES = {CONV: "conv", POOL: "pool", ELEMENTWISE: "elementwise", SELECT: "select"}


# An instruction holds the fields its opcode uses: a prefix every opcode shares, then a region
# that CONV/POOL use for their window walk and ELEMENTWISE for its operands and k-constants
# (the region is a union: the sequencer's instruction register holds only the longest).
_COMMON_FIELDS = {
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
    "out": unsigned(16),           # word address of the output (wide index if out_wide)
    "out_c": unsigned(12),         # real output channels (select: layers)
    # requantizer / adder constants
    "shift": unsigned(6),          # pool and elementwise: r
    "lo": signed(RANGE_BOUND_BITS),
    "hi": signed(RANGE_BOUND_BITS),
    "full_range": unsigned(1),     # clip at the 32-bit limits, not at [lo, hi]
}
_WINDOW_FIELDS = {
    "out_cp": unsigned(12),        # output storage channels
    "out_h": unsigned(8),
    "out_w": unsigned(8),
    "in_h": unsigned(8),
    "in_w": unsigned(8),
    "in_cp": unsigned(12),         # input storage channels (the products of one tap)
    "kernel_h": unsigned(4),
    "kernel_w": unsigned(4),
    "stride": unsigned(4),
    "pad": unsigned(4),
    "e_init": signed(20),          # element of the first window's top-left tap: -pad*(in_w+1)*in_cp
    # What a move to the next tap row, output pixel and output row adds to a beat's step:
    "row_jump": signed(20),        # in_w in_cp - kernel_w in_cp
    "pixel_jump": signed(20),      # row_jump + stride in_cp - kernel_h in_w in_cp
    "line_jump": signed(20),       # pixel_jump + stride in_w in_cp - out_w stride in_cp
    "weights": unsigned(16),       # conv: word address of output channel 0's weight row
    "row_words": unsigned(12),     # conv: words per weight row (two per group of 16 codes)
    "consts": unsigned(16),        # conv: data word holding output channel 0's constants
    "multiplier": unsigned(16),    # pool: M
}
_ELEMENTWISE_FIELDS = {
    "in_b": unsigned(16),          # word address of input B
    "count": unsigned(16),         # groups to process
    "k1": signed(16),
    "k2": signed(16),
    "k3": signed(32),
}


def _union_layout():
    fields, offset = {}, 0
    for name, shape in _COMMON_FIELDS.items():
        fields[name] = data.Field(shape, offset)
        offset += shape.width
    end = offset
    for region in (_WINDOW_FIELDS, _ELEMENTWISE_FIELDS):
        at = offset
        for name, shape in region.items():
            fields[name] = data.Field(shape, at)
            at += shape.width
        end = max(end, at)
    return data.FlexibleLayout(end, fields)


INSTRUCTION = _union_layout()

#: The fields an instruction of each opcode carries (any other opcode: the common prefix).
OPCODE_FIELDS = {
    Opcode.CONV: (*_COMMON_FIELDS, *_WINDOW_FIELDS),
    Opcode.POOL: (*_COMMON_FIELDS, *_WINDOW_FIELDS),
    Opcode.ELEMENTWISE: (*_COMMON_FIELDS, *_ELEMENTWISE_FIELDS),
    Opcode.SELECT: tuple(_COMMON_FIELDS),
}

assert INSTRUCTION.size <= INSTRUCTION_WORDS * 32


def _fields_of(opcode):
    return OPCODE_FIELDS.get(opcode, tuple(_COMMON_FIELDS))


def encode_instruction(fields):
    """A dict of field values (missing fields are 0) -> INSTRUCTION_WORDS 32-bit words, LSB
    first. Only the fields of the instruction's opcode may be given (they share bits)."""
    allowed = _fields_of(int(fields.get("opcode", 0)))
    unknown = set(fields) - set(allowed)
    if unknown:
        other = sorted(unknown & {name for name, _ in INSTRUCTION})
        if other:
            raise ProgramError(f"instruction field(s) {other} are not part of an opcode "
                               f"{int(fields.get('opcode', 0))} instruction")
        raise ProgramError(f"unknown instruction field(s) {sorted(unknown)}")
    raw = 0
    for name in allowed:
        field = INSTRUCTION[name]
        value = int(fields.get(name, 0))
        shape = field.shape
        low, high = ((-(1 << (shape.width - 1)), (1 << (shape.width - 1)) - 1) if shape.signed
                     else (0, (1 << shape.width) - 1))
        if not low <= value <= high:
            raise ProgramError(f"instruction field {name} = {value} does not fit "
                               f"{shape.width} bits ({'signed' if shape.signed else 'unsigned'}; "
                               f"[{low}, {high}])")
        raw |= (value & ((1 << shape.width) - 1)) << field.offset
    return [(raw >> (32 * i)) & 0xFFFFFFFF for i in range(INSTRUCTION_WORDS)]


def decode_instruction(words):
    """INSTRUCTION_WORDS words -> {field: int}, the fields of the instruction's opcode."""
    raw = sum(int(w) << (32 * i) for i, w in enumerate(words))
    result = {}
    for name in _fields_of(raw & 0xF):
        field = INSTRUCTION[name]
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
