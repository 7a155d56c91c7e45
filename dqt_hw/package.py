"""The integer model package: write, read and validate it (docs/export-format.md).

A package is a directory holding everything an integer-only inference needs, with no float
anywhere::

    DIR/manifest.json                 format, version, master width, candidates, the layer graph
                                      in execution order with every constant as an integer, the
                                      controller tables, and the list of every file below
    DIR/weights/<op>.weight.npy       weight master codes (signed, little-endian int8/int16)
    DIR/mem/<op>.weight.hex           the same codes packed into memory words ($readmemh)
    DIR/mem/<op>.{bias,multiplier,shift}.hex   per-output-channel requantizer constants
    DIR/mem/controller_table.hex      the controller tables as memory words (dynamic models)
    DIR/manifest.sha256               the manifest's own sha256 (`sha256sum -c` format)

The graph inside is the golden model's description (`dqt_hw.golden.graph`, version 1):
`read_package` returns it ready for `dqt_hw.golden.run_graph`. Writing is atomic: the package
is built in a temporary directory beside DIR and renamed into place, so DIR is either the old
package, the new one, or absent; never half-written.
"""

import hashlib
import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np

from .atomic import replace_dir, staging_dir
from .golden import (GRAPH_FORMAT, GRAPH_VERSION, MULTIPLIER_BITS, GraphError,
                     accumulator_bits, layer_terms, requantizer_bits, run_graph, validate_graph)

__all__ = [
    "PACKAGE_FORMAT", "PACKAGE_VERSION", "MANIFEST_NAME", "MANIFEST_SHA_NAME",
    "INPUT_QUANTIZER", "DEFAULT_WORD_BITS",
    "TABLE_FIELD_BITS", "PackageError", "pack_words", "format_hex", "parse_hex",
    "describe_graph", "check_out_dir", "write_package", "read_package", "load_package",
    "layer_ops", "layer_bits", "pin_bits", "run_cli", "summary", "main",
]

PACKAGE_FORMAT = "dqt-hw-package"
PACKAGE_VERSION = 1
MANIFEST_NAME = "manifest.json"
#: `sha256sum` line of manifest.json: catches an accidental edit or damage (not a signature).
MANIFEST_SHA_NAME = "manifest.sha256"
#: The one pixel-to-code rule (`train.data.to_master_codes`), stated in each manifest input.
INPUT_QUANTIZER = {"pixels": "8-bit p in 0..255, standing for the real value p / 255",
                   "code": "(2 * p * (2^n - 1) + 255) // 510",
                   "meaning": "p (2^n - 1) / 255 rounded half up; for n = 8 the code is p"}
#: Default width of a weight memory word: four 8-bit master codes.
DEFAULT_WORD_BITS = 32
#: Width of each field of a controller-table word (bits, s_a, s_w, acc_shift): 4 x 8 = 32 bits.
TABLE_FIELD_BITS = 8
#: Width of a shift-constant memory element; requantizer shifts stay far below 256.
SHIFT_ELEMENT_BITS = 8
#: Per-channel vectors of conv2d/linear ops, stored inline in the manifest as integer lists.
_CHANNEL_FIELDS = ("bias", "multiplier", "shift")
_LAYER_KINDS = ("conv2d", "linear")
#: Per-op annotations the writer adds; `read_package` strips them before handing the graph on.
_ANNOTATION = "hw"


class PackageError(ValueError):
    """A package (or a graph being packaged) that is malformed, incomplete or inconsistent."""


def _fail(where, message):
    raise PackageError(f"{where}: {message}")


# --------------------------------------------------------------------------------------------
# Memory words: the ONE place where integers are packed into hardware memory words.

def pack_words(values, *, element_bits, word_bits, signed):
    """Pack a 2-D integer array into memory words, row by row; return a list of Python ints.

    Each element becomes an `element_bits`-wide field (two's complement when `signed`). A word
    holds E = word_bits // element_bits elements: element j of a word sits at bits
    [j * element_bits, (j + 1) * element_bits), so the lowest-indexed element is in the least
    significant bits. Every row starts on a new word; the last word of a row is padded with
    zero fields, and bits above E * element_bits are zero. A row of L elements therefore takes
    ceil(L / E) words, and element (row, i) is in word row * ceil(L / E) + i // E.
    """
    values = np.asarray(values)
    if not np.issubdtype(values.dtype, np.integer) or values.ndim != 2:
        raise TypeError(f"`values` must be a 2-D integer array, not {values.dtype} "
                        f"of shape {values.shape}")
    if not isinstance(element_bits, int) or element_bits < 1:
        raise ValueError(f"`element_bits` must be a positive integer, not {element_bits!r}")
    if not isinstance(word_bits, int) or word_bits < element_bits:
        raise ValueError(f"`word_bits` must be an integer >= `element_bits` ({element_bits}), "
                         f"not {word_bits!r}")
    lo, hi = ((-(1 << (element_bits - 1)), (1 << (element_bits - 1)) - 1) if signed
              else (0, (1 << element_bits) - 1))
    if values.size and (int(values.min()) < lo or int(values.max()) > hi):
        kind = "signed" if signed else "unsigned"
        raise ValueError(f"`values` must fit {element_bits}-bit {kind} fields [{lo}, {hi}], "
                         f"not [{int(values.min())}, {int(values.max())}]")
    per_word = word_bits // element_bits
    mask = (1 << element_bits) - 1
    words = []
    for row in values.tolist():
        for start in range(0, max(len(row), 1), per_word):
            word = 0
            for j, value in enumerate(row[start:start + per_word]):
                word |= (value & mask) << (j * element_bits)
            words.append(word)
    return words


def format_hex(words, word_bits):
    """$readmemh text: one word per line, ceil(word_bits / 4) lowercase hex digits, no prefix."""
    digits = -(-word_bits // 4)
    return "".join(f"{word:0{digits}x}\n" for word in words)


def parse_hex(text):
    """The words of a $readmemh file written by `format_hex` (blank lines ignored)."""
    return [int(line, 16) for line in text.split()]


def _memory(values, *, element_bits, word_bits, signed):
    """(hex text, manifest entry) of one memory-init file."""
    values = np.asarray(values)
    words = pack_words(values, element_bits=element_bits, word_bits=word_bits, signed=signed)
    entry = {"element_bits": element_bits, "word_bits": word_bits,
             "elements_per_word": word_bits // element_bits, "signed": signed,
             "rows": int(values.shape[0]), "row_elements": int(values.shape[1]),
             "words_per_row": len(words) // max(int(values.shape[0]), 1), "depth": len(words)}
    return format_hex(words, word_bits), entry


# --------------------------------------------------------------------------------------------
# Graph analysis shared by the writer, eval and the test-vector dump.

def layer_ops(graph):
    """The conv2d/linear ops of a graph, in execution order."""
    return [op for op in graph["ops"] if op["op"] in _LAYER_KINDS]


def pin_bits(graph, bits):
    """A copy of `graph` whose dynamic-precision layers all run at `bits` (the controller
    still runs and its choices stay outputs)."""
    ops = [dict(op, bits=bits) if isinstance(op.get("bits"), dict) else op
           for op in graph["ops"]]
    return dict(graph, ops=ops)


def layer_bits(graph, env, batch):
    """{layer name: int64 vector of the bit-width each image ran at} from a keep_all run."""
    chosen = {}
    for op in layer_ops(graph):
        bits = op["bits"]
        if isinstance(bits, dict):
            chosen[op["name"]] = np.asarray(env[bits["select"]][:, bits["index"]], np.int64)
        else:
            chosen[op["name"]] = np.full(batch, bits, dtype=np.int64)
    return chosen


def _reads(op):
    return list(op["inputs"]) if op["op"] == "add" else [op["input"]]


def _roles(graph):
    """{op name: "backbone" | "controller"}.

    Backbone ops are those the non-bit-width outputs depend on through data edges; controller
    ops are the remaining ancestors of a select_bits op (the pooled-feature MLP and the argmax).
    An op in neither set is dead code and is refused.
    """
    producer = {op["output"]: op for op in graph["ops"]}
    selects = {op["output"] for op in graph["ops"] if op["op"] == "select_bits"}

    def ancestors(tensors):
        seen, stack = set(), list(tensors)
        while stack:
            op = producer.get(stack.pop())
            if op is not None and op["name"] not in seen:
                seen.add(op["name"])
                stack.extend(_reads(op))
        return seen

    backbone = ancestors(t for t in graph["outputs"] if t not in selects)
    controller = ancestors(selects) - backbone
    roles = {}
    for op in graph["ops"]:
        if op["name"] in backbone:
            roles[op["name"]] = "backbone"
        elif op["name"] in controller:
            roles[op["name"]] = "controller"
        else:
            _fail("graph", f"op {op['name']!r} feeds no output; remove it before exporting")
    return roles


def _shapes(graph):
    """Per-image shape of every tensor, found by running one all-zero image through the graph."""
    zeros = {name: np.zeros((1,) + tuple(spec["shape"]), dtype=np.int64)
             for name, spec in graph["inputs"].items()}
    try:
        env = run_graph(graph, zeros, keep_all=True)
    except GraphError:
        raise
    except ValueError as error:        # e.g. a weight whose input channels do not match
        raise PackageError(f"graph: op {_failing_op(graph, zeros)!r}: shapes do not fit "
                           f"together: {error}") from None
    return {name: [int(d) for d in value.shape[1:]] for name, value in env.items()}


def _failing_op(graph, zeros):
    """Name of the first op whose shapes do not fit (runs growing prefixes of the graph)."""
    for end, op in enumerate(graph["ops"]):
        prefix = dict(graph, ops=graph["ops"][:end + 1], outputs=[op["output"]])
        try:
            run_graph(prefix, zeros)
        except ValueError:
            return op["name"]
    return None


def _candidates(graph):
    """Candidate bit-widths: the select_bits candidates, or the static widths in use."""
    selects = [op for op in graph["ops"] if op["op"] == "select_bits"]
    if selects:
        return sorted({int(b) for op in selects for b in op["candidates"]})
    return sorted({int(op["bits"]) for op in layer_ops(graph)})


def _layer_widths(op, master_bits, candidates_of):
    """Bit-widths a layer can run at: its static b, or its select op's candidates."""
    bits = op["bits"]
    if isinstance(bits, dict):
        return [int(b) for b in candidates_of[bits["select"]]]
    return [int(bits)]


def describe_graph(graph):
    """Hardware facts about every op: role, shapes, K, MACs and accumulator widths.

    Returns {op name: annotation dict} (the "hw" entry of each op in the manifest).
    """
    validate_graph(graph)
    master_bits = graph["master_bits"]
    shapes = _shapes(graph)
    roles = _roles(graph)
    candidates_of = {op["output"]: op["candidates"] for op in graph["ops"]
                     if op["op"] == "select_bits"}
    notes = {}
    for op in graph["ops"]:
        note = {"role": roles[op["name"]],
                "input_shapes": [shapes[t] for t in _reads(op)],
                "output_shape": shapes[op["output"]]}
        if op["op"] in _LAYER_KINDS:
            terms = layer_terms(op)
            outputs = int(np.prod(shapes[op["output"]]))
            widths = _layer_widths(op, master_bits, candidates_of)
            note.update(
                terms=terms, macs=outputs * terms, bit_widths=widths,
                accumulator_bits={str(b): accumulator_bits(b, b, terms) for b in widths},
                master_accumulator_bits=accumulator_bits(master_bits, master_bits, terms),
                requantizer_bits=requantizer_bits(master_bits, terms))
        notes[op["name"]] = note
    return notes


def _controller_tables(graph):
    """For each controlled layer and candidate: b, s_a = s_w = n - b and acc_shift = 2(n - b).

    The requantizer's M, r and bias are the master constants at every b (docs/arithmetic.md
    §5), so no per-bit-width per-channel value exists; "per_channel" is empty and says so.
    """
    master_bits = graph["master_bits"]
    selects = {op["output"]: op for op in graph["ops"] if op["op"] == "select_bits"}
    tables = []
    for op in layer_ops(graph):
        if not isinstance(op["bits"], dict):
            continue
        select = selects[op["bits"]["select"]]
        entries = []
        for k, bits in enumerate(select["candidates"]):
            shift = master_bits - int(bits)
            entries.append({"candidate": k, "bits": int(bits), "activation_shift": shift,
                            "weight_shift": shift, "acc_shift": 2 * shift, "per_channel": {}})
        tables.append({"layer": op["name"], "select": select["name"],
                       "select_output": select["output"], "index": int(op["bits"]["index"]),
                       "entries": entries})
    # Hardware looks a table up by (select row, candidate), so order rows by select index.
    tables.sort(key=lambda t: (t["select"], t["index"]))
    return tables


def _weight_dtype(master_bits):
    return np.dtype("<i1") if master_bits <= 8 else np.dtype("<i2")


def _sha256(data):
    return hashlib.sha256(data).hexdigest()


def _npy_bytes(array):
    import io
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _safe_name(name):
    if not isinstance(name, str) or not name or name.startswith(".") or any(
            c in name for c in "/\\\0") or name != name.strip():
        _fail("graph", f"op name {name!r} cannot name a file; use letters, digits, '_', '-', '.'")
    return name


def _controlled_layers(graph, notes, names):
    """The validated list of variable-precision layers (see `write_package`)."""
    dynamic = [op["name"] for op in layer_ops(graph) if isinstance(op["bits"], dict)]
    backbone = [op["name"] for op in layer_ops(graph) if notes[op["name"]]["role"] == "backbone"]
    if names is None:
        return dynamic or backbone
    names = list(names)
    for name in names:
        if name not in backbone:
            _fail("graph", f"controlled layer {name!r} is not a backbone conv2d/linear op")
    missing = [name for name in dynamic if name not in names]
    if missing:
        _fail("graph", f"dynamic-precision layer(s) {', '.join(missing)} missing from the "
                       f"controlled layers")
    return [name for name in backbone if name in names]


def _build(graph, *, word_bits, metadata, controlled_layers=None, logits=None, dataset=None):
    """The manifest and {relative path: bytes} of every file of a package for `graph`."""
    try:
        notes = describe_graph(graph)
    except GraphError as error:
        raise PackageError(str(error)) from None
    controlled_layers = _controlled_layers(graph, notes, controlled_layers)
    master_bits = graph["master_bits"]
    files = {}
    ops = []
    memories = {}

    def add_file(path, data):
        files[path] = data
        return {"file": path, "sha256": _sha256(data), "bytes": len(data)}

    def add_memory(key, path, values, *, element_bits, signed, word_bits=None):
        text, entry = _memory(values, element_bits=element_bits, signed=signed,
                              word_bits=word_bits or element_bits)
        entry.update(add_file(path, text.encode("ascii")))
        memories[key] = entry
        return key

    for op in graph["ops"]:
        name = _safe_name(op["name"])
        entry = {}
        for field, value in op.items():
            if field == "weight":
                codes = np.asarray(value)
                weight = codes.astype(_weight_dtype(master_bits))
                ref = add_file(f"weights/{name}.weight.npy", _npy_bytes(weight))
                ref.update(dtype=weight.dtype.str, shape=list(weight.shape))
                entry["weight"] = ref
            elif field in _CHANNEL_FIELDS and op["op"] in _LAYER_KINDS:
                entry[field] = [int(v) for v in np.asarray(value).reshape(-1)]
            elif isinstance(value, (np.integer,)):
                entry[field] = int(value)
            elif isinstance(value, np.ndarray):
                entry[field] = value.tolist()
            elif isinstance(value, dict):
                entry[field] = {k: (int(v) if isinstance(v, np.integer) else v)
                                for k, v in value.items()}
            elif isinstance(value, (list, tuple)):
                entry[field] = [int(v) if isinstance(v, np.integer) else v for v in value]
            else:
                entry[field] = value
        note = dict(notes[name])
        if op["op"] in _LAYER_KINDS:
            weight = np.asarray(op["weight"], dtype=np.int64)
            rows = weight.reshape(weight.shape[0], -1)
            channel = note["master_accumulator_bits"]
            note["memories"] = {
                "weight": add_memory(f"{name}.weight", f"mem/{name}.weight.hex", rows,
                                     element_bits=master_bits, word_bits=word_bits, signed=True),
                "bias": add_memory(f"{name}.bias", f"mem/{name}.bias.hex",
                                   np.asarray(op["bias"], np.int64).reshape(-1, 1),
                                   element_bits=channel, signed=True),
                "multiplier": add_memory(
                    f"{name}.multiplier", f"mem/{name}.multiplier.hex",
                    np.asarray(op["multiplier"], np.int64).reshape(-1, 1),
                    element_bits=max(MULTIPLIER_BITS, int(np.max(op["multiplier"],
                                                                 initial=0)).bit_length()),
                    signed=False),
                "shift": add_memory(f"{name}.shift", f"mem/{name}.shift.hex",
                                    np.asarray(op["shift"], np.int64).reshape(-1, 1),
                                    element_bits=SHIFT_ELEMENT_BITS, signed=False),
            }
        entry[_ANNOTATION] = note
        ops.append(entry)

    tables = _controller_tables(graph)
    controller = None
    if tables:
        rows = [[e["bits"], e["activation_shift"], e["weight_shift"], e["acc_shift"]]
                for table in tables for e in table["entries"]]
        add_memory("controller_table", "mem/controller_table.hex", np.asarray(rows, np.int64),
                   element_bits=TABLE_FIELD_BITS, word_bits=4 * TABLE_FIELD_BITS, signed=False)
        controller = {
            "ops": [op["name"] for op in graph["ops"] if notes[op["name"]]["role"] ==
                    "controller"],
            "selects": [op["name"] for op in graph["ops"] if op["op"] == "select_bits"],
            "table_memory": "controller_table",
            "table_fields": ["bits", "activation_shift", "weight_shift", "acc_shift"],
            "tables": tables,
        }

    manifest = {
        "format": PACKAGE_FORMAT,
        "version": PACKAGE_VERSION,
        "graph_format": GRAPH_FORMAT,
        "graph_version": GRAPH_VERSION,
        "master_bits": master_bits,
        "candidates": _candidates(graph),
        "dynamic": controller is not None,
        "controlled_layers": controlled_layers,
        "inputs": {name: {"shape": [int(d) for d in spec["shape"]], "signed": False,
                          "bits": master_bits, "quantizer": INPUT_QUANTIZER}
                   for name, spec in graph["inputs"].items()},
        "outputs": list(graph["outputs"]),
        "logits": logits,
        "dataset": dataset,
        "ops": ops,
        "controller": controller,
        "memories": memories,
        "metadata": metadata or {},
    }
    return manifest, files


def _manifest_text(manifest):
    """JSON with one key per line but every list of numbers on one line, for reading by eye."""
    text = json.dumps(manifest, indent=1)
    return re.sub(r"\[\s*(-?\d+(?:,\s*-?\d+)*)\s*\]",
                  lambda m: "[" + ", ".join(m.group(1).replace(",", " ").split()) + "]",
                  text) + "\n"


def _manifest_sha_line(data):
    return f"{_sha256(data)}  {MANIFEST_NAME}\n"


def _is_package(path):
    try:
        manifest = json.loads((path / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("format") == PACKAGE_FORMAT


def check_out_dir(out_dir):
    """Refuse an `out_dir` that exists and is neither empty nor a package (PackageError)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not (out_dir.is_dir() and (not any(out_dir.iterdir())
                                                        or _is_package(out_dir))):
        _fail(str(out_dir), "exists and is not a dqt-hw package; choose another --out")


def write_package(graph, out_dir, *, word_bits=DEFAULT_WORD_BITS, metadata=None,
                  controlled_layers=None, logits=None, dataset=None):
    """Write `graph` (a golden description) as a package in `out_dir`, atomically.

    `logits` ({"tensor", "frac_bits", "classes"}: the unit 2^-frac_bits of the integer logits
    and the class of each column) and `dataset` (how its test set is made, `train.data.
    describe_test_set`) describe the model for a reader with only the package; both may be None.

    `controlled_layers` names the variable-precision layers (those average bits are taken
    over): by default the dynamic-precision layers, or every backbone conv2d/linear op of a
    static graph; the exporter passes the training config's controlled layers, which leaves
    out the stem and classifier that always run at n bits.

    An existing package in `out_dir` is replaced; any other existing path is refused. The new
    package is built and re-read (`read_package`) in a temporary directory beside `out_dir`
    before the rename, so a package that cannot be read back is never installed.
    Returns the manifest.
    """
    out_dir = Path(out_dir)
    if not isinstance(graph, dict):
        raise PackageError(f"graph: a description must be a dict, not {type(graph).__name__}")
    if not isinstance(word_bits, int) or word_bits < graph.get("master_bits", 1):
        raise PackageError(f"`word_bits` must be an integer >= the master width, "
                           f"not {word_bits!r}")
    check_out_dir(out_dir)
    manifest, files = _build(graph, word_bits=word_bits, metadata=metadata,
                             controlled_layers=controlled_layers, logits=logits,
                             dataset=dataset)
    _check_interface(str(out_dir), manifest)
    staging = staging_dir(out_dir)
    try:
        for relative, data in files.items():
            path = staging / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        # The manifest goes last: a staging directory without one is visibly unfinished.
        data = _manifest_text(manifest).encode()
        (staging / MANIFEST_SHA_NAME).write_text(_manifest_sha_line(data))
        (staging / MANIFEST_NAME).write_bytes(data)
        try:
            read_package(staging)
        except PackageError as error:      # a writer bug: name the user's folder, not ours
            raise PackageError(str(error).replace(str(staging), str(out_dir))) from None
        replace_dir(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


# --------------------------------------------------------------------------------------------
# Reading.

def _read_json(path):
    try:
        text = path.read_text()
    except FileNotFoundError:
        _fail(str(path.parent), f"missing {MANIFEST_NAME}; is this a package written by "
                                f"`python -m dqt_hw.export`?")
    except OSError as error:
        _fail(str(path), f"cannot read: {error.strerror}")
    try:
        return json.loads(text)
    except ValueError as error:
        _fail(str(path), f"not valid JSON ({error.msg} at line {error.lineno}); re-export")


def _read_file(root, ref, what):
    if not isinstance(ref, dict) or not isinstance(ref.get("file"), str):
        _fail(str(root), f"{what}: file reference must be an object with a 'file' path")
    relative = Path(ref["file"])
    if relative.is_absolute() or ".." in relative.parts:
        _fail(str(root), f"{what}: file path {ref['file']!r} must stay inside the package")
    path = root / relative
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        _fail(str(root), f"{what}: missing file {ref['file']}; re-export the package")
    except OSError as error:
        _fail(str(root), f"{what}: cannot read {ref['file']}: {error.strerror}")
    if ref.get("sha256") != _sha256(data):
        _fail(str(root), f"{what}: {ref['file']} does not match its sha256 in the manifest "
                         f"(corrupt or edited); re-export the package")
    return data


def _load_weight(root, ref, name, master_bits):
    import io
    data = _read_file(root, ref, f"op {name!r} weight")
    try:
        weight = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError) as error:
        _fail(str(root), f"op {name!r} weight: {ref['file']} is not a NumPy array ({error})")
    if not np.issubdtype(weight.dtype, np.integer):
        _fail(str(root), f"op {name!r} weight: {ref['file']} holds {weight.dtype}, "
                         f"not integer codes")
    if weight.dtype.str != ref.get("dtype"):
        _fail(str(root), f"op {name!r} weight: {ref['file']} holds {weight.dtype.str} but the "
                         f"manifest says {ref.get('dtype')!r}")
    if list(weight.shape) != list(ref.get("shape", [])):
        _fail(str(root), f"op {name!r} weight: {ref['file']} has shape "
                         f"{list(weight.shape)} but the manifest says {ref.get('shape')}")
    return weight.astype(np.int64)


def load_package(path):
    """Read and fully validate a package; return (graph, manifest).

    Checks: format and version, every file present with its sha256, weight dtypes and shapes
    against the manifest, the graph (`validate_graph`), every tensor shape and hardware
    annotation against a fresh `describe_graph`, and every memory-init file against a fresh
    packing of the weights and constants. Raises `PackageError` with a one-line message.
    """
    root = Path(path)
    if not root.is_dir():
        _fail(str(root), "is not a directory (expected a package written by "
                         "`python -m dqt_hw.export`)")
    try:
        return _load(root)
    except (KeyError, TypeError, AttributeError, IndexError) as error:
        # A manifest whose fields have the wrong JSON types: still one line, never a traceback.
        raise PackageError(f"{root}: malformed {MANIFEST_NAME} ({type(error).__name__}: "
                           f"{error}); re-export the package") from None


def _load(root):
    manifest = _read_json(root / MANIFEST_NAME)
    if not isinstance(manifest, dict) or manifest.get("format") != PACKAGE_FORMAT:
        _fail(str(root), f"{MANIFEST_NAME} is not a {PACKAGE_FORMAT!r} manifest")
    if manifest.get("version") != PACKAGE_VERSION:
        _fail(str(root), f"unsupported package format version {manifest.get('version')!r} "
                         f"(this dqt_hw reads version {PACKAGE_VERSION}); re-export it with "
                         f"`python -m dqt_hw.export CHECKPOINT --out {root}`")
    for key in ("master_bits", "inputs", "outputs", "ops", "memories"):
        if key not in manifest:
            _fail(str(root), f"{MANIFEST_NAME} lacks field {key!r}")
    master_bits = manifest["master_bits"]
    ops = []
    for entry in manifest["ops"]:
        if not isinstance(entry, dict):
            _fail(str(root), f"every op must be a JSON object, not {entry!r}")
        op = {k: v for k, v in entry.items() if k != _ANNOTATION}
        if op.get("op") in _LAYER_KINDS:
            op["weight"] = _load_weight(root, entry.get("weight"), op.get("name"), master_bits)
            for field in _CHANNEL_FIELDS:
                if not isinstance(op.get(field), list):
                    _fail(str(root), f"op {op.get('name')!r}: {field} must be a list of "
                                     f"integers")
                op[field] = np.asarray(op[field], dtype=np.int64)
        ops.append(op)
    graph = {"format": manifest.get("graph_format"), "version": manifest.get("graph_version"),
             "master_bits": master_bits,
             "inputs": {name: {"shape": spec.get("shape")}
                        for name, spec in manifest["inputs"].items()},
             "outputs": manifest["outputs"], "ops": ops}
    try:
        notes = describe_graph(graph)
    except (GraphError, TypeError) as error:
        _fail(str(root), str(error))
    except PackageError as error:
        raise PackageError(f"{root}: {error}") from None
    if not isinstance(manifest.get("controlled_layers"), list):
        _fail(str(root), f"{MANIFEST_NAME} lacks the list 'controlled_layers'; "
                         f"re-export the package")
    try:
        written, _ = _build(graph, word_bits=_word_bits(manifest),
                            metadata=manifest.get("metadata"),
                            controlled_layers=manifest["controlled_layers"])
    except PackageError as error:
        raise PackageError(f"{root}: {error}") from None
    for entry, fresh in zip(manifest["ops"], written["ops"]):
        stored = entry.get(_ANNOTATION, {})
        for key, value in notes[entry["name"]].items():
            if stored.get(key) != value:
                _fail(str(root), f"op {entry['name']!r}: manifest says {key} = "
                                 f"{stored.get(key)!r} but the weights give {value!r}")
        if stored.get("memories") != fresh[_ANNOTATION].get("memories"):
            _fail(str(root), f"op {entry['name']!r}: memory list differs from the weights")
    if manifest.get("controller") != written["controller"]:
        _fail(str(root), "controller section does not match the graph's select_bits ops")
    if manifest.get("candidates") != written["candidates"]:
        _fail(str(root), f"candidates {manifest.get('candidates')!r} do not match the graph's "
                         f"{written['candidates']!r}")
    for key, fresh in written["memories"].items():
        stored = manifest["memories"].get(key)
        if not isinstance(stored, dict):
            _fail(str(root), f"memory {key!r} is missing from the manifest")
        data = _read_file(root, stored, f"memory {key!r}")
        expected = {k: v for k, v in fresh.items() if k not in ("sha256", "bytes")}
        actual = {k: v for k, v in stored.items() if k not in ("sha256", "bytes")}
        if actual != expected:
            _fail(str(root), f"memory {key!r}: layout {actual} does not match {expected}")
        if _sha256(data) != fresh["sha256"]:
            _fail(str(root), f"memory {key!r}: {stored['file']} does not hold the packed "
                             f"weights/constants; re-export the package")
    extra = set(manifest["memories"]) - set(written["memories"])
    if extra:
        _fail(str(root), f"manifest lists unknown memories {sorted(extra)}")
    _check_interface(str(root), manifest)
    # Last, so that an edit that breaks something gets that thing's message.
    sha_file = root / MANIFEST_SHA_NAME
    if sha_file.exists():               # packages written before it existed have none
        if sha_file.read_text() != _manifest_sha_line((root / MANIFEST_NAME).read_bytes()):
            _fail(str(root), f"{MANIFEST_NAME} does not match {MANIFEST_SHA_NAME} (edited or "
                             f"damaged); re-export the package")
    return graph, manifest


def _check_interface(where, manifest):
    """The reader-facing sections: input quantizer, logit unit and classes, dataset."""
    notes = {entry["name"]: entry[_ANNOTATION] for entry in manifest["ops"]}
    for name, spec in manifest["inputs"].items():
        if spec.get("quantizer", INPUT_QUANTIZER) != INPUT_QUANTIZER:
            _fail(where, f"input {name!r}: quantizer {spec['quantizer']!r} is not the rule "
                         f"dqt_hw uses ({INPUT_QUANTIZER['code']})")
    logits = manifest.get("logits")
    if logits is not None:
        producer = {entry["output"]: entry["name"] for entry in manifest["ops"]}
        tensor = logits.get("tensor")
        if tensor not in manifest["outputs"] or tensor not in producer:
            _fail(where, f"logits.tensor {tensor!r} is not an output of the graph")
        frac_bits = logits.get("frac_bits")
        if not isinstance(frac_bits, int) or isinstance(frac_bits, bool) or frac_bits < 0:
            _fail(where, f"logits.frac_bits must be a non-negative integer, not {frac_bits!r}")
        width = notes[producer[tensor]]["output_shape"][-1]
        classes = logits.get("classes")
        if classes is not None and (not isinstance(classes, list) or len(classes) != width
                                    or not all(isinstance(c, str) for c in classes)):
            _fail(where, f"logits.classes must name the {width} classes as strings, not "
                         f"{classes!r}")
    if manifest.get("dataset") is not None and not isinstance(manifest["dataset"].get("name"),
                                                              str):
        _fail(where, "dataset must be null or an object with a 'name'")


def _word_bits(manifest):
    for entry in manifest.get("ops", []):
        memories = entry.get(_ANNOTATION, {}).get("memories") if isinstance(entry, dict) else None
        if memories:
            stored = manifest["memories"].get(memories.get("weight"), {})
            return stored.get("word_bits", DEFAULT_WORD_BITS)
    return DEFAULT_WORD_BITS


def read_package(path):
    """The golden graph of a package (see `load_package` for the checks)."""
    return load_package(path)[0]


# --------------------------------------------------------------------------------------------
# Command-line error handling shared by export, eval and vectors.

def run_cli(main, argv=None):
    """Run `main(argv)`; print expected errors as one line on stderr and exit 2, no traceback."""
    try:
        return main(argv)
    except KeyboardInterrupt:
        print("error: interrupted; nothing was written", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        if isinstance(error, OSError) and error.filename and error.strerror:
            message = f"{error.filename}: {error.strerror}"
        print(f"error: {message}", file=sys.stderr)
        return 2


def summary(manifest):
    """A human-readable table of a package: one line per op, then the memories."""
    lines = [f"{PACKAGE_FORMAT} v{manifest['version']}: master width {manifest['master_bits']}, "
             f"{'dynamic' if manifest['dynamic'] else 'static'}, candidates "
             f"{manifest['candidates']}, inputs "
             + ", ".join(f"{k} {v['shape']}" for k, v in manifest["inputs"].items())]
    for op in manifest["ops"]:
        hw = op["hw"]
        bits = op.get("bits")
        bits = (f"bits from {bits['select']}[{bits['index']}]" if isinstance(bits, dict)
                else "" if bits is None else f"{bits} bits")
        extra = f", {hw['macs']} MACs, K={hw['terms']}" if "macs" in hw else ""
        lines.append(f"  {op['name']:<20} {op['op']:<16} {hw['role']:<10} "
                     f"{str(hw['input_shapes']):<18} -> {str(hw['output_shape']):<14} "
                     f"{bits}{extra}")
    depth = sum(m["depth"] for m in manifest["memories"].values())
    lines.append(f"  {len(manifest['memories'])} memory-init files, {depth} words in all")
    return "\n".join(lines)


def main(argv=None):
    import argparse
    parser = argparse.ArgumentParser(
        prog="python -m dqt_hw.package",
        description="Validate an integer model package (every file, checksum, shape and "
                    "memory image) and print a summary of its layers.")
    parser.add_argument("package", metavar="DIR")
    args = parser.parse_args(argv)
    _, manifest = load_package(args.package)
    print(summary(manifest))
    print(f"{args.package}: valid")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
