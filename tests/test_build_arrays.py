# amaranth: UnusedElaboratable=no
"""The array comparison (`python -m dqt_hw.build.arrays`): its designs, its arguments and its
report, without running the FPGA tools (the bench runs them: docs/results.md)."""

import gc
import warnings

import pytest
from amaranth.hdl import UnusedElaboratable

from dqt_hw.build import arrays


def test_designs_and_products_per_cycle():
    scalable = arrays.make_array("scalable", 4)
    hybrid = arrays.make_array("hybrid", 4)
    fixed = arrays.make_array("fixed", 6, dsp_columns=4)
    assert [arrays.products_per_cycle(scalable, b) for b in (8, 4, 2)] == [4, 16, 64]
    assert [arrays.products_per_cycle(hybrid, b) for b in (8, 4, 2)] == [8, 16, 64]
    assert [arrays.products_per_cycle(fixed, b) for b in (8, 4, 2)] == [6, 6, 6]
    assert fixed.dsp_columns == 4 and not fixed.nest_weights
    # These arrays are inspected, never elaborated: collect them here, quietly, rather than
    # let their warning land in whichever test runs when the garbage collector does.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        del scalable, hybrid, fixed
        gc.collect()
    with pytest.raises(ValueError, match="`design` must be one of fixed, scalable, hybrid, "
                                         "not 'bitfusion'"):
        arrays.make_array("bitfusion", 2)


@pytest.mark.parametrize("argv, message", [
    (["--target", "xc7"], "`--target` must be one of ice40-up5k, ecp5-25f, ecp5-85f, not 'xc7'"),
    (["--candidates", "2,4"], "`--candidates` must be bit-widths in 2..8 including 8, not 2,4"),
    (["--candidates", "two"], "`--candidates` must be comma-separated integers, not 'two'"),
    (["--cols", "0"], "`--cols` must be a positive integer, not 0"),
])
def test_arguments_are_checked(argv, message, capsys):
    assert arrays.main(argv) == 2
    assert capsys.readouterr().err.strip() == f"error: {message}"


def _entry(kind, cols, dsp_columns, lut4, dsp, fmax, per_cycle):
    return {"design": kind, "cols": cols, "dsp_columns": dsp_columns,
            "resources": {"LUT4": lut4, "carry": 0, "FF": 0, "DSP": dsp},
            "products_per_cycle": dict(zip(("8", "4", "2"), per_cycle)),
            "fmax_mhz": {"min": fmax, "median": fmax, "max": fmax, "per_seed": [fmax]},
            "gmacs": {b: n * fmax / 1e3 for b, n in zip(("8", "4", "2"), per_cycle)}}


def test_report_gives_throughput_and_goal_verdicts():
    report = {"target": "ecp5-85f", "command": "python -m dqt_hw.build.arrays", "seeds": 1,
              "tools": {"yosys": "Yosys", "nextpnr": "nextpnr"}, "candidates": [2, 4, 8],
              "terms": 1024, "fixed_sizing": {"dsp_only_lut_sites": 100, "lut_sites_per_lut_column": 200},
              "designs": {
                  "fixed": _entry("fixed", 10, 4, 1300, 4, 120.0, (10, 10, 10)),
                  "scalable": _entry("scalable", 4, 0, 1200, 0, 110.0, (4, 16, 64)),
                  "hybrid": _entry("hybrid", 4, 0, 1300, 4, 105.0, (8, 16, 64))}}
    text = arrays.render(report)
    assert "| hybrid | 4 (4) | 1300 | 0 | 0 | 4 | 105.0 / 105.0 / 105.0 | 8 / 16 / 64 |" in text
    assert "- array Fmax >= 100 MHz: 105.0 MHz" in text and "**met**" in text
    # 8 x 105 against 10 x 120 at 8 bits; 64 x 105 against 10 x 120 at 2 bits.
    assert "hybrid / fixed = 0.70x: **missed**" in text
    assert "- 2 bits at least 4x faster than that design: 5.60x: **met**" in text
