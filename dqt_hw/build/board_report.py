"""Throughput and the Markdown page of a board build (`dqt_hw.build.board`).

Images/s has two limits: the accelerator (cycles per image at the design clock, measured on
the simulated board: `python sim/board.py --json`) and the UART link (bytes per image at the
baud rate, counted from the driver's accesses and the protocol's frames). Both are given, and
their sum of times per image.
"""

import json

import numpy as np

from ..accel.driver import image_words
from ..boards import protocol

__all__ = ["link_per_image", "measured_cycles", "throughput", "render_markdown"]


def link_per_image(model):
    """What `AcceleratorDriver.infer` moves over the link for one image, with one STATUS poll:
    {"write_words", "write_frames", "read_words", "reads" (read frames, each a round trip),
    "bytes_to_board", "bytes_to_host"}."""
    shape = model.tensors[model.inputs[0]["name"]].shape
    words = len(image_words(model, np.zeros(shape, dtype=np.int64)))
    logits = next(o for o in model.outputs if o.get("memory") != "slots")
    bits = next((o for o in model.outputs if o.get("memory") == "slots"), None)
    # STATUS, the logits, the BITS span of the slots, CYCLES and OP_CYCLES: bursts of 256.
    blocks = [1, int(np.prod(logits["shape"])), 1, len(model.ops)]
    if bits:
        blocks.append(max(bits["slots"]) - min(bits["slots"]) + 1)
    reads = sum(-(-n // protocol.MAX_BURST) for n in blocks)
    write_frames = -(-words // protocol.MAX_BURST) + 1       # image, CONTROL
    to_board, to_host = protocol.wire_bytes(writes=words + 1, reads=sum(blocks),
                                            write_frames=write_frames, read_frames=reads)
    return {"write_words": words + 1, "write_frames": write_frames, "read_words": sum(blocks),
            "reads": reads, "bytes_to_board": to_board, "bytes_to_host": to_host}


def measured_cycles(path):
    """{mode: cycles per image} from a sim/board.py summary (its "cycles" table: "dynamic",
    "8", "4", ...) or a sim/net.py one (cycles_mean, at pin_bits or dynamic)."""
    try:
        summary = json.loads(open(path).read())
    except (OSError, ValueError) as error:
        raise ValueError(f"`--cycles` {path}: cannot read it ({error})") from None
    if isinstance(summary.get("cycles"), dict):
        return {str(mode): float(c) for mode, c in summary["cycles"].items()}
    if "cycles_mean" in summary:
        return {str(summary.get("pin_bits") or "dynamic"): float(summary["cycles_mean"])}
    raise ValueError(f"`--cycles` {path}: neither a sim/board.py nor a sim/net.py summary")


def throughput(report, model, graph, cycles_path):
    clock_hz = report["clock"]["design_hz"]
    link = link_per_image(model)
    line_s = (link["bytes_to_board"] + link["bytes_to_host"]) * protocol.BITS_PER_BYTE \
        / report["baud"]
    out = {"link": dict(link, line_s=line_s, round_trips=link["reads"],
                        images_per_s_line=1 / line_s), "compute": None}
    if cycles_path is not None:
        rows = {}
        for mode, cycles in measured_cycles(cycles_path).items():
            compute_s = cycles / clock_hz
            rows[mode] = {"cycles": cycles, "compute_s": compute_s,
                          "images_per_s_compute": 1 / compute_s,
                          "images_per_s_with_link": 1 / (compute_s + line_s)}
        out["compute"] = {"source": str(cycles_path), "rows": rows}
    return out


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def render_markdown(report):
    pr = report["place_route"]
    met = "met" if pr["timing_met"] else "MISSED"
    fmax = pr["fmax_mhz"]
    lines = [f"# Board build: {report['board']}", "",
             f"Timing {met}: Fmax {fmax['max']:.1f} MHz (seed {pr['chosen_seed']}, the "
             f"bitstream's) against the design clock {pr['design_mhz']:.4g} MHz; "
             f"{', '.join(f'{name} {size} bytes' for name, size in report['bitstreams'].items())}.",
             "", f"- board: {report['board_description']}",
             f"- package: `{report['package']}`",
             "- accelerator: " + ", ".join(f"{k}={v}" for k, v in report["config"].items()),
             f"- clock: {report['clock']['description']}; UART {report['baud']} baud",
             f"- command: `{report['command']}`",
             "- build time: " + ", ".join(f"{k[:-2]} {v:.0f} s"
                                           for k, v in report["stages"].items()), "",
             "## Utilisation (nextpnr, chosen seed)", "",
             _table(["cell", "used", "available", "%"],
                    [[cell, use["used"], use["available"],
                      f"{100 * use['used'] / use['available']:.0f}"]
                     for cell, use in pr["utilization"].items()]), "",
             "## Fmax (MHz) per seed", "",
             _table(["seed", "Fmax (worst clock)", "clocks"],
                    [[seed, f"{min(r['fmax_mhz'].values()):.2f}",
                      ", ".join(f"{c}: {f:.2f}" for c, f in r["fmax_mhz"].items())]
                     for seed, r in pr["seeds"].items()]), "",
             f"min / median / max: {fmax['min']:.2f} / {fmax['median']:.2f} / "
             f"{fmax['max']:.2f}", "", "## Throughput", ""]
    link = report["throughput"]["link"]
    lines += [f"UART link per image: {link['bytes_to_board']} bytes to the board and "
              f"{link['bytes_to_host']} back ({link['write_frames']} write frames, "
              f"{link['reads']} reads, each a round trip) = {1e3 * link['line_s']:.2f} ms at "
              f"{report['baud']} baud on the line alone, so at most "
              f"{link['images_per_s_line']:.0f} images/s over the link (plus the USB latency "
              f"of {link['reads']} round trips).", ""]
    compute = report["throughput"]["compute"]
    if compute is None:
        lines += ["Accelerator cycles per image: not measured in this build; "
                  "`python sim/board.py --json FILE` measures them and `--cycles FILE` adds "
                  "them here."]
    else:
        lines += [f"Cycles per image measured on the simulated board (`{compute['source']}`):",
                  "", _table(["bits", "cycles/image", "images/s (accelerator)",
                              "images/s (with the link)"],
                             [[mode, f"{row['cycles']:.0f}",
                               f"{row['images_per_s_compute']:.0f}",
                               f"{row['images_per_s_with_link']:.0f}"]
                              for mode, row in compute["rows"].items()])]
    return "\n".join(lines) + "\n"
