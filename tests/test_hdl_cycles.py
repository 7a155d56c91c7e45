# amaranth: UnusedElaboratable=no
"""The cycle-measurement CLI (`python -m dqt_hw.hdl.cycles`) on a tiny array, and the measured
latency of every block against its `latency` property."""

import pytest

from dqt_hw.hdl import DequantRequant, NestUnit, Requantizer, ResidualAdder
from dqt_hw.hdl.cycles import block_latency, main


@pytest.mark.parametrize("block", [
    NestUnit(master_bits=8, signed=False), Requantizer(master_bits=8, max_terms=64),
    ResidualAdder(master_bits=8), DequantRequant(master_bits=8, signed=False),
], ids=lambda block: type(block).__name__)
def test_block_latency_is_measured(block):
    assert block_latency(block) == block.latency


def test_cycles_cli_small(capsys):
    assert main(["--rows", "1", "--cols", "1", "--terms", "32"]) == 0
    report = capsys.readouterr().out
    assert "| 8 | 8x8 | 37 | 37 | 1.00 | 1.00 | 1.00x |" in report     # latency 6
    assert "| 4 | 4x4 | 13 | 37 | 4.00 | 1.00 | 4.00x |" in report
    assert "| 2 | 2x2 | 7 | 37 | 16.00 | 1.00 | 16.00x |" in report
    assert "| DequantRequant | 3 |" in report and "| NestUnit | 0 |" in report


def test_cycles_cli_rejects_bad_size(capsys):
    assert main(["--rows", "0"]) == 1
    assert capsys.readouterr().err.strip() == "error: `rows` must be a positive integer, not 0"
