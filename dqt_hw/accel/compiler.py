"""Compile an integer model package into an accelerator program and memory images.

`compile_package(path, config)` (or `compile_graph(graph, config)`) returns a `CompiledModel`:

- `program`: the program memory image (header + one instruction per executed op);
- `data`: the data memory image from word 0: the weights, then the requantizer constants, one
  64-bit word per output channel of every conv2d/linear op (bias | M << 32 | r << 48,
  `pack_constant`); activations are placed above them and written at run time;
- `constants`: those constant words again (a list), for inspection;
- `table`: the controller table, one 32-bit word per (controlled layer, candidate):
  bits | s_a << 8 | s_w << 16 | acc_shift << 24 (the package's `controller_table` format);
- `tensors`: where every tensor lives (`layout.TensorPlacement`), `slots` (the controlled
  layers whose chosen bit-width the hardware reports) and the op list (for the per-op cycle
  counters).

A package the configuration cannot run is refused with `CompileError`, one line that names
the op and what does not fit by how much. docs/accelerator.md describes the program.
"""

import dataclasses

import numpy as np

from ..golden import MULTIPLIER_BITS, validate_graph
from ..package import PackageError, load_package
from .config import AcceleratorConfig, products_per_beat
from .layout import TensorPlacement, conv_weight_rows, pack_groups, storage_channels
from .program import RANGE_BOUND_BITS, Opcode, ProgramError, encode_program

__all__ = ["CompileError", "CompiledModel", "compile_graph", "compile_package", "pack_constant",
           "pack_table_word", "WIDE_RANGE"]

#: Values a wide (32-bit) tensor holds.
WIDE_RANGE = (-(1 << 31), (1 << 31) - 1)
_NARROW_UNSIGNED = (0, 255)
_NARROW_SIGNED = (-128, 127)
_BOUND_RANGE = (-(1 << (RANGE_BOUND_BITS - 1)), (1 << (RANGE_BOUND_BITS - 1)) - 1)


class CompileError(ValueError):
    """A package that this accelerator configuration cannot run (one line, names the op)."""


def pack_constant(bias, multiplier, shift):
    """One constants word: bias (signed 32) | M << 32 (16 bits) | r << 48 (6 bits)."""
    return (int(bias) & 0xFFFFFFFF) | int(multiplier) << 32 | int(shift) << 48


def pack_table_word(bits, activation_shift, weight_shift, acc_shift):
    """A controller-table word, as the package's `controller_table` memory packs it."""
    return bits | activation_shift << 8 | weight_shift << 16 | acc_shift << 24


@dataclasses.dataclass
class CompiledModel:
    config: AcceleratorConfig
    program: list
    data: np.ndarray            # uint64 words from data word 0: weights, then constants
    constants: list
    table: list
    tensors: dict               # name -> TensorPlacement
    ops: list                   # [{"name", "op", "opcode", ...}] in program order
    slots: list                 # [{"slot", "layer", "select", "index", "candidates"}]
    inputs: list
    outputs: list
    master_bits: int
    data_words_used: int
    macs: dict                  # op name -> multiply-accumulates per image

    def describe(self):
        """A JSON-ready description for drivers and firmware (placements, slots, ops)."""
        return {
            "format": "dqt-hw-accel-model", "version": 1,
            "config": dataclasses.asdict(self.config),
            "master_bits": self.master_bits,
            "inputs": self.inputs, "outputs": self.outputs,
            "tensors": {name: t.describe() for name, t in self.tensors.items()},
            "slots": self.slots, "ops": self.ops,
            "words": {"program": len(self.program), "data_image": int(self.data.size),
                      "data_used": self.data_words_used, "constants": len(self.constants),
                      "table": len(self.table)},
        }


def _fail(op, message):
    raise CompileError(f"op {op['name']!r}: {message}")


def _capacity(what, need, have, unit):
    if need > have:
        raise CompileError(f"the model needs {need} {unit} of {what} but the configuration "
                           f"has {have} ({need - have} too many)")


def compile_package(path, config=None, **options):
    """Load and validate a package (`dqt_hw.package.load_package`) and compile it."""
    try:
        graph, _ = load_package(path)
    except PackageError as error:
        raise CompileError(str(error)) from None
    return compile_graph(graph, config, **options)


def _clip_fields(lo, hi):
    """The instruction's clip fields for the output range [lo, hi], or None if it has none:
    bounds of RANGE_BOUND_BITS, or no bounds but the int32 limits (logits)."""
    if (lo, hi) == WIDE_RANGE:
        return {"full_range": 1, "lo": 0, "hi": 0}
    if _BOUND_RANGE[0] <= lo and hi <= _BOUND_RANGE[1]:
        return {"lo": lo, "hi": hi}
    return None


def _reads(op):
    return list(op["inputs"]) if op["op"] == "add" else [op["input"]]


def _kind_of_range(lo, hi):
    if _NARROW_UNSIGNED[0] <= lo and hi <= _NARROW_UNSIGNED[1]:
        return "unsigned"
    if _NARROW_SIGNED[0] <= lo and hi <= _NARROW_SIGNED[1]:
        return "signed"
    return "wide"


def _layer_widths(op, selects):
    bits = op["bits"]
    if isinstance(bits, dict):
        return [int(b) for b in selects[bits["select"]]["candidates"]]
    return [int(bits)]


class _Compiler:
    def __init__(self, graph, config, keep_tensors=False):
        self.keep_tensors = keep_tensors
        self.graph = graph
        self.config = config
        self.n = graph["master_bits"]
        self.ops = graph["ops"]
        self.producer = {op["output"]: op for op in self.ops}
        self.consumers = {}
        for op in self.ops:
            for tensor in _reads(op):
                self.consumers.setdefault(tensor, []).append(op)
        self.selects = {op["output"]: op for op in self.ops if op["op"] == "select_bits"}

    # -- tensors --------------------------------------------------------------------------
    def shapes(self):
        from ..package import describe_graph
        try:
            notes = describe_graph(self.graph)
        except ValueError as error:            # GraphError, PackageError
            raise CompileError(str(error)) from None
        shapes = {name: list(spec["shape"]) for name, spec in self.graph["inputs"].items()}
        for op in self.ops:
            shapes[op["output"]] = notes[op["name"]]["output_shape"]
        return shapes

    def classify(self, shapes):
        """Kind (unsigned, signed, wide) of every tensor, and the flatten aliases."""
        kinds = {name: "unsigned" for name in self.graph["inputs"]}
        alias = {}
        for op in self.ops:
            out = op["output"]
            if op["op"] == "select_bits":
                if kinds[op["input"]] != "wide":
                    kinds[op["input"]] = "wide"
                    producer = self.producer.get(op["input"])
                    if producer is None or producer["op"] not in ("conv2d", "linear"):
                        _fail(op, "reads a tensor that no conv2d/linear op writes; the "
                                  "accelerator's select unit reads 32-bit values written by "
                                  "the requantizer")
                kinds[out] = "bits"
            elif op["op"] == "flatten":
                source = alias.get(op["input"], op["input"])
                alias[out] = source
                kinds[out] = kinds[source]
            else:
                kind = _kind_of_range(op["lo"], op["hi"])
                if kind == "wide" and op["op"] not in ("conv2d", "linear"):
                    _fail(op, f"output range [{op['lo']}, {op['hi']}] needs 32-bit values, "
                              f"which the accelerator writes only from conv2d/linear")
                if kind == "wide" and _clip_fields(op["lo"], op["hi"]) is None:
                    low, high = _BOUND_RANGE
                    _fail(op, f"output range [{op['lo']}, {op['hi']}]: the accelerator clips "
                              f"within [{low}, {high}] or at the int32 limits, not in between")
                kinds[out] = kind
        # Graph outputs written by a conv2d/linear are read by the host from the wide memory.
        for name in self.graph["outputs"]:
            op = self.producer.get(name)
            if op is not None and op["op"] in ("conv2d", "linear"):
                kinds[name] = "wide"
        # select_bits reads may have turned a narrow tensor wide after it was used.
        for op in self.ops:
            for tensor in _reads(op):
                source = alias.get(tensor, tensor)
                if kinds[source] == "wide" and op["op"] != "select_bits":
                    _fail(op, f"reads {tensor!r}, a 32-bit tensor (logits); only select_bits "
                              f"reads 32-bit values on the accelerator")
        for name, kind in list(kinds.items()):
            if name in alias:
                kinds[name] = kinds[alias[name]]
        return kinds, alias

    def storage(self, shapes, kinds, alias):
        """Cp of every narrow tensor: wide enough for the widest beat of its readers, and one
        Cp for the inputs and output of each elementwise op (they are processed group by
        group)."""
        min_lanes = {}
        for op in self.ops:
            if op["op"] not in ("conv2d", "linear"):
                continue
            lanes = max(products_per_beat(b, self.n) for b in _layer_widths(op, self.selects))
            source = alias.get(op["input"], op["input"])
            if source == op["input"]:
                min_lanes[source] = max(min_lanes.get(source, 1), lanes)
        # Elementwise ops tie their tensors' Cp together (union-find).
        parent = {}

        def find(t):
            parent.setdefault(t, t)
            while parent[t] != t:
                parent[t] = parent[parent[t]]
                t = parent[t]
            return t

        for op in self.ops:
            if op["op"] in ("add", "clip"):
                for tensor in _reads(op):
                    parent[find(alias.get(tensor, tensor))] = find(op["output"])
        group_lanes = {}
        for tensor, lanes in min_lanes.items():
            root = find(tensor)
            group_lanes[root] = max(group_lanes.get(root, 1), lanes)
        placements = {}
        for name, shape in shapes.items():
            kind = kinds[name]
            if kind == "bits" or name in alias:
                continue
            channels = shape[0]
            if kind == "wide":
                placements[name] = TensorPlacement(name, shape, channels_stored=channels,
                                                   signed=True, wide=True)
            else:
                cp = storage_channels(channels, group_lanes.get(find(name), 1))
                placements[name] = TensorPlacement(name, shape, channels_stored=cp,
                                                   signed=kind == "signed")
        for name, source in alias.items():
            placements[name] = placements[source]
        return placements

    # -- memory ---------------------------------------------------------------------------
    def allocate(self, placements, alias, data_base, keep_tensors):
        """First-fit allocation of narrow tensors above the weights, freeing each tensor after
        its last reader; wide tensors are laid out one after another in the wide memory."""
        order = {op["name"]: i for i, op in enumerate(self.ops)}
        last_use = {}
        for op in self.ops:
            for tensor in _reads(op):
                last_use[alias.get(tensor, tensor)] = order[op["name"]]
        for name in self.graph["outputs"]:
            last_use[alias.get(name, name)] = len(self.ops)
        free = [(data_base, self.config.data_words - data_base)]
        live = {}
        top = data_base
        wide_next = 0

        def place(name):
            nonlocal top, wide_next
            tensor = placements[name]
            if tensor.base is not None:
                return
            if tensor.wide:
                tensor.base = wide_next
                wide_next += tensor.words
                return
            need = tensor.words
            for index, (start, size) in enumerate(free):
                if size >= need:
                    tensor.base = start
                    free[index] = (start + need, size - need)
                    live[name] = (start, need)
                    top = max(top, start + need)
                    return
            used = sum(size for _, size in live.values())
            raise CompileError(f"tensor {name!r} needs {need} data words but only "
                               f"{max((s for _, s in free), default=0)} are free in one piece "
                               f"(weights {data_base} words, live activations {used} words, "
                               f"data memory {self.config.data_words} words)")

        def release(step):
            if keep_tensors:
                return
            for name in [t for t, (start, size) in live.items()
                         if last_use.get(t, -1) <= step]:
                start, size = live.pop(name)
                free.append((start, size))
                free.sort()
                merged = []
                for s, z in free:
                    if merged and merged[-1][0] + merged[-1][1] == s:
                        merged[-1] = (merged[-1][0], merged[-1][1] + z)
                    else:
                        merged.append((s, z))
                free[:] = merged

        for name in self.graph["inputs"]:
            place(name)
        for step, op in enumerate(self.ops):
            if op["op"] not in ("flatten", "select_bits"):
                place(op["output"])
            release(step)
        _capacity("wide memory", wide_next, self.config.wide_words, "words")
        return top

    # -- the program ----------------------------------------------------------------------
    def compile(self):
        config = self.config
        if self.n != config.master_bits:
            raise CompileError(f"the package has master width {self.n} but the accelerator is "
                               f"built for {config.master_bits}")
        shapes = self.shapes()
        kinds, alias = self.classify(shapes)
        placements = self.storage(shapes, kinds, alias)

        # Slots: one per (select op, layer index); table rows in slot order.
        slots, table = [], []
        slot_of, table_row_of = {}, {}
        for op in self.ops:
            if op["op"] != "select_bits":
                continue
            candidates = [int(b) for b in op["candidates"]]
            if len(candidates) > 15:
                _fail(op, f"has {len(candidates)} candidates; the select unit takes at most 15")
            for b in candidates:
                if b not in config.supported_bits:
                    _fail(op, f"candidate {b} bits is not among the bit-widths the array is "
                              f"built for {list(config.supported_bits)}")
            slot_of[op["output"]] = len(slots)
            table_row_of[op["output"]] = len(table)
            layer_names = {int(l["bits"]["index"]): l["name"] for l in self.ops
                           if l["op"] in ("conv2d", "linear") and isinstance(l["bits"], dict)
                           and l["bits"]["select"] == op["output"]}
            for index in range(op["layers"]):
                slots.append({"slot": len(slots), "layer": layer_names.get(index),
                              "select": op["name"], "index": index, "candidates": candidates})
                for b in candidates:
                    s = self.n - b
                    table.append(pack_table_word(b, s, s, 2 * s))
        _capacity("controlled-layer slots", len(slots), config.slots, "slots")
        _capacity("controller table", len(table), config.table_words, "words")

        # Weights and constants.
        weight_words, constants, layer_info = [], [], {}
        data_base = 0
        for op in self.ops:
            if op["op"] not in ("conv2d", "linear"):
                continue
            source = alias.get(op["input"], op["input"])
            tensor_in = placements[op["input"]]
            column_order = None
            if op["op"] == "linear":
                shape = shapes[source]
                if len(shape) == 3:
                    # A flattened (C, H, W) tensor stored HWC: stored position (y W + x) Cp + c
                    # holds feature c H W + y W + x of the flatten, or padding (-1).
                    c, h, w = shape
                    cp = tensor_in.channels_stored
                    order = -np.ones(h * w * cp, dtype=np.int64)
                    for ch in range(c):
                        for y in range(h):
                            for x in range(w):
                                order[(y * w + x) * cp + ch] = ch * h * w + y * w + x
                    column_order = order
                in_cp = tensor_in.pixels * tensor_in.channels_stored
            else:
                in_cp = tensor_in.channels_stored
            rows = conv_weight_rows(op["weight"], tensor_in.channels_stored, column_order)
            terms = rows.shape[1]
            if terms > config.max_terms:
                _fail(op, f"a dot product takes {terms} codes (after the layout's channel "
                          f"padding) but the accelerator holds at most max_terms = "
                          f"{config.max_terms} ({terms - config.max_terms} too many)")
            widths = _layer_widths(op, self.selects)
            for b in widths:
                if b not in config.supported_bits:
                    _fail(op, f"runs at {b} bits, which the array is not built for "
                              f"(supported: {list(config.supported_bits)})")
                lanes = products_per_beat(b, self.n)
                if in_cp % lanes:
                    _fail(op, f"reads {in_cp} stored codes per tap, not a multiple of the "
                              f"{lanes} products per beat at {b} bits")
            words = pack_groups(rows.reshape(-1), signed=True)
            layer_info[op["name"]] = dict(weights=data_base, row_words=words.size // rows.shape[0],
                                          consts=len(constants), in_cp=in_cp, terms=terms)
            weight_words.append(words)
            data_base += words.size
            bias = np.asarray(op["bias"], dtype=np.int64)
            if bias.size and (bias.min() < WIDE_RANGE[0] or bias.max() > WIDE_RANGE[1]):
                _fail(op, "bias does not fit the 32-bit constants field")
            for channel in range(rows.shape[0]):
                m, r = int(op["multiplier"][channel]), int(op["shift"][channel])
                if m >= 1 << MULTIPLIER_BITS or r >= 64:
                    _fail(op, f"channel {channel}: multiplier {m} or shift {r} exceeds the "
                              f"requantizer's {MULTIPLIER_BITS}-bit multiplier or 6-bit shift")
                constants.append(pack_constant(bias[channel], m, r))
        # The constants follow the weights in the data memory.
        for info in layer_info.values():
            info["consts"] += data_base
        weight_words.append(np.asarray(constants, dtype=np.uint64))
        data_base += len(constants)
        if data_base > config.data_words:
            raise CompileError(f"the weights and constants need {data_base} data words but "
                               f"the data memory has {config.data_words} "
                               f"({data_base - config.data_words} too many)")
        top = self.allocate(placements, alias, data_base, self.keep_tensors)

        instructions, ops = [], []
        for op in self.ops:
            if op["op"] == "flatten":
                continue
            fields = self.instruction(op, placements, alias, layer_info, slot_of, table_row_of)
            instructions.append(fields)
            entry = {"name": op["name"], "op": op["op"], "opcode": fields["opcode"]}
            if op["op"] in ("conv2d", "linear"):
                entry["macs"] = int(np.prod(shapes[op["output"]])) * int(
                    np.prod(np.shape(op["weight"])[1:]))
                entry["bits"] = (op["bits"] if not isinstance(op["bits"], dict) else
                                 {"slot": slot_of[op["bits"]["select"]] + op["bits"]["index"]})
            ops.append(entry)
        _capacity("ops", len(instructions), config.max_ops, "ops")
        try:
            program = encode_program(instructions)
        except ProgramError as error:
            raise CompileError(str(error)) from None
        _capacity("program memory", len(program), config.program_words, "words")

        data = (np.concatenate(weight_words) if weight_words
                else np.zeros(0, dtype=np.uint64))
        inputs = [{"name": name, **placements[name].describe()}
                  for name in self.graph["inputs"]]
        outputs = []
        for name in self.graph["outputs"]:
            if kinds.get(name) == "bits":
                first = slot_of[name]
                outputs.append({"name": name, "memory": "slots",
                                "slots": list(range(first, first + self.selects[name]["layers"]))})
            else:
                outputs.append({"name": name, **placements[name].describe()})
        return CompiledModel(config=config, program=program, data=data, constants=constants,
                             table=table, tensors=placements, ops=ops, slots=slots,
                             inputs=inputs, outputs=outputs, master_bits=self.n,
                             data_words_used=top,
                             macs={o["name"]: o["macs"] for o in ops if "macs" in o})

    def instruction(self, op, placements, alias, layer_info, slot_of, table_row_of):
        kind = op["op"]
        out = placements.get(op["output"])
        fields = {}
        if kind in ("conv2d", "linear", "avg_pool2d", "global_avg_pool", "add", "clip"):
            fields.update(out=out.base, out_c=out.channels, **_clip_fields(op["lo"], op["hi"]))
        if kind in ("conv2d", "linear", "avg_pool2d", "global_avg_pool"):
            fields.update(out_cp=out.channels_stored, out_wide=int(out.wide))
            if len(out.shape) == 3:
                fields.update(out_h=out.shape[1], out_w=out.shape[2])
            else:
                fields.update(out_h=1, out_w=1)
        if kind in ("conv2d", "linear"):
            info = layer_info[op["name"]]
            source = placements[op["input"]]
            if kind == "conv2d":
                _, _, kh, kw = np.shape(op["weight"])
                h, w = source.shape[1], source.shape[2]
                stride, pad, cp = op["stride"], op["padding"], source.channels_stored
            else:
                kh = kw = h = w = stride = 1
                pad, cp = 0, info["in_cp"]
            fields.update(window_fields(h, w, cp, kh, kw, stride, pad))
            fields.update(opcode=Opcode.CONV, in_a=source.base, weights=info["weights"],
                          row_words=info["row_words"], consts=info["consts"])
            bits = op["bits"]
            if isinstance(bits, dict):
                select = self.selects[bits["select"]]
                fields.update(bits_select=1, bits=self.n,
                              slot=slot_of[bits["select"]] + bits["index"],
                              table_row=table_row_of[bits["select"]]
                              + bits["index"] * len(select["candidates"]))
            else:
                fields.update(bits=int(bits))
        elif kind in ("avg_pool2d", "global_avg_pool"):
            source = placements[alias.get(op["input"], op["input"])]
            c, h, w = source.shape
            if kind == "global_avg_pool":
                kernel, stride = (h, w), 1
            else:
                kernel, stride = (op["kernel"], op["kernel"]), op["stride"]
            if op["multiplier"] >= 1 << MULTIPLIER_BITS:
                _fail(op, f"multiplier {op['multiplier']} exceeds the requantizer's "
                          f"{MULTIPLIER_BITS} bits")
            fields.update(window_fields(h, w, source.channels_stored, kernel[0], kernel[1],
                                        stride, 0))
            fields.update(opcode=Opcode.POOL, in_a=source.base, a_signed=int(source.signed),
                          multiplier=op["multiplier"], shift=op["shift"])
        elif kind in ("add", "clip"):
            names = _reads(op)
            a = placements[names[0]]
            b = placements[names[1]] if kind == "add" else a
            if kind == "add":
                for name, value, width in (("k1", op["k1"], 16), ("k2", op["k2"], 16),
                                           ("k3", op["k3"], self.config.value_bits)):
                    if not -(1 << (width - 1)) <= value < 1 << (width - 1):
                        _fail(op, f"{name} = {value} does not fit the adder's signed "
                                  f"{width}-bit constant")
                fields.update(k1=op["k1"], k2=op["k2"], k3=op["k3"], shift=op["shift"])
            else:
                fields.update(k1=1, single=1)
            fields.update(opcode=Opcode.ELEMENTWISE, in_a=a.base, in_b=b.base,
                          a_signed=int(a.signed), b_signed=int(b.signed),
                          count=out.words // 2)
        elif kind == "select_bits":
            source = placements[op["input"]]
            fields.update(opcode=Opcode.SELECT, in_a=source.base, out_c=op["layers"],
                          candidates=len(op["candidates"]), slot=slot_of[op["output"]],
                          table_row=table_row_of[op["output"]])
        else:
            _fail(op, f"op kind {kind!r} has no accelerator instruction")
        return fields



def window_fields(h, w, cp, kh, kw, stride, pad):
    """Geometry fields of a window walk (conv and pool) over an h x w input of cp stored
    channels, in stored elements. The fetcher walks output pixels, taps and channel chunks by
    adding a step per beat: the jumps say how much more a move to the next tap row, pixel and
    pixel row adds (docs/accelerator.md)."""
    if kh > 15 or kw > 15 or stride > 15 or pad > 15:
        raise CompileError(f"kernel {kh}x{kw}, stride {stride} or padding {pad} exceeds "
                           f"the 4-bit instruction fields (at most 15)")
    out_w = (w + 2 * pad - kw) // stride + 1
    row_jump = w * cp - kw * cp                         # from a tap row's end to the next
    pixel_jump = row_jump + stride * cp - kh * w * cp   # from a window's end to the next
    return dict(in_h=h, in_w=w, in_cp=cp, kernel_h=kh, kernel_w=kw, stride=stride, pad=pad,
                e_init=-pad * (w + 1) * cp, row_jump=row_jump, pixel_jump=pixel_jump,
                line_jump=pixel_jump + stride * w * cp - out_w * stride * cp)


def compile_graph(graph, config=None, *, keep_tensors=False):
    """Compile a golden-format graph (`dqt_hw.golden.graph`) for `config` (default
    `AcceleratorConfig()`). `keep_tensors` gives every tensor its own data words (no reuse),
    so that all of them can be inspected after a run."""
    config = config or AcceleratorConfig()
    try:
        validate_graph(graph)
    except ValueError as error:                 # GraphError: one line, as every refusal
        raise CompileError(str(error)) from None
    return _Compiler(graph, config, keep_tensors).compile()
