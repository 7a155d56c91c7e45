"""What every block testbench shares: clock and reset, seeded randomness, the operation budget
and the per-test report the regression runner adds up.

Environment (set by sim/regression.py; defaults let a testbench run under any cocotb runner):

- `COCOTB_RANDOM_SEED`: the regression seed. cocotb derives a per-test seed from it and the
  test's name; each test's generators start from that.
- `DQT_SIM_SCALE`: fraction of the full regression's operation count to run (1 = full).
- `DQT_SIM_REPORT_DIR`: folder where each test writes `<test>.json` (operations, seed, cycles).
"""

import json
import os
import random
import time
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import RisingEdge

from .streams import StallPolicy

__all__ = ["TestbenchEnv", "reference_design", "sim_random_seed", "CLOCK_PERIOD_NS"]

CLOCK_PERIOD_NS = 10


def reference_design(name):
    """A fresh instance of the reference design `name` (the Verilog top module's name), built
    by `dqt_hw.hdl.rtl.build` from the table `python -m dqt_hw.hdl` generates rtl/ from."""
    from dqt_hw.hdl import rtl
    if name not in rtl.REFERENCE_DESIGNS:
        raise KeyError(f"{name!r} is not a reference design of dqt_hw.hdl.rtl "
                       f"({', '.join(rtl.REFERENCE_DESIGNS)})")
    return rtl.build(name)


def sim_random_seed():
    """The regression seed: `COCOTB_RANDOM_SEED` as the runner set it (inside a test cocotb
    replaces `cocotb.RANDOM_SEED` by a per-test seed derived from it)."""
    text = os.environ.get("COCOTB_RANDOM_SEED")
    return int(text) if text else int(cocotb.RANDOM_SEED)


def _scale():
    text = os.environ.get("DQT_SIM_SCALE", "1")
    try:
        scale = float(text)
    except ValueError:
        raise ValueError(f"`DQT_SIM_SCALE` must be a number in (0, 1], not {text!r}") from None
    if not 0 < scale <= 1:
        raise ValueError(f"`DQT_SIM_SCALE` must be a number in (0, 1], not {text!r}")
    return scale


class TestbenchEnv:
    """Per-test context: `rng` (NumPy, for stimulus data), `random` (Python, for per-cycle
    stall decisions and junk payloads), both derived from cocotb's per-test seed (itself
    derived from the regression seed and the test name, so one test's draws do not shift
    another's); the regression seed is logged with the command that reproduces the run."""

    def __init__(self, dut, test):
        self.dut = dut
        self.block = dut._name
        self.test = test
        #: The Amaranth component the Verilog was generated from: its parameters and port
        #: layouts configure the bench, so nothing is restated here.
        self.design = reference_design(self.block)
        self.log = dut._log
        self.seed = sim_random_seed()
        test_seed = int(cocotb.RANDOM_SEED)
        self.rng = np.random.default_rng(test_seed)
        self.random = random.Random(test_seed)
        self.scale = _scale()
        self.clock = None
        self._started = time.perf_counter()
        self.log.info("%s.%s: seed %d (rerun: python sim/regression.py --block %s --seed %d)",
                      self.block, test, self.seed, self.block, self.seed)

    @property
    def icarus(self):
        """True under Icarus Verilog (an event-driven interpreter, 10 to 30 times slower
        than Verilator's compiled model on the wide combinational blocks)."""
        return cocotb.SIM_NAME.lower().startswith("icarus")

    def budget(self, full, minimum=1, *, icarus=1.0):
        """Operations to run: `full` in the full regression, scaled down (at least `minimum`)
        in a quick run, and by `icarus` more under Icarus Verilog."""
        factor = self.scale * (icarus if self.icarus else 1.0)
        return max(minimum, round(full * factor))

    def stall_policy(self):
        """A fresh random stall policy on this test's Python generator."""
        return StallPolicy(self.random)

    async def start_clock(self, clock="clk", reset="rst", reset_cycles=2):
        """Start the clock on port `clock`, hold the synchronous reset `reset` high for
        `reset_cycles` edges (skipped when the block has no reset port) and count cycles."""
        self.clock = getattr(self.dut, clock)
        Clock(self.clock, CLOCK_PERIOD_NS, unit="ns").start()
        self._clock_started_ns = get_sim_time("ns")
        reset_port = getattr(self.dut, reset, None) if reset else None
        if reset_port is not None:
            reset_port.value = 1
            for _ in range(reset_cycles):
                await RisingEdge(self.clock)
            reset_port.value = 0
        return self.clock

    @property
    def cycles(self):
        """Clock cycles since `start_clock` (0 for a combinational block)."""
        if self.clock is None:
            return 0
        return int((get_sim_time("ns") - self._clock_started_ns) // CLOCK_PERIOD_NS)

    def report(self, *scoreboards, **details):
        """Finish every scoreboard (raises on any mismatch, missing or extra result) and write
        this test's report; its operations are the compared integers of all of them."""
        operations = sum(scoreboard.finish() for scoreboard in scoreboards)
        record = {
            "block": self.block, "test": self.test, "seed": self.seed, "scale": self.scale,
            "operations": operations,
            "transactions": sum(scoreboard.transactions for scoreboard in scoreboards),
            "mismatches": sum(scoreboard.mismatches for scoreboard in scoreboards),
            "cycles": self.cycles, "wall_s": round(time.perf_counter() - self._started, 3),
            **details,
        }
        self.log.info("%s.%s: %d operations, %d cycles, 0 mismatches", self.block, self.test,
                      operations, self.cycles)
        folder = os.environ.get("DQT_SIM_REPORT_DIR")
        if folder:
            path = Path(folder) / f"{self.block}.{self.test}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_suffix(".json.tmp")
            temporary.write_text(json.dumps(record, indent=1) + "\n")
            temporary.replace(path)
        return record
