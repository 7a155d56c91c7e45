"""The accelerator's compiler, layout and program format (no hardware simulation)."""

import json

import numpy as np
import pytest

from dqt_hw.accel.compile import main as compile_main
from dqt_hw.accel.compiler import CompileError, compile_graph, pack_constant
from dqt_hw.accel.config import AcceleratorConfig, products_per_beat
from dqt_hw.accel.layout import (TensorPlacement, conv_weight_rows, pack_groups,
                                 storage_channels, unpack_groups)
from dqt_hw.accel.program import (INSTRUCTION_WORDS, PROGRAM_MAGIC, PROGRAM_VERSION,
                                  ProgramError, decode_instruction, encode_instruction, encode_program)
from dqt_hw.hdl.pe import mode_bits
from dqt_hw.package import write_package

from test_export_package import random_graph

SMALL = dict(cols=2, data_words=2048, program_words=256, wide_words=64, table_words=64, slots=8, max_ops=16, max_terms=256)


def test_products_per_beat_follows_the_fusion_modes():
    for bits in range(2, 9):
        assert products_per_beat(bits) == (8 // mode_bits(bits)) ** 2


@pytest.mark.parametrize("signed", [False, True])
def test_groups_round_trip_every_code(signed):
    codes = np.arange(-128, 128) if signed else np.arange(256)
    words = pack_groups(codes, signed=signed)
    assert words.size == 2 * 16
    assert list(unpack_groups(words, codes.size, signed=signed)) == list(codes)
    # Word 0 holds the high nibbles of codes 0..15, lane j at bits [4j, 4j + 4).
    assert int(words[0]) == sum(((int(c) & 0xFF) >> 4) << (4 * j)
                                for j, c in enumerate(codes[:16]))


def test_storage_channels():
    assert [storage_channels(c) for c in (1, 3, 8, 16, 17, 40)] == [1, 4, 8, 16, 32, 48]
    assert storage_channels(3, 16) == 16 and storage_channels(8, 4) == 8


def test_placement_round_trip_and_padding():
    t = TensorPlacement("t", (3, 2, 2), channels_stored=4, signed=False)
    codes = np.arange(12).reshape(3, 2, 2)
    elements = t.to_elements(codes)
    assert list(elements[:8]) == [0, 4, 8, 0, 1, 5, 9, 0]       # pixel-major, lane 3 padding
    assert np.array_equal(t.from_elements(elements), codes)


def test_weight_rows_are_tap_major_with_padded_channels():
    w = np.arange(2 * 3 * 2 * 2).reshape(2, 3, 2, 2) - 10
    rows = conv_weight_rows(w, 4)
    assert rows.shape == (2, 16)
    assert list(rows[0, :8]) == [w[0, 0, 0, 0], w[0, 1, 0, 0], w[0, 2, 0, 0], 0,
                                 w[0, 0, 0, 1], w[0, 1, 0, 1], w[0, 2, 0, 1], 0]


def test_instruction_round_trip_and_overflow_message():
    fields = dict(opcode=1, e_init=-17, lo=-512, hi=511, full_range=1, weights=3, in_cp=4095)
    words = encode_instruction(fields)
    assert len(words) == INSTRUCTION_WORDS
    decoded = decode_instruction(words)
    assert {k: v for k, v in decoded.items() if v} == fields
    with pytest.raises(ProgramError, match=r"^instruction field in_cp = 4096 does not fit "
                                           r"12 bits \(unsigned; \[0, 4095\]\)$"):
        encode_instruction(dict(opcode=1, in_cp=4096))
    program = encode_program([fields])
    assert program[0] == PROGRAM_MAGIC and program[1] == PROGRAM_VERSION | 1 << 16
    assert program[2] == sum(words) & 0xFFFFFFFF


def test_opcodes_share_the_instruction_bits_beyond_the_common_prefix():
    # ELEMENTWISE's operands and k-constants lie where CONV/POOL keep their window walk, so the
    # instruction register holds the longer of the two, not their sum.
    from dqt_hw.accel.program import INSTRUCTION, OPCODE_FIELDS, Opcode
    assert INSTRUCTION["in_b"].offset == INSTRUCTION["out_cp"].offset
    window_bits = sum(INSTRUCTION[name].width for name in OPCODE_FIELDS[Opcode.CONV])
    assert INSTRUCTION.size == window_bits <= 32 * INSTRUCTION_WORDS
    add = dict(opcode=Opcode.ELEMENTWISE, in_a=5, in_b=9, count=2, k1=-3, k2=7, k3=-100,
               shift=4, lo=-128, hi=127)
    assert {k: v for k, v in decode_instruction(encode_instruction(add)).items() if v} == add
    with pytest.raises(ProgramError, match=r"^instruction field\(s\) \['weights'\] are not "
                                           r"part of an opcode 3 instruction$"):
        encode_instruction(dict(add, weights=1))
    with pytest.raises(ProgramError, match=r"^unknown instruction field\(s\) \['nope'\]$"):
        encode_instruction(dict(opcode=Opcode.SELECT, nope=1))


@pytest.mark.parametrize("dynamic", [True, False])
def test_live_tensors_never_overlap(dynamic):
    graph = random_graph(3, dynamic=dynamic)
    model = compile_graph(graph, AcceleratorConfig(**SMALL))
    order = {op["name"]: i for i, op in enumerate(graph["ops"])}
    producer = {op["output"]: order[op["name"]] for op in graph["ops"]}
    last = {}
    for op in graph["ops"]:
        for t in (op["inputs"] if op["op"] == "add" else [op["input"]]):
            last[t] = order[op["name"]]
    spans = {}
    for name, t in model.tensors.items():
        if t.wide or name not in producer and name not in graph["inputs"]:
            continue
        if any(o["op"] == "flatten" and o["output"] == name for o in graph["ops"]):
            continue
        start = producer.get(name, -1)
        spans[name] = (start, last.get(name, len(graph["ops"])), t.base, t.base + t.words)
    assert all(t.base >= model.data.size for t in model.tensors.values() if not t.wide)
    for a, (s1, e1, lo1, hi1) in spans.items():
        for b, (s2, e2, lo2, hi2) in spans.items():
            if a < b and s1 <= e2 and s2 <= e1:          # alive at the same time
                assert hi1 <= lo2 or hi2 <= lo1, (a, b)


def test_constants_and_table_images():
    graph = random_graph(1, dynamic=True)
    model = compile_graph(graph, AcceleratorConfig(**SMALL))
    stem = graph["ops"][0]
    assert model.constants[0] == pack_constant(stem["bias"][0], stem["multiplier"][0],
                                               stem["shift"][0])
    first = model.data.size - len(model.constants)          # constants follow the weights
    assert [int(w) for w in model.data[first:]] == model.constants
    assert model.table == [2 | 6 << 8 | 6 << 16 | 12 << 24, 4 | 4 << 8 | 4 << 16 | 8 << 24,
                           8] * 2
    assert [s["layer"] for s in model.slots] == ["block1", "block2"]


def _refusal(graph, message, **config):
    with pytest.raises(CompileError, match=message):
        compile_graph(graph, AcceleratorConfig(**dict(SMALL, **config)))


def test_refusals_name_what_does_not_fit():
    graph = random_graph(0, dynamic=True)
    _refusal(graph, r"^op 'block1': a dot product takes 144 codes .* max_terms = 128 "
                    r"\(16 too many\)$", max_terms=128)
    _refusal(graph, r"^the weights and constants need \d+ data words but the data memory "
                    r"has 100 \(\d+ too many\)$", data_words=100)
    _refusal(graph, r"^the model needs \d+ words of program memory", program_words=64)
    _refusal(graph, r"^the model needs 11 ops of ops but the configuration has 4 \(7 too many\)$",
             max_ops=4)
    _refusal(graph, r"^op 'ctrl_select': candidate 2 bits is not among the bit-widths the "
                    r"array is built for \[4, 8\]$", supported_bits=(4, 8))


def test_refuses_a_conv_reading_signed_codes():
    graph = random_graph(0, dynamic=False)
    stem = graph["ops"][0]
    stem["lo"], stem["hi"] = -127, 127
    stem["bias"] = np.zeros_like(stem["bias"])     # the all-zero shape pass stays valid
    with pytest.raises(CompileError, match=r"^op 'block1': reads 't_stem', which may hold "
                                           r"negative codes"):
        compile_graph(graph, AcceleratorConfig(**SMALL))


def test_refuses_wide_values_read_by_a_conv():
    graph = random_graph(0, dynamic=False)
    stem = graph["ops"][0]
    stem["lo"], stem["hi"] = 0, 511              # not a code range: 32-bit values
    stem["bias"] = np.zeros_like(stem["bias"])
    with pytest.raises(CompileError, match=r"reads 't_stem', a 32-bit tensor"):
        compile_graph(graph, AcceleratorConfig(**SMALL))


def test_clip_ranges_are_code_bounds_or_the_int32_limits():
    graph = random_graph(0, dynamic=False)
    classifier = graph["ops"][-1]
    compiled = compile_graph(graph, AcceleratorConfig(**SMALL))
    last = decode_instruction(compiled.program[-INSTRUCTION_WORDS:])
    assert (last["full_range"], last["lo"], last["hi"]) == (1, 0, 0)
    classifier["lo"], classifier["hi"] = -1000, 1000
    with pytest.raises(CompileError, match=r"^op 'classifier': output range \[-1000, 1000\]: "
                                           r"the accelerator clips within \[-512, 511\] or at "
                                           r"the int32 limits, not in between$"):
        compile_graph(graph, AcceleratorConfig(**SMALL))
    classifier["lo"], classifier["hi"] = -300, 400        # bounds: kept, 32-bit storage
    last = decode_instruction(compile_graph(graph, AcceleratorConfig(**SMALL))
                              .program[-INSTRUCTION_WORDS:])
    assert (last["full_range"], last["lo"], last["hi"], last["out_wide"]) == (0, -300, 400, 1)


def test_cli_writes_a_compiled_model_and_refuses_cleanly(tmp_path, capsys):
    package = tmp_path / "pkg"
    write_package(random_graph(0, dynamic=True), package)
    out = tmp_path / "accel"
    assert compile_main([str(package), "--out", str(out), "--cols", "2"]) == 0
    description = json.loads((out / "model.json").read_text())
    assert description["config"]["cols"] == 2
    assert (out / "program.hex").read_text().splitlines()[0] == f"{PROGRAM_MAGIC:08x}"
    bad = tmp_path / "bad"
    assert compile_main([str(package), "--out", str(bad), "--max-terms", "32"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: op ") and err.count("\n") == 1
    assert not bad.exists() and not list(tmp_path.glob(".bad*"))


def test_the_documented_instruction_fields_are_the_layout():
    """docs/accelerator.md's field table (name, width, signedness, offset) is normative."""
    import re
    from pathlib import Path
    from dqt_hw.accel.program import INSTRUCTION
    text = (Path(__file__).resolve().parents[1] / "docs" / "accelerator.md").read_text()
    documented = {m["name"]: (int(m["width"]), bool(m["signed"]), int(m["offset"]))
                  for m in re.finditer(r"^\| (?P<name>\w+) \| (?P<width>\d+)(?P<signed> "
                                       r"\(signed\))? \| (?P<offset>\d+) \|", text, re.M)}
    actual = {name: (field.width, field.shape.signed, field.offset)
              for name, field in INSTRUCTION}
    assert documented == actual
