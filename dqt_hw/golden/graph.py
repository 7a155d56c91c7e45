"""The integer network description and its interpreter (docs/arithmetic.md §8).

A description is a plain dict (JSON-shaped, with integer NumPy arrays for weights and
per-channel constants)::

    {
      "format": "dqt-hw-graph", "version": 1,
      "master_bits": 8,
      "inputs": {"image": {"shape": [1, 8, 8]}},       # unsigned master codes, batch axis added
      "outputs": ["logits", "bits"],
      "ops": [ {"op": "conv2d", "name": "stem", "input": "image", "output": "t0", ...}, ... ],
    }

Ops run in list order; each reads tensors defined before it. The op kinds and their fields are
listed in `OP_FIELDS`; §8 of the spec gives their meaning. A layer's `bits` is either an integer
(static precision) or {"select": TENSOR, "index": i}: column i of a `select_bits` output, one
bit-width per image (dynamic precision).
"""

import numpy as np

from .codes import _is_int, as_codes, check_bits, check_codes, check_master_bits
from .constants import accumulator_bits
from . import ops as _ops

__all__ = ["GRAPH_FORMAT", "GRAPH_VERSION", "OP_FIELDS", "GraphError", "validate_graph",
           "run_graph", "layer_terms"]

GRAPH_FORMAT = "dqt-hw-graph"
GRAPH_VERSION = 1

_LAYER = ("input", "output", "weight", "bias", "multiplier", "shift", "bits", "lo", "hi")
#: Required fields of each op kind (besides "op" and "name").
OP_FIELDS = {
    "conv2d": _LAYER + ("stride", "padding"),
    "linear": _LAYER,
    "add": ("inputs", "output", "k1", "k2", "k3", "shift", "lo", "hi"),
    "avg_pool2d": ("input", "output", "kernel", "stride", "multiplier", "shift", "lo", "hi"),
    "global_avg_pool": ("input", "output", "multiplier", "shift", "lo", "hi"),
    "flatten": ("input", "output"),
    "clip": ("input", "output", "lo", "hi"),
    "select_bits": ("input", "output", "candidates", "layers"),
}


class GraphError(ValueError):
    """An integer network description that is malformed or inconsistent."""


def _fail(op, message):
    where = f"op {op.get('name') or op.get('op')!r}" if isinstance(op, dict) else "graph"
    raise GraphError(f"{where}: {message}")


def layer_terms(op):
    """K, the number of products summed per output of a conv2d or linear op."""
    return int(np.prod(np.shape(op["weight"])[1:]))


def _check_layer(op, master_bits, selects):
    weight = as_codes(op["weight"], f"{op['name']}.weight")
    want_ndim = 4 if op["op"] == "conv2d" else 2
    if weight.ndim != want_ndim:
        _fail(op, f"weight must have {want_ndim} dimensions, not shape {weight.shape}")
    check_codes(weight, master_bits, signed=True, name=f"{op['name']}.weight")
    channels = weight.shape[0]
    for field in ("bias", "multiplier", "shift"):
        value = as_codes(op[field], f"{op['name']}.{field}")
        if value.shape != (channels,):
            _fail(op, f"{field} must have shape ({channels},) to match the weight, "
                      f"not {value.shape}")
    if np.any(as_codes(op["shift"]) < 0) or np.any(as_codes(op["multiplier"]) < 0):
        _fail(op, "multiplier and shift must be non-negative")
    # §7: the bias is added to the master-width accumulator and must fit that width.
    limit = 1 << (accumulator_bits(master_bits, master_bits, layer_terms(op)) - 1)
    bias = as_codes(op["bias"])
    if bias.size and (int(bias.min()) < -limit or int(bias.max()) >= limit):
        _fail(op, f"bias must fit the {limit.bit_length()}-bit master accumulator "
                  f"[{-limit}, {limit - 1}]")
    bits = op["bits"]
    if isinstance(bits, dict):
        if set(bits) != {"select", "index"} or bits["select"] not in selects:
            _fail(op, f"dynamic bits must be {{'select': <a select_bits output>, 'index': i}}, "
                      f"not {bits!r}")
        if not _is_int(bits["index"]) or not 0 <= bits["index"] < selects[bits["select"]]:
            _fail(op, f"bits index {bits['index']!r} is outside the "
                      f"{selects[bits['select']]} layers of {bits['select']!r}")
    else:
        try:
            check_bits(bits, master_bits)
        except (TypeError, ValueError) as error:
            _fail(op, str(error))


def validate_graph(graph):
    """Check a description's structure, names, shapes and ranges; raise `GraphError`."""
    if not isinstance(graph, dict):
        raise GraphError(f"graph: a description must be a dict, not {type(graph).__name__}")
    if graph.get("format") != GRAPH_FORMAT:
        raise GraphError(f"graph: format must be {GRAPH_FORMAT!r}, not {graph.get('format')!r}")
    if graph.get("version") != GRAPH_VERSION:
        raise GraphError(f"graph: unsupported version {graph.get('version')!r} "
                         f"(this dqt_hw reads version {GRAPH_VERSION}); re-export the model")
    for key in ("master_bits", "inputs", "outputs", "ops"):
        if key not in graph:
            raise GraphError(f"graph: missing field {key!r}")
    try:
        master_bits = check_master_bits(graph["master_bits"])
    except (TypeError, ValueError) as error:
        raise GraphError(f"graph: {error}") from None
    defined = set(graph["inputs"])
    # The least code each tensor can hold: conv2d/linear read unsigned codes only (§5.1).
    lowest = {name: 0 for name in graph["inputs"]}
    selects = {}
    names = set()
    for op in graph["ops"]:
        if not isinstance(op, dict) or op.get("op") not in OP_FIELDS:
            _fail(op, f"unknown op kind {op.get('op') if isinstance(op, dict) else op!r}; "
                      f"known: {', '.join(OP_FIELDS)}")
        if not op.get("name") or op["name"] in names:
            _fail(op, "every op needs a unique non-empty 'name'")
        names.add(op["name"])
        missing = [field for field in OP_FIELDS[op["op"]] if field not in op]
        if missing:
            _fail(op, f"missing field(s) {', '.join(missing)}")
        reads = op["inputs"] if op["op"] == "add" else [op["input"]]
        for tensor in reads:
            if tensor not in defined:
                _fail(op, f"reads tensor {tensor!r} before anything defines it")
        if op["output"] in defined:
            _fail(op, f"redefines tensor {op['output']!r}")
        if "lo" in op and (not _is_int(op["lo"]) or not _is_int(op["hi"])
                           or op["lo"] > op["hi"]):
            _fail(op, f"output range must be integers lo <= hi, not [{op['lo']}, {op['hi']}]")
        if op["op"] in ("conv2d", "linear"):
            if lowest[op["input"]] < 0:
                _fail(op, f"reads {op['input']!r}, which may hold negative codes (lo = "
                          f"{lowest[op['input']]}); conv2d and linear read unsigned codes only, "
                          f"so clip it to lo >= 0 first")
            _check_layer(op, master_bits, selects)
        elif op["op"] == "avg_pool2d":
            if not _is_int(op["kernel"]) or op["kernel"] < 1:
                _fail(op, f"kernel must be a positive integer (one size for both axes), not "
                          f"{op['kernel']!r}")
            if op["stride"] is not None and (not _is_int(op["stride"]) or op["stride"] < 1):
                _fail(op, f"stride must be a positive integer or null (= kernel), not "
                          f"{op['stride']!r}")
        elif op["op"] == "select_bits":
            candidates = op["candidates"]
            if not candidates:
                _fail(op, "candidates must not be empty")
            for bits in candidates:
                try:
                    check_bits(bits, master_bits)
                except (TypeError, ValueError) as error:
                    _fail(op, f"candidate {error}")
            if not _is_int(op["layers"]) or op["layers"] < 1:
                _fail(op, f"layers must be a positive integer, not {op['layers']!r}")
            selects[op["output"]] = op["layers"]
        defined.add(op["output"])
        lowest[op["output"]] = (op["lo"] if "lo" in op else lowest[op["input"]]
                                if op["op"] == "flatten" else 0)
    for tensor in graph["outputs"]:
        if tensor not in defined:
            raise GraphError(f"graph: output {tensor!r} is not defined by any op")
    return graph


def _layer_bits(op, env, batch):
    """Per-image bit-widths of a conv2d/linear op as an int64 vector of length `batch`."""
    bits = op["bits"]
    if isinstance(bits, dict):
        return env[bits["select"]][:, bits["index"]]
    return np.full(batch, bits, dtype=np.int64)


def _run_layer(op, x, env, master_bits):
    bits = _layer_bits(op, env, x.shape[0])
    kwargs = dict(bias=op["bias"], multiplier=op["multiplier"], shift=op["shift"],
                  master_bits=master_bits, lo=op["lo"], hi=op["hi"])
    if op["op"] == "conv2d":
        layer = _ops.nested_conv2d
        kwargs.update(stride=op["stride"], padding=op["padding"])
    else:
        layer = _ops.nested_linear
    out = None
    # Images that chose the same bit-width run together; results go back in input order.
    for width in np.unique(bits):
        rows = np.flatnonzero(bits == width)
        part = layer(x[rows], op["weight"], bits=int(width), **kwargs)
        if out is None:
            out = np.empty((x.shape[0],) + part.shape[1:], dtype=np.int64)
        out[rows] = part
    return out


def _select_bits(op, logits):
    """Argmax per controlled layer over its candidates; ties go to the first (lowest index)."""
    layers, candidates = op["layers"], np.asarray(op["candidates"], dtype=np.int64)
    if logits.ndim != 2 or logits.shape[1] != layers * len(candidates):
        raise GraphError(f"op {op['name']!r}: input must have shape (N, {layers} x "
                         f"{len(candidates)}), not {logits.shape}")
    choice = logits.reshape(logits.shape[0], layers, len(candidates)).argmax(axis=2)
    return candidates[choice]


def run_graph(graph, inputs, *, keep_all=False):
    """Run an integer network on a batch; return {output name: int64 array}.

    `inputs` maps each input name to unsigned master codes with a leading batch axis (a bare
    array is accepted when the graph has one input). With keep_all=True every tensor is
    returned, for test vectors and debugging.
    """
    validate_graph(graph)
    master_bits = graph["master_bits"]
    if not isinstance(inputs, dict):
        if len(graph["inputs"]) != 1:
            raise GraphError(f"graph: inputs must be a dict naming {sorted(graph['inputs'])}")
        inputs = {next(iter(graph["inputs"])): inputs}
    env = {}
    for name, spec in graph["inputs"].items():
        if name not in inputs:
            raise GraphError(f"graph: input {name!r} was not given")
        codes = check_codes(inputs[name], master_bits, signed=False, name=name)
        if tuple(codes.shape[1:]) != tuple(spec["shape"]):
            raise GraphError(f"graph: input {name!r} must have shape (N, "
                             f"{', '.join(map(str, spec['shape']))}), not {codes.shape}")
        env[name] = codes
    for op in graph["ops"]:
        kind = op["op"]
        if kind == "add":
            a, b = (env[t] for t in op["inputs"])
            out = _ops.add(a, b, k1=op["k1"], k2=op["k2"], k3=op["k3"], shift=op["shift"],
                           lo=op["lo"], hi=op["hi"])
        else:
            x = env[op["input"]]
            if kind in ("conv2d", "linear"):
                out = _run_layer(op, x, env, master_bits)
            elif kind == "avg_pool2d":
                out = _ops.avg_pool2d(x, kernel=op["kernel"], stride=op["stride"],
                                      multiplier=op["multiplier"], shift=op["shift"],
                                      lo=op["lo"], hi=op["hi"])
            elif kind == "global_avg_pool":
                out = _ops.global_avg_pool(x, multiplier=op["multiplier"], shift=op["shift"],
                                           lo=op["lo"], hi=op["hi"])
            elif kind == "flatten":
                out = x.reshape(x.shape[0], -1)
            elif kind == "clip":
                out = _ops.clip(x, lo=op["lo"], hi=op["hi"])
            else:                                                    # select_bits
                out = _select_bits(op, x)
        env[op["output"]] = out
    if keep_all:
        return env
    return {name: env[name] for name in graph["outputs"]}
