"""The whole accelerator in a build: `python -m dqt_hw.build --model PKG` (docs/build.md).

The package is compiled for an accelerator configuration sized to it (`dqt_hw.accel.sizing`:
`--cols` columns, the bit-widths the model runs, memories rounded up from what it uses; on
iCE40 one pooling lane, the 8-bit products on DSP blocks and the UP5K's SPRAM as data memory),
so a model the configuration cannot run is refused before any synthesis. The accelerator top
is then synthesized (RTLIL into Yosys, DSP blocks allowed: they hold the requantizer's and the
residual join's multipliers) and checked against the device; place and route in the timing
harness gives its Fmax. On iCE40 the logic cells count too, predicted from the netlist
(`dqt_hw.build.cells`). The report says whether it fits, by how much if not, and, with
measured cycles per image (`--cycles`, a `sim/net.py --json` summary), the images/s at Fmax.
"""

import json
from pathlib import Path

from ..accel.sizing import family_settings, fitted_config
from .harness import TimingHarness
from .targets import capacity_use

__all__ = ["ACCELERATOR_BLOCK", "accelerator_config", "build_accelerator"]

ACCELERATOR_BLOCK = "accelerator"


def accelerator_config(config, target, graph):
    """(`AcceleratorConfig`, compiled model) of a build: sized to the model, the build's
    columns, the target family's area settings (`dqt_hw.accel.sizing.family_settings`)."""
    try:
        return fitted_config(graph, cols=config.cols, **family_settings(target.family))
    except (TypeError, ValueError) as error:
        raise ValueError(f"{config.model}: {error}") from None


def data_memory_for(target):
    return "ice40-spram" if target.family == "ice40" else "portable"


def build_accelerator(config, target, tools, staging, bar, *, synthesize, place_route,
                      write_rtlil):
    """Compile `config.model`, synthesize the accelerator for `target`, place and route it.

    `synthesize`, `place_route` and `write_rtlil` are the flow's functions (passed in so that
    this module does not import the flow). Returns the report entry; raises ValueError (one
    line) when the model does not compile or the accelerator does not fit the device."""
    from ..hdl.accelerator import Accelerator
    from ..package import load_package
    graph, _ = load_package(config.model)
    accel_config, model = accelerator_config(config, target, graph)
    component = Accelerator(accel_config, data_memory=data_memory_for(target))
    entry = {"description": "the whole accelerator (docs/accelerator.md) for the model",
             "top": ACCELERATOR_BLOCK, "model": str(config.model),
             "accelerator_config": accel_config.__dict__ | {
                 "supported_bits": list(accel_config.supported_bits)},
             "data_memory": data_memory_for(target),
             "model_words": model.describe()["words"]}
    bar.set_postfix_str(f"yosys {ACCELERATOR_BLOCK}")
    source = write_rtlil(component, ACCELERATOR_BLOCK, staging)
    # On iCE40 the netlist gives the logic cells ("LC"), which decide whether it fits.
    resources, cells, script = synthesize(source, ACCELERATOR_BLOCK, target, staging, dsp=True,
                                          packed=True)
    entry["synthesis"] = {"resources": resources, "cells": cells, "tool": tools["yosys"],
                          "script": script, "source": str(source)}
    use = capacity_use(target, resources)
    entry["fits"] = {resource: {"used": need, "available": have}
                     for resource, (need, have) in use.items()}
    over = {resource: (need, have) for resource, (need, have) in use.items() if need > have}
    bar.update(1)
    if over:
        raise ValueError(
            f"the accelerator for {config.model} (1x{accel_config.cols} array) does not fit "
            f"the {target.name}: " + ", ".join(f"{resource} {need} > {have} (by {need - have})"
                                               for resource, (need, have) in over.items()))
    if config.place_route:
        wrapper = f"{ACCELERATOR_BLOCK}_timed"
        harness = write_rtlil(TimingHarness(Accelerator(
            accel_config, data_memory=data_memory_for(target))), wrapper, staging)
        _r, _c, script = synthesize(harness, wrapper, target, staging, dsp=True, netlist=True)
        entry["place_route"] = place_route(ACCELERATOR_BLOCK, wrapper, staging, config, target,
                                           tools, bar)
        entry["place_route"]["harness_synthesis"] = script
    if config.cycles is not None:
        entry["throughput"] = throughput(entry, config.cycles)
    return entry


def throughput(entry, cycles_path):
    """Images/s at the median Fmax for each measured cycle count in a sim/net.py summary."""
    try:
        summary = json.loads(Path(cycles_path).read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"`--cycles` {cycles_path}: cannot read a sim/net.py summary "
                         f"({error})") from None
    fmax = entry.get("place_route", {}).get("fmax_mhz", {}).get("median")
    cycles = summary.get("cycles_mean")
    if cycles is None:
        raise ValueError(f"`--cycles` {cycles_path}: no cycles_mean in it")
    result = {"source": str(cycles_path), "cycles_per_image": cycles,
              "pin_bits": summary.get("pin_bits"), "images": summary.get("images")}
    if fmax:
        result["images_per_s"] = fmax * 1e6 / cycles
    return result

