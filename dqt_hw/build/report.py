"""The analysis tables of a build report, and its Markdown rendering.

Tables: area and Fmax of every block; the transition cost (nest unit against the
dequantize/requantize unit); the flexibility tax and throughput (precision-scalable PE against
the fixed n x n MAC); the energy model, per element and, with --model, per inference.
"""

from pathlib import Path

from .. import energy
from .targets import TARGETS

__all__ = ["FLEXIBILITY_GOAL", "load_model", "model_section", "op_count_markdown",
           "inference_markdown", "flexibility_verdict", "add_analysis", "render_markdown",
           "fmax_cell"]

#: The flexibility-tax goal: the scalable PE's LUT4 (also counted as LUT4 sites, carry LUTs
#: included) and FF at most this many times the fixed n x n MAC's, at n = 8.
FLEXIBILITY_GOAL = 1.5


def load_model(path, *, dataset=None, mix_images=1000):
    """(graph, manifest, measured bit mix or None, description of the mix's source).

    The package is read and checked by `dqt_hw.package.load_package`. With `dataset`, the bit
    mix of a dynamic model is measured by the golden interpreter on the first `mix_images`
    test images (`dqt_hw.eval.load_test_set`, the training code's image-to-code mapping).
    """
    from ..package import load_package
    graph, manifest = load_package(Path(path))
    mix = source = None
    if dataset is not None and manifest.get("dynamic"):
        from ..eval import load_test_set
        codes, _labels = load_test_set(dataset, graph["master_bits"],
                                       next(iter(graph["inputs"].values()))["shape"])
        mix = energy.measure_bit_mix(graph, codes[:mix_images])
        source = f"golden run on the first {min(mix_images, len(codes))} {dataset} test images"
    return graph, manifest, mix, source


def model_section(path, model):
    """The report's energy/model entry for `load_model`'s result."""
    graph, manifest, mix, source = model
    controlled = manifest.get("controlled_layers") or None
    static = sorted({b for b in (8, 4, 2) if b <= graph["master_bits"]}, reverse=True)
    inference = energy.inference_energy(graph, static_bits=static, bit_mix=mix,
                                        controlled=controlled)
    counts = {str(b): energy.transition_op_counts(graph, bits=b, controlled=controlled)
              for b in static if b < graph["master_bits"]}
    return {"path": str(path), "dynamic": bool(manifest.get("dynamic")), "bit_mix": mix,
            "bit_mix_source": source, "inference": inference, "transition_op_counts": counts}


def op_count_markdown(model):
    """The paper's op-count view of `model_section`'s entry, as Markdown lines."""
    return [f"Op-count view (the paper's: one shift or two float32 operations per switched "
            f"element, per image) for `{model['path']}`:", "", _table(
                ["network pinned to b", "elements switched", "DQT shifts",
                 "float32 ops (dequantize + requantize)", "nest nJ", "float32 switch nJ"],
                [[b, _num(c["elements"]), _num(c["shifts"]), _num(c["float_ops"]),
                  f"{c['nest_pj'] / 1e3:.2f}", f"{c['dequant_requant_pj'] / 1e3:.2f}"]
                 for b, c in model["transition_op_counts"].items()])]


def inference_markdown(model):
    """The energy-per-inference table of `model_section`'s entry, as Markdown lines."""
    inference = model["inference"]
    fixed = len(inference["layers"]) - len(inference["controlled"])
    out = [f"Energy per inference of `{model['path']}` (45 nm model, one image; weights "
           f"{inference['memory_bytes']:,} bytes of SRAM):", "", _table(
               ["configuration", "mean b, controlled layers (MAC-weighted)",
                "mean b, all layers", "MACs", "BitOPs", "MAC nJ", "nest nJ", "requantize nJ",
                "SRAM nJ", "total nJ"],
               [[row["config"], f"{row['mean_bits']:.2f}",
                 f"{row['mean_bits_all_layers']:.2f}", _num(row["macs"]),
                 _num(row["bitops"]), f"{row['mac_pj'] / 1e3:.2f}",
                 f"{row['nest_pj'] / 1e3:.3f}", f"{row['requantize_pj'] / 1e3:.2f}",
                 f"{row['sram_pj'] / 1e3:.2f}", f"{row['total_pj'] / 1e3:.2f}"]
                for row in inference["rows"]])]
    out += ["", f"A configuration sets the b of the {len(inference['controlled'])} controlled "
                f"layers; the other {fixed} conv/linear layers (stem, classifier, controller) "
                f"always run at n bits. They count in MACs, BitOPs and energy, and in the "
                f"all-layer mean b, which is why that mean exceeds b in a \"static b\" row."]
    if model["bit_mix_source"]:
        out += ["", f"Dynamic bit mix: {model['bit_mix_source']}."]
    elif model["dynamic"]:
        out += ["", "Dynamic model: give `--dataset` to measure its bit mix."]
    return out


def _resources(block):
    return block["synthesis"]["resources"] if block else None


def _fmax(block):
    if block and "fmax_mhz" in block.get("place_route", {}):
        return block["place_route"]["fmax_mhz"]["median"]
    return None


def _transition(report, config):
    """Nest unit against the dequantize/requantize unit, per element switched."""
    blocks = report["blocks"]
    rows = []
    n = config.master_bits
    low = min(config.candidates)
    for name in ("nest_unit_unsigned", "dequant_requant_unsigned", "nest_unit_signed",
                 "dequant_requant_signed"):
        block = blocks.get(name)
        if block is None:
            continue
        resources = _resources(block)
        if name.startswith("nest"):
            energy_pj = energy.nest_pj(n, low)
            basis = " + ".join(energy.NEST_OPS) + f", n = {n} to b = {low}"
        else:
            energy_pj = energy.dequant_requant_pj(float_mults=1)
            basis = " + ".join(energy.DEQUANT_UNIT_OPS)
        rows.append({
            "block": name, "LUT4": resources["LUT4"], "carry": resources["carry"],
            "FF": resources["FF"], "DSP": resources["DSP"],
            "latency_cycles": block.get("latency_cycles"),
            # Every one of these blocks takes one element per cycle (their docstrings).
            "cycles_per_element": 1,
            "fmax_mhz": _fmax(block), "energy_pj_per_element": energy_pj,
            "energy_basis": basis})
    return {"rows": rows}


def _flexibility(report, config):
    """Scalable PE against the fixed MAC: area ratio, products per cycle, MAC/s."""
    blocks = report["blocks"]
    pe, fixed = blocks.get("pe_scalable"), blocks.get("pe_fixed")
    if pe is None or fixed is None:
        return None
    pe_res, fixed_res = _resources(pe), _resources(fixed)
    ratio = {key: (pe_res[key] / fixed_res[key] if fixed_res[key] else None)
             for key in ("LUT4", "FF", "carry")}
    target = TARGETS[report["target"]["name"]]
    ratio["LUT4_sites"] = target.lut_sites(pe_res) / target.lut_sites(fixed_res)
    if "LC" in pe_res and "LC" in fixed_res:        # iCE40: logic cells after packing
        ratio["LC"] = pe_res["LC"] / fixed_res["LC"]
    modes = []
    array = blocks.get("mac_array")
    for bits, per_cycle in sorted(pe["products_per_cycle"].items(), key=lambda kv: -int(kv[0])):
        fmax_pe = _fmax(pe)
        fmax_array = _fmax(array)
        pes = config.rows * config.cols
        modes.append({
            "bits": int(bits), "pe_macs_per_cycle": per_cycle,
            "fixed_macs_per_cycle": fixed["products_per_cycle"].get(str(bits), 1),
            "pe_mac_per_s": per_cycle * fmax_pe * 1e6 if fmax_pe else None,
            "fixed_mac_per_s": (fixed["products_per_cycle"].get(str(bits), 1) * _fmax(fixed)
                                * 1e6 if _fmax(fixed) else None),
            "array_mac_per_s": pes * per_cycle * fmax_array * 1e6 if fmax_array else None})
    return {"ratio": ratio, "modes": modes,
            "goal": f"scalable PE LUT4 and FF at most {FLEXIBILITY_GOAL}x the fixed MAC at "
                    f"n = 8 (Bit Fusion pays 2.5x)",
            "verdict": flexibility_verdict(ratio, config.master_bits)}


def flexibility_verdict(ratio, master_bits):
    """"met", "missed (...)" or "not applicable (...)" for the flexibility-tax goal."""
    if master_bits != 8:
        return f"not applicable (the goal is stated for n = 8, this build has n = {master_bits})"
    over = [f"{name} {ratio[key]:.2f}x" for key, name in
            (("LUT4", "LUT4"), ("LUT4_sites", "LUT4 sites"), ("FF", "FF"))
            if ratio.get(key) is not None and ratio[key] > FLEXIBILITY_GOAL]
    return f"missed ({', '.join(over)} above {FLEXIBILITY_GOAL}x)" if over else "met"


def add_analysis(report, config, model):
    """Add the transition, flexibility and energy sections to `report` (in place).

    `model` is None or `load_model`'s result.
    """
    report["transition"] = _transition(report, config)
    report["flexibility"] = _flexibility(report, config)
    n = config.master_bits
    per_op = {"source": energy.SOURCE, "anchors_pj": energy.HOROWITZ_45NM_PJ,
              "derived_pj": {
                  f"nest {n} -> {b}": energy.nest_pj(n, b) for b in config.candidates},
              "dequant_requant_pj": energy.dequant_requant_pj(),
              "dequant_requant_unit_pj": energy.dequant_requant_pj(float_mults=1),
              "mac_pj": {str(b): energy.mac_pj(b, config.terms) for b in config.candidates}}
    report["energy"] = {"per_operation": per_op, "model": None}
    if model is not None:
        report["energy"]["model"] = model_section(config.model, model)


def _num(value, digits=1):
    if value is None:
        return "n/a"
    if isinstance(value, int):
        return f"{value:,}"
    if abs(value) >= 1e6:
        return f"{value:.3g}"
    return f"{value:.{digits}f}"


def fmax_cell(block):
    """'min / median / max', or why there is no Fmax."""
    pnr = block.get("place_route")
    if pnr is None:
        return "not run"
    if "fmax_mhz" not in pnr:
        return f"not measured: {pnr['not_measured']}"
    fmax = pnr["fmax_mhz"]
    return f"{fmax['min']:.1f} / {fmax['median']:.1f} / {fmax['max']:.1f}"


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def render_markdown(report):
    """report.md: the tables a person reads, with the tools and flags under each."""
    config, target = report["config"], report["target"]
    synth = report["synthesis_flow"]
    pnr = report["place_route_flow"]
    accelerator = report["blocks"].get("accelerator")
    blocks_only = [name for name in report["blocks"] if name != "accelerator"]
    out = [f"# dqt-hw build: {target['name']}, n = {config['master_bits']}"
           + (f", {config['rows']}x{config['cols']} array" if blocks_only else ""),
           "", f"Command: `{report['command']}`", ""]
    if blocks_only:
        multipliers = "DSP blocks where Yosys maps them" if config["dsp"] else "LUT logic (no DSP)"
        out += [f"Blocks: accumulator {report['accumulator_bits']} bits (K = {config['terms']}); "
                f"candidate bit-widths {', '.join(map(str, config['candidates']))}; multipliers "
                f"in {multipliers}.", ""]
    if accelerator:
        accel = accelerator["accelerator_config"]
        out += [f"Accelerator for `{accelerator['model']}`: 1x{accel['cols']} array, bit-widths "
                f"{', '.join(map(str, accel['supported_bits']))}, dot products up to "
                f"K = {accel['max_terms']}, {accel['data_words']}-word data memory "
                f"({accelerator['data_memory']}), 8-bit products on DSPs: "
                f"{'yes' if accel['dsp_wide'] else 'no'}; Yosys maps multipliers to DSPs.", ""]
    out += [f"Build time {report['elapsed_s']} s.", "", "## Area and Fmax", ""]
    rows = []
    # iCE40 builds also give the logic cells each block packs into (`dqt_hw.build.cells`).
    packed = any("LC" in block["synthesis"]["resources"] for block in report["blocks"].values())
    for name, block in report["blocks"].items():
        res = block["synthesis"]["resources"]
        rows.append([f"`{name}`", _num(res["LUT4"]), _num(res["carry"]), _num(res["FF"])]
                    + ([_num(res.get("LC"))] if packed else [])
                    + [_num(res["DSP"]), _num(res["BRAM"]), fmax_cell(block)])
    out.append(_table(["block", "LUT4", "carry", "FF"] + (["logic cells"] if packed else [])
                      + ["DSP", "BRAM", "Fmax MHz min / median / max"], rows))
    if packed:
        out += ["", "Logic cells: the iCE40 cells the block packs into (each one LUT4, one carry "
                    "and one flip-flop fed by that LUT), predicted from the netlist by `python -m "
                    "dqt_hw.build.cells`; the capacity check counts them."]
    out += ["", f"Synthesis: {synth['tool']}; `{synth['command']}` per block (flattened), "
                f"counted with `{synth['stat']}`; run as `{synth['invocation']}`."]
    if pnr:
        out.append(f"Place and route: {pnr['tool']}; flags `{' '.join(pnr['flags'])}`; each "
                   f"block inside the {pnr['wrapper']}. Fmax is the post-route worst clock.")
        for name, block in report["blocks"].items():
            if block.get("place_route", {}).get("note"):
                out.append(f"`{name}`: {block['place_route']['note']}.")
    capacity = target["capacity"]
    out.append(f"Device capacity: {', '.join(f'{k} {v:,}' for k, v in capacity.items())}.")

    transition = report["transition"]
    out += ["", "## Transition cost: nest unit vs dequantize/requantize unit", ""]
    if transition["rows"]:
        out.append(_table(
            ["block", "LUT4", "carry", "FF", "DSP", "latency (cycles)", "cycles/element",
             "Fmax MHz (median)", "energy pJ/element (45 nm model)"],
            [[f"`{row['block']}`", _num(row["LUT4"]), _num(row["carry"]), _num(row["FF"]),
              _num(row["DSP"]), _num(row["latency_cycles"]), _num(row["cycles_per_element"]),
              _num(row["fmax_mhz"]), f"{row['energy_pj_per_element']:.3f}"]
             for row in transition["rows"]]))
        bases = {row["energy_basis"] for row in transition["rows"]}
        out += ["", "Energy per element (docs/energy.md): " + "; ".join(sorted(bases))
                + ". Area and Fmax from the flows above; every block takes one element per "
                  "cycle."]
    model = report["energy"]["model"]
    if model:
        out += [""] + op_count_markdown(model)

    flexibility = report["flexibility"]
    out += ["", "## Flexibility tax and throughput: scalable PE vs fixed MAC", ""]
    if flexibility:
        ratio = flexibility["ratio"]
        out.append(f"Scalable PE / fixed MAC: LUT4 {_num(ratio['LUT4'], 2)}x, LUT4 sites "
                   f"(carry LUTs included) {_num(ratio['LUT4_sites'], 2)}x, FF "
                   f"{_num(ratio['FF'], 2)}x, carry {_num(ratio['carry'], 2)}x"
                   + (f", logic cells (packed) {_num(ratio['LC'], 2)}x" if "LC" in ratio
                      else "") + ".")
        out.append(f"Goal: {flexibility['goal']}: **{flexibility['verdict']}**.")
        out += ["", _table(
            ["b", "PE MACs/cycle", "fixed MAC MACs/cycle", "PE MAC/s at Fmax",
             "fixed MAC/s at Fmax", "array MAC/s at array Fmax"],
            [[m["bits"], m["pe_macs_per_cycle"], m["fixed_macs_per_cycle"],
              _num(m["pe_mac_per_s"]), _num(m["fixed_mac_per_s"]), _num(m["array_mac_per_s"])]
             for m in flexibility["modes"]])]
    else:
        out.append("Not available: build both `pe_scalable` and `pe_fixed`.")

    energy_section = report["energy"]
    per_op = energy_section["per_operation"]
    out += ["", "## Energy model (45 nm)", "",
            f"Anchors from {per_op['source']}: "
            + ", ".join(f"{k} {v:g} pJ" for k, v in per_op["anchors_pj"].items())
            + ". Scaling to other widths is an assumption (docs/energy.md).", ""]
    out.append(_table(["operation", "pJ"],
                      [[k, f"{v:.3f}"] for k, v in per_op["derived_pj"].items()]
                      + [[f"MAC at b = {b} (K = {config['terms']})", f"{v:.3f}"]
                         for b, v in per_op["mac_pj"].items()]
                      + [["dequantize + requantize, paper's count (2 conversions, 2 float32 "
                          "mults)", f"{per_op['dequant_requant_pj']:.3f}"],
                         ["dequantize/requantize unit (2 conversions, 1 float32 mult)",
                          f"{per_op['dequant_requant_unit_pj']:.3f}"]]))
    if model:
        out += [""] + inference_markdown(model)
    else:
        out += ["", "Per-inference energy: give an exported package with `--model DIR`."]
    return "\n".join(out) + "\n"
