"""The build flow: Verilog, synthesis per block and for the array, place and route, report.

`run_build(config)` does everything in a staging folder beside the output folder and renames
it into place at the end, so the output folder holds either the previous complete build or the
new complete one, never a half-written report.
"""

import contextlib
import dataclasses
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

from amaranth.back import verilog
from tqdm import tqdm

from .. import toolchain
from ..atomic import replace_dir, staging_dir
from .accelerator import ACCELERATOR_BLOCK, build_accelerator
from .blocks import ARRAY_BLOCK, build_blocks
from .harness import TimingHarness
from .targets import TARGETS, capacity_use, classify_cells

__all__ = ["REPORT_FORMAT", "REPORT_VERSION", "BuildError", "run_build", "synthesize",
           "fits_target"]

REPORT_FORMAT = "dqt-hw-build-report"
REPORT_VERSION = 1


class BuildError(ValueError):
    """A configuration the target cannot hold, or an output folder we must not replace."""


@contextlib.contextmanager
def _amaranth_builtin_yosys():
    """Amaranth's Verilog backend also honours $YOSYS (its "system" Yosys comes first); the
    build's $YOSYS names the synthesis tool, so Verilog generation uses Amaranth's builtin
    Yosys unless the user chose with $AMARANTH_USE_YOSYS."""
    if "AMARANTH_USE_YOSYS" in os.environ:
        yield
        return
    os.environ["AMARANTH_USE_YOSYS"] = "builtin"
    try:
        yield
    finally:
        del os.environ["AMARANTH_USE_YOSYS"]


def _write_verilog(component, name, root):
    """Write verilog/<name>.v under `root`; return the path relative to `root`."""
    (root / "verilog").mkdir(parents=True, exist_ok=True)
    relative = Path("verilog") / f"{name}.v"
    with _amaranth_builtin_yosys():
        text = verilog.convert(component, name=name, emit_src=False)
    (root / relative).write_text(text)
    return relative


def _write_rtlil(component, name, root):
    """Write rtlil/<name>.il under `root` (Yosys reads RTLIL in a moment where it takes minutes
    on the Verilog of a large initialised memory); return the path relative to `root`."""
    from amaranth.back import rtlil
    (root / "rtlil").mkdir(parents=True, exist_ok=True)
    relative = Path("rtlil") / f"{name}.il"
    (root / relative).write_text(rtlil.convert(component, name=name, emit_src=False))
    return relative


def synthesize(verilog_path, top, target, root, *, dsp, netlist=False, packed=False,
               flatten=True, options=""):
    """Yosys synthesis of one Verilog (or, for a .il path, RTLIL) file (a path relative to
    `root`, where Yosys runs); `options` are appended to the synthesis command.

    Returns (resources, cells, script); the log and cell counts go to synth/<top>.*, and with
    netlist=True the mapped netlist to synth/<top>.json for nextpnr. With packed=True on iCE40
    the netlist is written too and resources["LC"] gives the logic cells it packs into
    (`dqt_hw.build.cells`).
    """
    packed = packed and target.family == "ice40"
    netlist = netlist or packed
    reader = "read_rtlil" if str(verilog_path).endswith(".il") else "read_verilog"
    script = [f"{reader} {verilog_path}",
              target.synth_command(top, dsp=dsp, flatten=flatten) + options
              + (f" -json synth/{top}.json" if netlist else ""),
              f"tee -q -o synth/{top}.stat.json stat -json"]
    stem = top if flatten else f"{top}.noflatten"
    toolchain.run_yosys(script, root, log_name=f"synth/{stem}.yosys.log")
    cells = toolchain.read_yosys_stat(Path(root) / "synth" / f"{top}.stat.json")
    resources = classify_cells(cells)
    if packed:
        # Not imported at the top: importing dqt_hw.build must not load the module that
        # `python -m dqt_hw.build.cells` runs.
        from .cells import predicted_cells
        resources["LC"] = predicted_cells(Path(root) / "synth" / f"{top}.json")
    return resources, cells, script


def nextpnr_flags(target, seeds):
    return list(target.nextpnr_device) + [
        "--pcf-allow-unconstrained" if target.family == "ice40" else "--lpf-allow-unconstrained",
        "--timing-allow-fail", f"--freq {target.target_mhz:g}", "--threads 1",
        f"--seed 1..{seeds}"]


def fits_target(target, resources):
    """The resources that exceed the device: {resource: (needed, available)}."""
    return {resource: (needed, available)
            for resource, (needed, available) in capacity_use(target, resources).items()
            if needed > available}


def _fmax_summary(results):
    values = [result.worst_fmax_mhz for result in results]
    return {"min": min(values), "median": statistics.median(values), "max": max(values),
            "per_seed": {str(result.seed): result.worst_fmax_mhz for result in results}}


def _staging_for(out_dir):
    """A fresh staging folder beside `out_dir`, after checking that `out_dir` may be replaced."""
    if out_dir.exists():
        is_build = out_dir.is_dir() and ((out_dir / "report.json").exists()
                                         or not any(out_dir.iterdir()))
        if not is_build:
            raise BuildError(f"`--out` {out_dir} exists and is not a dqt-hw build folder; "
                             f"choose another --out")
    return staging_dir(out_dir)


def run_build(config, *, argv=None, progress=True):
    """Build `config` (a `BuildConfig`); return the path of report.md.

    Raises ValueError (bad configuration, array too large for the target), `ToolMissing` or
    `ToolError`; nothing is left in the output folder in that case.
    """
    from . import report as report_module      # the report imports the energy model

    target = TARGETS[config.target]
    # Every tool is looked up first, so a missing one fails before any work is done.
    tools = {"yosys": toolchain.tool_version("yosys")}
    if config.place_route:
        tools["nextpnr"] = toolchain.tool_version(f"nextpnr-{target.family}")
    model = (report_module.load_model(config.model, dataset=config.dataset,
                                      mix_images=config.mix_images)
             if config.model is not None else None)
    blocks = build_blocks(config)
    out_dir = config.out_dir
    staging = _staging_for(out_dir)
    try:
        result = _run_in(staging, config, target, tools, blocks, progress)
        result["command"] = "python -m dqt_hw.build " + " ".join(
            argv if argv is not None else sys.argv[1:])
        report_module.add_analysis(result, config, model)
        (staging / "report.json").write_text(json.dumps(result, indent=1) + "\n")
        (staging / "report.md").write_text(report_module.render_markdown(result))
        replace_dir(staging, out_dir)
    except toolchain.ToolError as error:
        # Keep the logs the message points to, in a fixed place beside --out.
        failed = out_dir.parent / f".{out_dir.name}.failed"
        shutil.rmtree(failed, ignore_errors=True)
        os.rename(staging, failed)
        raise type(error)(str(error).replace(str(staging), str(failed))) from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir / "report.md"


def _run_in(staging, config, target, tools, blocks, progress):
    built = len(blocks) + int(config.builds_accelerator)
    steps = built * (2 if config.place_route else 1)
    if config.place_route:
        steps += (config.seeds - 1) * built
    bar = _Progress(steps, enabled=progress)
    started = time.monotonic()
    synth_flow = {"tool": tools["yosys"], "command": target.synth_command("<block>",
                                                                          dsp=config.dsp),
                  "invocation": "yosys -q -l synth/<block>.yosys.log synth/<block>.yosys.ys",
                  "stat": "stat -json"}
    pnr_flow = None
    if config.place_route:
        pnr_flow = {"tool": tools["nextpnr"], "flags": nextpnr_flags(target, config.seeds),
                    "wrapper": "TimingHarness (dqt_hw/build/harness.py): input shift chain, "
                               "output capture register and MISR, 4 pins"}
    report = {
        "format": REPORT_FORMAT, "version": REPORT_VERSION,
        "config": {key: (str(value) if isinstance(value, Path) else value)
                   for key, value in dataclasses.asdict(config).items()},
        "accumulator_bits": config.accumulator_width,
        "target": {"name": target.name, "family": target.family,
                   "capacity": target.capacity},
        "tools": tools, "synthesis_flow": synth_flow, "place_route_flow": pnr_flow,
        "blocks": {},
    }
    try:
        for spec, component in blocks:
            entry = {"description": spec.description, "top": spec.name}
            if spec.name == ARRAY_BLOCK:
                # Before generating its Verilog, which alone takes minutes for a huge array.
                _check_array_estimate(report, config, target)
            bar.set_postfix_str(f"yosys {target.synth_command(spec.name, dsp=config.dsp)}")
            vfile = _write_verilog(component, spec.name, staging)
            (staging / "verilog" / f"{spec.name}.ports.json").write_text(
                json.dumps(component.metadata.as_json(), indent=1) + "\n")
            entry["verilog"] = f"verilog/{spec.name}.v"
            entry["ports"] = f"verilog/{spec.name}.ports.json"
            entry.update(spec.facts(component))
            resources, cells, script = synthesize(vfile, spec.name, target, staging,
                                                  dsp=config.dsp, packed=True)
            entry["synthesis"] = {"resources": resources, "cells": cells,
                                  "tool": tools["yosys"], "script": script}
            if spec.name == ARRAY_BLOCK:
                too_big = fits_target(target, resources)
                if too_big:
                    raise BuildError(
                        f"a {config.rows}x{config.cols} array does not fit the {target.name}: "
                        + ", ".join(f"{resource} {need} > {have}"
                                    for resource, (need, have) in too_big.items())
                        + "; use a smaller --rows/--cols or a larger --target")
            report["blocks"][spec.name] = entry
            bar.update(1)
            if config.place_route:
                wrapper = f"{spec.name}_timed"
                bar.set_postfix_str(f"nextpnr-{target.family} {spec.name}")
                harness_v = _write_verilog(TimingHarness(component), wrapper, staging)
                try:
                    _r, _c, script = synthesize(harness_v, wrapper, target, staging,
                                                dsp=config.dsp, netlist=True)
                    note = None
                except toolchain.ToolError as error:
                    # Yosys 0.70's ABC9 can trip an internal assertion on a flattened
                    # harness (seen with synth_ecp5 on the scalable PE) that it does not on
                    # the block alone; mapping the block and the harness as separate modules
                    # avoids it. nextpnr flattens the hierarchical netlist itself.
                    _r, _c, script = synthesize(harness_v, wrapper, target, staging,
                                                dsp=config.dsp, netlist=True, flatten=False)
                    note = ("harness synthesized with -noflatten after the flattened run "
                            "failed: " + str(error).split("; log:")[0])
                entry["place_route"] = _place_route_block(spec.name, wrapper, staging, config,
                                                          target, tools, bar)
                entry["place_route"]["harness_synthesis"] = script
                if note:
                    entry["place_route"]["note"] = note
        if config.builds_accelerator:
            report["blocks"][ACCELERATOR_BLOCK] = build_accelerator(
                config, target, tools, staging, bar, synthesize=synthesize,
                place_route=_place_route_block, write_rtlil=_write_rtlil)
    finally:
        bar.close()
    report["elapsed_s"] = round(time.monotonic() - started, 1)
    return report


def _place_route_block(name, wrapper, staging, config, target, tools, bar):
    """nextpnr for seeds 1..S on the harnessed block; the report entry's place_route part.

    A block that fits the device alone but not with its timing harness (the harness adds a
    flip-flop per input bit) gets no Fmax, and the entry says why, instead of failing the
    whole build: its area figures stand.
    """
    entry = {"tool": tools["nextpnr"], "flags": nextpnr_flags(target, config.seeds)}
    results = []
    for seed in range(1, config.seeds + 1):
        bar.set_postfix_str(f"nextpnr-{target.family} {name} seed {seed}")
        try:
            results.append(toolchain.run_nextpnr(
                target.family, target.nextpnr_device, f"synth/{wrapper}.json", staging,
                seed=seed, freq_mhz=target.target_mhz, stem=f"pnr/{wrapper}.seed{seed}"))
        except toolchain.DeviceFull as full:
            bar.update(config.seeds - seed + 1)
            entry["not_measured"] = (
                "block and timing harness do not fit the device: " + ", ".join(
                    f"{cell} {used} > {available}"
                    for cell, (used, available) in full.overflow.items()))
            return entry
        bar.update(1)
    entry["fmax_mhz"] = _fmax_summary(results)
    entry["utilization"] = {cell: use for cell, use in results[0].utilization.items()
                            if use["used"]}
    return entry


class _Progress:
    """A tqdm bar on a terminal; one plain line per tool run otherwise (CI logs, pipes)."""

    def __init__(self, total, *, enabled):
        self.total, self.done, self.started = total, 0, time.monotonic()
        self.enabled = enabled
        self.bar = None
        if enabled and sys.stderr.isatty():
            self.bar = tqdm(total=total, desc="build", unit="step", file=sys.stderr,
                            bar_format="{desc}: {n}/{total} steps [{elapsed}] {postfix}")

    def set_postfix_str(self, text):
        if self.bar is not None:
            self.bar.set_postfix_str(text)
        elif self.enabled:
            elapsed = time.monotonic() - self.started
            print(f"build [{self.done}/{self.total}, {elapsed:.0f} s] {text}", file=sys.stderr,
                  flush=True)

    def update(self, count):
        self.done += count
        if self.bar is not None:
            self.bar.update(count)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _check_array_estimate(report, config, target):
    """Refuse an array that surely cannot fit, before spending minutes synthesizing it.

    The array holds rows x cols processing elements, so it needs at least that many times the
    PE's LUT4 and flip-flops (synthesized just before).
    """
    pe = report["blocks"].get("pe_scalable")
    if pe is None:
        return
    count = config.rows * config.cols
    estimate = {key: count * value for key, value in pe["synthesis"]["resources"].items()}
    too_big = fits_target(target, estimate)
    if too_big:
        raise BuildError(
            f"a {config.rows}x{config.cols} array does not fit the {target.name}: its "
            f"{count} PEs alone need "
            + ", ".join(f"{resource} >= {need} > {have}"
                        for resource, (need, have) in too_big.items())
            + "; use a smaller --rows/--cols or a larger --target")
