"""The accelerator's register map: one Python source for the hardware decoder, the host driver,
the firmware header, the docs table and the JSON map.

`register_map(config)` returns a `RegisterMap` of `Register`s and `Window`s (byte addresses on
a 32-bit bus). Renderers: `render_markdown` (docs/regmap.md), `render_c_header`
(firmware/include/dqt_regs.h) and `render_json` (firmware/include/dqt_regs.json), all for the
default `AcceleratorConfig`; `python -m dqt_hw.accel.regmap --check` (and a test) regenerate
them and fail on any difference.

Bus behaviour (docs/accelerator.md, "Host interface"): every access is acknowledged, so a
host never hangs. Reads of undefined addresses return 0 and writes to them are dropped; both
set STATUS.BUS_ERROR. Memory windows are usable only while the accelerator is not busy: while
busy their reads return 0 and writes are dropped, and STATUS.BUS_ERROR is set. START while
busy is ignored and sets STATUS.START_IGNORED. Byte selects are ignored: every write writes
a whole 32-bit word.
"""

import dataclasses
import json

from .config import AcceleratorConfig
from .program import HEADER_WORDS, INSTRUCTION_WORDS, PROGRAM_VERSION

__all__ = ["ACCEL_ID", "HARDWARE_VERSION", "REGMAP_VERSION", "ErrorCode", "Field", "Register",
           "Window", "RegisterMap", "register_map", "render_markdown", "render_c_header",
           "render_json", "GENERATED_FILES"]

#: ID register value: the bytes "DQTA" on a little-endian bus.
ACCEL_ID = int.from_bytes(b"DQTA", "little")
HARDWARE_VERSION = 1
REGMAP_VERSION = 2


class ErrorCode:
    """STATUS.ERROR_CODE values: why the last run stopped early (0: it did not)."""
    NONE = 0
    BAD_HEADER = 1          # program magic or version is not this hardware's
    BAD_CHECKSUM = 2        # the program words do not add up to the header's checksum
    TOO_MANY_OPS = 3        # more ops than the program memory or the op counters hold
    BAD_OPCODE = 4          # an instruction with an unknown opcode
    BAD_INSTRUCTION = 5     # a field out of range (zero sizes, dot product over max_terms, ...)

    DESCRIPTIONS = {
        NONE: "no error",
        BAD_HEADER: "program magic or version does not match this hardware",
        BAD_CHECKSUM: "program checksum does not match its words (corrupt or partly loaded)",
        TOO_MANY_OPS: "the program has more ops than the hardware holds",
        BAD_OPCODE: "an instruction has an unknown opcode",
        BAD_INSTRUCTION: "an instruction has a field out of range",
    }


@dataclasses.dataclass(frozen=True)
class Field:
    name: str
    lsb: int
    width: int
    doc: str

    @property
    def mask(self):
        return ((1 << self.width) - 1) << self.lsb


@dataclasses.dataclass(frozen=True)
class Register:
    name: str
    offset: int
    access: str            # "ro", "wo", "rw"
    doc: str
    fields: tuple = ()
    count: int = 1         # an array of `count` registers, 4 bytes apart


@dataclasses.dataclass(frozen=True)
class Window:
    name: str
    offset: int
    words: int             # 32-bit bus words the window spans (its size in bytes / 4)
    access: str
    doc: str


@dataclasses.dataclass(frozen=True)
class RegisterMap:
    registers: tuple
    windows: tuple
    config: AcceleratorConfig

    def __getitem__(self, name):
        for item in self.registers + self.windows:
            if item.name == name:
                return item
        raise KeyError(name)

    @property
    def address_bits(self):
        """Byte-address bits the decoder looks at."""
        return 20


def register_map(config=None):
    config = config or AcceleratorConfig()
    registers = (
        Register("ID", 0x0000, "ro", f"0x{ACCEL_ID:08x} (\"DQTA\")"),
        Register("VERSION", 0x0004, "ro", "versions of this hardware",
                 (Field("HARDWARE", 0, 8, "hardware version"),
                  Field("PROGRAM", 8, 8, "program format version it runs"),
                  Field("REGMAP", 16, 8, "register map version"))),
        Register("CONFIG", 0x0008, "ro", "build parameters",
                 (Field("COLS", 0, 8, "MAC array columns"),
                  Field("POOL_LANES", 8, 8, "pooling lanes"),
                  Field("MASTER_BITS", 16, 4, "master width n"),
                  Field("BITS_MASK", 20, 9, "bit b set: the array runs b-bit layers"))),
        Register("MAX_TERMS", 0x000C, "ro", "longest dot product (codes) the array holds"),
        Register("DATA_WORDS", 0x0010, "ro", "64-bit words of the data memory"),
        Register("CONTROL", 0x0014, "wo", "write 1 to a bit to act",
                 (Field("START", 0, 1, "run the loaded program on the loaded image"),
                  Field("SOFT_RESET", 1, 1, "stop a run, clear STATUS and the counters"),
                  Field("CLEAR", 2, 1, "clear the sticky STATUS flags"))),
        Register("STATUS", 0x0018, "ro", "state of the accelerator",
                 (Field("BUSY", 0, 1, "a run is in progress"),
                  Field("DONE", 1, 1, "the last run finished (with or without error)"),
                  Field("ERROR", 2, 1, "the last run stopped with an error"),
                  Field("ERROR_CODE", 8, 8, "why (ErrorCode)"),
                  Field("START_IGNORED", 16, 1, "sticky: START came while busy"),
                  Field("BUS_ERROR", 17, 1, "sticky: an undefined address, or a memory window "
                                           "while busy"))),
        Register("CYCLES", 0x001C, "ro", "clock cycles of the last (or current) run"),
        Register("OPS_DONE", 0x0020, "ro", "instructions completed in the last run"),
        Register("BITS", 0x0100, "ro", "per controlled-layer slot: the choice of the last run",
                 (Field("CANDIDATE", 0, 4, "index of the chosen candidate"),
                  Field("WIDTH", 4, 4, "its bit-width")), count=config.slots),
        Register("OP_CYCLES", 0x0400, "ro", "CYCLES when each instruction of the last run "
                                            "ended; its cycles (fetch, check and run) are the "
                                            "difference to the entry before (to 0 for the "
                                            "first)", count=config.max_ops),
    )
    windows = (
        Window("WIDE", 0x2000, config.wide_words, "ro",
               "wide memory: one 32-bit value (logits) per word"),
        Window("TABLE", 0x3000, config.table_words, "wo",
               "controller table: bits | s_a << 8 | s_w << 16 | acc_shift << 24"),
        Window("PROGRAM", 0x10000, config.program_words, "rw", "program memory"),
        Window("IMAGE", 0x20000, config.data_words * 2, "wo",
               "the data memory as 8-bit codes, four per word (code e at byte e % 4 of "
               "word e / 4; code 16 g + l is lane l of the group at data words 2 g, 2 g + 1): "
               "an input tensor at data word B starts at word 2 B"),
        Window("DATA", 0x80000, 2 * config.data_words,
               "rw" if config.data_readable else "wo",
               "data memory, two bus words per 64-bit word (low half first)"),
    )
    return RegisterMap(registers, windows, config)


#: Generated files and their renderers, for the regenerate-and-diff check.
GENERATED_FILES = {
    "docs/regmap.md": "render_markdown",
    "firmware/include/dqt_regs.h": "render_c_header",
    "firmware/include/dqt_regs.json": "render_json",
}

_HEADER_NOTE = ("Generated by `python -m dqt_hw.accel.regmap` from dqt_hw/accel/regmap.py "
                "for the default AcceleratorConfig; do not edit.")


def render_markdown(regmap):
    lines = ["# Accelerator register map", "", _HEADER_NOTE, "",
             f"Configuration: {regmap.config.describe()}. Byte addresses on a 32-bit bus "
             f"(Wishbone classic); ID {ACCEL_ID:#010x}, hardware version {HARDWARE_VERSION}, "
             f"register map version {REGMAP_VERSION}.", "",
             "## Registers", "", "| address | name | access | meaning |", "|---|---|---|---|"]
    for reg in regmap.registers:
        where = (f"0x{reg.offset:05x}" if reg.count == 1 else
                 f"0x{reg.offset:05x} + 4 i, i < {reg.count}")
        lines.append(f"| {where} | {reg.name} | {reg.access} | {reg.doc} |")
    lines += ["", "## Fields", "", "| register | field | bits | meaning |", "|---|---|---|---|"]
    for reg in regmap.registers:
        for field in reg.fields:
            bits = (f"{field.lsb}" if field.width == 1 else
                    f"{field.lsb + field.width - 1}:{field.lsb}")
            lines.append(f"| {reg.name} | {field.name} | {bits} | {field.doc} |")
    lines += ["", "## Memory windows", "", "| address | name | size (bytes) | access | meaning |",
              "|---|---|---|---|---|"]
    for win in regmap.windows:
        lines.append(f"| 0x{win.offset:05x} | {win.name} | {4 * win.words} | {win.access} | "
                     f"{win.doc} |")
    lines += ["", "## Error codes (STATUS.ERROR_CODE)", "", "| code | meaning |", "|---|---|"]
    for code, text in ErrorCode.DESCRIPTIONS.items():
        name = next(k for k, v in vars(ErrorCode).items() if v == code and k.isupper())
        lines.append(f"| {code} | {name}: {text} |")
    return "\n".join(lines) + "\n"


def render_c_header(regmap):
    lines = ["/* " + _HEADER_NOTE + " */", "#ifndef DQT_REGS_H", "#define DQT_REGS_H", "",
             f"#define DQT_ID 0x{ACCEL_ID:08x}u",
             f"#define DQT_HARDWARE_VERSION {HARDWARE_VERSION}u",
             f"#define DQT_REGMAP_VERSION {REGMAP_VERSION}u",
             # The program format (dqt_hw/accel/program.py), for firmware that walks a program.
             f"#define DQT_PROGRAM_VERSION {PROGRAM_VERSION}u",
             f"#define DQT_PROGRAM_HEADER_WORDS {HEADER_WORDS}u",
             f"#define DQT_PROGRAM_INSTRUCTION_WORDS {INSTRUCTION_WORDS}u", ""]
    for reg in regmap.registers:
        lines.append(f"#define DQT_REG_{reg.name} 0x{reg.offset:05x}u")
        if reg.count > 1:
            lines.append(f"#define DQT_REG_{reg.name}_COUNT {reg.count}u")
        for field in reg.fields:
            lines.append(f"#define DQT_{reg.name}_{field.name}_SHIFT {field.lsb}u")
            lines.append(f"#define DQT_{reg.name}_{field.name}_MASK 0x{field.mask:08x}u")
    lines.append("")
    for win in regmap.windows:
        lines.append(f"#define DQT_WIN_{win.name} 0x{win.offset:05x}u")
        lines.append(f"#define DQT_WIN_{win.name}_WORDS {win.words}u")
    lines.append("")
    for code, _ in ErrorCode.DESCRIPTIONS.items():
        name = next(k for k, v in vars(ErrorCode).items() if v == code and k.isupper())
        lines.append(f"#define DQT_ERROR_{name} {code}u")
    lines += ["", "#endif /* DQT_REGS_H */"]
    return "\n".join(lines) + "\n"


def render_json(regmap):
    document = {
        "note": _HEADER_NOTE, "id": ACCEL_ID, "hardware_version": HARDWARE_VERSION,
        "regmap_version": REGMAP_VERSION, "config": dataclasses.asdict(regmap.config),
        "registers": [dataclasses.asdict(r) for r in regmap.registers],
        "windows": [dataclasses.asdict(w) for w in regmap.windows],
        "errors": {str(code): text for code, text in ErrorCode.DESCRIPTIONS.items()},
    }
    return json.dumps(document, indent=1) + "\n"


def main(argv=None):
    import argparse
    import sys
    from pathlib import Path

    from ..atomic import write_atomic

    parser = argparse.ArgumentParser(
        prog="python -m dqt_hw.accel.regmap",
        description="Write the register map's generated files (docs table, C header, JSON) "
                    "for the default configuration, or check them (--check).")
    parser.add_argument("--check", action="store_true",
                        help="regenerate in memory and exit 1 if a committed file differs")
    parser.add_argument("--root", default=str(Path(__file__).resolve().parents[2]),
                        help="repository root (default: this checkout)")
    args = parser.parse_args(argv)
    regmap = register_map()
    stale = []
    for path, renderer in GENERATED_FILES.items():
        text = globals()[renderer](regmap)
        target = Path(args.root) / path
        if args.check:
            if not target.exists() or target.read_text() != text:
                stale.append(path)
        else:
            write_atomic(target, text)
            print(f"wrote {path}")
    if stale:
        print(f"error: stale generated file(s) {', '.join(stale)}; regenerate with "
              f"`python -m dqt_hw.accel.regmap`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
