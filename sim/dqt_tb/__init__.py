"""Shared cocotb testbench library for the dqt-hw blocks (sim/).

`streams` drives and monitors `amaranth.lib.stream` ports (valid/ready) with random stalls on
both sides, `scoreboard` compares DUT integers with `dqt_hw.golden` by exact equality, and
`env` holds the clock, reset, seeding and operation-budget plumbing every testbench shares.
"""

from .env import TestbenchEnv, reference_design, sim_random_seed
from .scoreboard import Scoreboard, ScoreboardError
from .streams import StallPolicy, StreamSource, StreamSink

__all__ = ["TestbenchEnv", "reference_design", "sim_random_seed", "Scoreboard", "ScoreboardError",
           "StallPolicy", "StreamSource", "StreamSink"]
