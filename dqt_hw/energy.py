"""Energy estimates from per-operation energies at 45 nm (docs/energy.md).

The anchors are Horowitz, "Computing's energy problem (and what we can do about it)", ISSCC
2014: 8-bit add 0.03 pJ, 8-bit multiply 0.2 pJ, 32-bit add 0.1 pJ, 32-bit multiply 3.1 pJ,
float32 add 0.9 pJ, float32 multiply 3.7 pJ, a 64-bit SRAM access 10 pJ (8 KB) to 100 pJ (1 MB).
Every other figure here is derived from them by the scaling rules below, which are
ASSUMPTIONS of this model (stated again in docs/energy.md), not measurements:

* integer add and compare: energy proportional to the width (0.03 pJ x w / 8; this gives
  0.12 pJ at 32 bits against the measured 0.1 pJ);
* integer multiply: proportional to the number of partial-product bits a x b
  (0.2 pJ x a b / 64; 3.2 pJ at 32 x 32 against the measured 3.1 pJ);
* a barrel shift of a w-bit word costs one w-bit add (log2 w levels of 2:1 multiplexers switch
  about as much capacitance as a w-bit ripple adder);
* SRAM: a 64-bit access costs 10 pJ at 8 KB and 100 pJ at 1 MB, log-linear in between, clamped
  outside; a narrower access costs its share of 64 bits;
* int32 <-> float32 conversion costs one float32 add (both are an align/normalize shift and an
  add).

Energies are returned in picojoules as floats: this module is an estimate for reports and never
touches the integer inference path.
"""

import dataclasses
import math

import numpy as np

from .golden import (MULTIPLIER_BITS, accumulator_bits, layer_terms, requantizer_bits,
                     run_graph, validate_graph)

__all__ = [
    "HOROWITZ_45NM_PJ", "SOURCE", "int_add_pj", "int_mul_pj", "shift_pj", "sram_pj",
    "nest_pj", "dequant_requant_pj", "mac_pj", "requantize_pj", "NEST_OPS", "DEQUANT_OPS",
    "DEQUANT_UNIT_OPS",
    "LayerShape", "network_layers", "layer_energy_pj", "inference_energy",
    "transition_op_counts", "measure_bit_mix",
]

SOURCE = ("M. Horowitz, \"Computing's energy problem (and what we can do about it)\", "
          "ISSCC 2014, 45 nm, 0.9 V")

#: The measured anchors (pJ per operation).
HOROWITZ_45NM_PJ = {
    "int8 add": 0.03, "int8 mult": 0.2, "int32 add": 0.1, "int32 mult": 3.1,
    "float32 add": 0.9, "float32 mult": 3.7,
    "SRAM 64-bit access, 8 KB": 10.0, "SRAM 64-bit access, 1 MB": 100.0,
}

_SRAM_SMALL_BYTES = 8 * 1024
_SRAM_LARGE_BYTES = 1024 * 1024


def _positive(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer, not {value!r}")
    return int(value)


def int_add_pj(bits):
    """A `bits`-wide integer add (assumption: linear in width, anchored at 8 bits)."""
    return HOROWITZ_45NM_PJ["int8 add"] * _positive("bits", bits) / 8


def int_mul_pj(a_bits, b_bits):
    """An a x b-bit integer multiply (assumption: proportional to a*b, anchored at 8 x 8)."""
    return (HOROWITZ_45NM_PJ["int8 mult"] * _positive("a_bits", a_bits)
            * _positive("b_bits", b_bits) / 64)


def shift_pj(bits):
    """A barrel shift of a `bits`-wide word (assumption: one add of the same width)."""
    return int_add_pj(bits)


def sram_pj(bits, memory_bytes):
    """Reading or writing `bits` bits from an SRAM of `memory_bytes` bytes."""
    bits = _positive("bits", bits)
    size = min(max(_positive("memory_bytes", memory_bytes), _SRAM_SMALL_BYTES),
               _SRAM_LARGE_BYTES)
    small = HOROWITZ_45NM_PJ["SRAM 64-bit access, 8 KB"]
    large = HOROWITZ_45NM_PJ["SRAM 64-bit access, 1 MB"]
    where = math.log(size / _SRAM_SMALL_BYTES) / math.log(_SRAM_LARGE_BYTES / _SRAM_SMALL_BYTES)
    return (small * (large / small) ** where) * bits / 64


#: The operations of one nest (shift + rounding bit + saturation), for the op-count view.
NEST_OPS = ("barrel shift (n bits)", "add rounding bit (b bits)", "saturate: compare (b bits)")
#: The operations of one conventional precision switch of an element, as the paper counts it
#: (two float operations: dequantize, then requantize) and as `DequantRequant` builds it (the
#: two scales folded into one float32 multiply).
DEQUANT_OPS = ("int -> float32", "float32 mult by the old scale",
               "float32 mult by 1 / new scale", "float32 -> int (round)")
DEQUANT_UNIT_OPS = ("int -> float32", "float32 mult by old / new scale",
                    "float32 -> int (round)")


def nest_pj(master_bits, bits):
    """Energy of nesting one n-bit master code to b bits; zero at b = n (a straight wire)."""
    master_bits = _positive("master_bits", master_bits)
    bits = _positive("bits", bits)
    if bits > master_bits:
        raise ValueError(f"`bits` must be at most `master_bits` ({master_bits}), not {bits}")
    if bits == master_bits:
        return 0.0
    return shift_pj(master_bits) + 2 * int_add_pj(bits)


def dequant_requant_pj(float_mults=2):
    """Energy of the float32 switch of one element: two conversions and `float_mults` float32
    multiplies (2 as the paper counts it, 1 in `DequantRequant`, which folds the scales)."""
    if float_mults not in (1, 2):
        raise ValueError(f"`float_mults` must be 1 or 2, not {float_mults!r}")
    return (2 * HOROWITZ_45NM_PJ["float32 add"]
            + float_mults * HOROWITZ_45NM_PJ["float32 mult"])


def mac_pj(bits, terms):
    """One b x b multiply and its add into the accumulator of a K-term dot product."""
    return int_mul_pj(bits, bits) + int_add_pj(accumulator_bits(bits, bits, terms))


def requantize_pj(master_bits, terms):
    """One output of the requantizer: shift and bias add, M multiply, rounding shift, clamp."""
    width = requantizer_bits(master_bits, terms)
    acc = accumulator_bits(master_bits, master_bits, terms)
    return (shift_pj(acc) + int_add_pj(acc + 1) + int_mul_pj(acc + 1, MULTIPLIER_BITS)
            + int_add_pj(width) + shift_pj(width) + 2 * int_add_pj(master_bits))


@dataclasses.dataclass(frozen=True)
class LayerShape:
    """What the energy model needs of one conv2d/linear op, per image."""
    name: str
    kind: str
    terms: int
    macs: int
    weights: int
    inputs: int
    outputs: int
    bits: object          # an int (static) or "dynamic"


def network_layers(graph):
    """The conv2d/linear layers of a golden graph with their per-image sizes.

    Shapes come from running one all-zero image through the golden interpreter.
    """
    validate_graph(graph)
    zeros = {name: np.zeros((1,) + tuple(spec["shape"]), dtype=np.int64)
             for name, spec in graph["inputs"].items()}
    env = run_graph(graph, zeros, keep_all=True)
    layers = []
    for op in graph["ops"]:
        if op["op"] not in ("conv2d", "linear"):
            continue
        terms = layer_terms(op)
        outputs = int(np.prod(env[op["output"]].shape[1:]))
        layers.append(LayerShape(
            name=op["name"], kind=op["op"], terms=terms, macs=outputs * terms,
            weights=int(np.prod(np.shape(op["weight"]))),
            inputs=int(np.prod(env[op["input"]].shape[1:])), outputs=outputs,
            bits="dynamic" if isinstance(op["bits"], dict) else int(op["bits"])))
    return layers


def layer_energy_pj(layer, *, bits, master_bits, memory_bytes):
    """Energy of one layer for one image at bit-width b, split by where it goes (pJ).

    Assumptions (docs/energy.md): master codes are stored and moved at n bits whatever b is;
    every weight and input element is read from SRAM once per image and nested once on its way
    into the array; every output is requantized once and written back at n bits.
    """
    return {
        "mac": layer.macs * mac_pj(bits, layer.terms),
        "nest": (layer.weights + layer.inputs) * nest_pj(master_bits, bits),
        "requantize": layer.outputs * requantize_pj(master_bits, layer.terms),
        "sram": (layer.weights + layer.inputs + layer.outputs)
                * sram_pj(master_bits, memory_bytes),
    }


def _controlled(layers, controlled):
    """Names of the layers whose b a precision setting changes.

    `controlled` (a package manifest's "controlled_layers") wins; else the dynamic layers;
    else, in a fully static network, every layer but the first and the last (they stay at n
    bits: DQT_NOTES §3).
    """
    if controlled is not None:
        names = {layer.name for layer in layers}
        unknown = sorted(set(controlled) - names)
        if unknown:
            raise ValueError(f"`controlled` names layers the graph lacks: {', '.join(unknown)}")
        return set(controlled)
    dynamic = {layer.name for layer in layers if layer.bits == "dynamic"}
    if dynamic:
        return dynamic
    return {layer.name for layer in layers[1:-1]}


def _static_bits(layers, master_bits, bits, controlled=None):
    """{layer: {b: 1.0}}: the b each layer runs at when the network is pinned to b."""
    chosen = {}
    names = _controlled(layers, controlled)
    for layer in layers:
        chosen[layer.name] = {bits: 1.0} if layer.name in names else {
            (master_bits if layer.bits == "dynamic" else layer.bits): 1.0}
    return chosen


def inference_energy(graph, *, static_bits=(8, 4, 2), bit_mix=None, controlled=None):
    """Energy per inference (one image) of a golden graph.

    Returns {"rows": [{"config", "mean_bits", "mean_bits_all_layers", "mac_pj", "nest_pj",
    "requantize_pj", "sram_pj", "total_pj", "macs", "bitops"}, ...], "memory_bytes": ...,
    "controlled": [...], "layers": [...]}: one row per
    static b in `static_bits` (each capped at n) and, when `bit_mix` is given
    ({layer name: {b: fraction}} measured on data, see `measure_bit_mix`), one row "dynamic".
    `controlled` names the layers a static b applies to (see `_controlled`). Every conv2d and
    linear layer counts (the controller's too); residual adds and pooling are not counted.
    "mean_bits" is the MAC-weighted mean b of the controlled layers (exactly b in a
    "static b" row); "mean_bits_all_layers" also counts the layers that always run at n bits
    (stem, classifier, controller), so it is above b in a "static b < n" row.
    """
    master_bits = graph["master_bits"]
    layers = network_layers(graph)
    names = _controlled(layers, controlled)
    weight_bits = sum(layer.weights for layer in layers) * master_bits
    memory_bytes = max(1, -(-weight_bits // 8))
    configs = [(f"static b = {b}", _static_bits(layers, master_bits, b, controlled))
               for b in static_bits if b <= master_bits]
    if bit_mix is not None:
        mix = {}
        for layer in layers:
            if layer.name in bit_mix:
                mix[layer.name] = {int(b): float(f) for b, f in bit_mix[layer.name].items()}
            else:
                mix[layer.name] = {layer.bits if layer.bits != "dynamic" else master_bits: 1.0}
        configs.append(("dynamic (measured mix)", mix))
    rows = []
    for label, choice in configs:
        parts = {"mac": 0.0, "nest": 0.0, "requantize": 0.0, "sram": 0.0}
        bitops = 0.0
        bit_macs = {}                     # layer -> MACs x mean b
        for layer in layers:
            for b, fraction in choice[layer.name].items():
                energy = layer_energy_pj(layer, bits=b, master_bits=master_bits,
                                         memory_bytes=memory_bytes)
                for key, value in energy.items():
                    parts[key] += fraction * value
                bitops += fraction * layer.macs * b * b
                bit_macs[layer.name] = bit_macs.get(layer.name, 0.0) + fraction * layer.macs * b
        macs = sum(layer.macs for layer in layers)
        controlled_macs = sum(layer.macs for layer in layers if layer.name in names)
        rows.append({"config": label,
                     "mean_bits": (sum(bit_macs[name] for name in names) / controlled_macs
                                   if controlled_macs else 0.0),
                     "mean_bits_all_layers": sum(bit_macs.values()) / macs if macs else 0.0,
                     "macs": macs, "bitops": bitops,
                     **{f"{key}_pj": value for key, value in parts.items()},
                     "total_pj": sum(parts.values())})
    return {"rows": rows, "memory_bytes": memory_bytes,
            "controlled": [layer.name for layer in layers if layer.name in names],
            "layers": [dataclasses.asdict(layer) for layer in layers]}


def measure_bit_mix(graph, inputs):
    """{layer name: {b: fraction of images}} of the dynamic layers, from a golden run."""
    env = run_graph(graph, inputs, keep_all=True)
    mix = {}
    for op in graph["ops"]:
        if op["op"] in ("conv2d", "linear") and isinstance(op["bits"], dict):
            chosen = env[op["bits"]["select"]][:, op["bits"]["index"]]
            values, counts = np.unique(chosen, return_counts=True)
            mix[op["name"]] = {int(v): float(c) / chosen.size for v, c in zip(values, counts)}
    return mix


def transition_op_counts(graph, *, bits=None, controlled=None):
    """The paper's op-count view of precision switching for one image of a network.

    Each weight and input element of a layer running below n bits is switched once: DQT nests
    it with one shift (plus rounding bit and saturation), the conventional way dequantizes and
    requantizes it with two float32 operations (the paper's count, 28.3 M shifts against 56.6 M
    float operations for ResNet-50). `bits` pins every controlled layer to that b (see
    `inference_energy`); None counts every layer a dynamic model may switch.
    Returns {"elements", "shifts", "float_ops", "nest_pj", "dequant_requant_pj"}.
    """
    master_bits = graph["master_bits"]
    layers = network_layers(graph)
    if bits is None:
        switched = [layer for layer in layers
                    if layer.bits == "dynamic" or layer.bits < master_bits]
        widths = {layer.name: (min(_dynamic_candidates(graph)) if layer.bits == "dynamic"
                               else layer.bits) for layer in switched}
    else:
        chosen = _static_bits(layers, master_bits, bits, controlled)
        widths = {name: next(iter(mix)) for name, mix in chosen.items()}
        switched = [layer for layer in layers if widths[layer.name] < master_bits]
    elements = sum(layer.weights + layer.inputs for layer in switched)
    nest_energy = sum((layer.weights + layer.inputs) * nest_pj(master_bits, widths[layer.name])
                      for layer in switched)
    return {"elements": elements, "shifts": elements, "float_ops": 2 * elements,
            "nest_pj": nest_energy, "dequant_requant_pj": elements * dequant_requant_pj()}


def _dynamic_candidates(graph):
    return sorted({int(b) for op in graph["ops"] if op["op"] == "select_bits"
                   for b in op["candidates"]}) or [graph["master_bits"]]



def main(argv=None):
    """python -m dqt_hw.energy --model DIR: the op-count and per-inference energy tables."""
    import argparse
    import json
    import sys
    from pathlib import Path

    from .build.report import inference_markdown, load_model, model_section, op_count_markdown

    parser = argparse.ArgumentParser(
        prog="python -m dqt_hw.energy",
        description="Energy per inference (45 nm model, docs/energy.md) of an exported integer "
                    "package for static b = 8, 4, 2 and its measured dynamic bit mix, and the "
                    "paper's op-count view of precision switching. No FPGA tools needed.")
    parser.add_argument("--model", type=Path, required=True,
                        help="package folder written by python -m dqt_hw.export")
    parser.add_argument("--dataset", default=None,
                        help="measure a dynamic model's bit mix on this dataset's test split "
                             "(digits or fashion-mnist)")
    parser.add_argument("--mix-images", type=int, default=1000,
                        help="test images for the bit mix (default %(default)s)")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args(argv)
    try:
        if args.mix_images < 1:
            raise ValueError(f"`--mix-images` must be a positive integer, not {args.mix_images}")
        section = model_section(args.model, load_model(args.model, dataset=args.dataset,
                                                      mix_images=args.mix_images))
        if args.json is not None:
            temp = args.json.with_name(f".{args.json.name}.tmp")
            temp.write_text(json.dumps(section, indent=1) + "\n")
            temp.replace(args.json)
    except (ValueError, TypeError, OSError) as error:
        print(f"error: {str(error).splitlines()[0]}", file=sys.stderr)
        return 2
    print("\n".join(op_count_markdown(section) + [""] + inference_markdown(section)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
