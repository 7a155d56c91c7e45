"""PLL settings (checked against the data sheets' formulas and ranges, and icepll's published
answer), the board catalog and the accelerator sizing of a board build."""

import pytest

from dqt_hw.boards.catalog import BOARDS, check_board
from dqt_hw.boards.clocks import plan_clock
from dqt_hw.accel.sizing import fitted_config, model_bits


def _ice40_out(source, p):
    pfd = source / (p["DIVR"] + 1)
    vco = pfd * (p["DIVF"] + 1)
    assert 10e6 <= pfd <= 133e6 and 533e6 <= vco <= 1066e6
    return vco / 2 ** p["DIVQ"]


def _ecp5_out(source, p):
    pfd = source / p["CLKI_DIV"]
    out = pfd * p["CLKFB_DIV"]
    assert 3.125e6 <= pfd <= 400e6 and 400e6 <= out * p["CLKOP_DIV"] <= 800e6
    assert p["CLKOP_CPHASE"] == p["CLKOP_DIV"] - 1
    return out


@pytest.mark.parametrize("want", [16e6, 18e6, 24e6, 30e6, 36e6, 48e6, 60e6])
def test_ice40_pll_settings_make_the_frequency(want):
    plan = plan_clock("ice40", 12_000_000, want)
    assert plan.primitive == "SB_PLL40_PAD"
    assert _ice40_out(12e6, plan.params) == pytest.approx(plan.clock_hz)
    assert abs(plan.clock_hz - want) <= 0.01 * want


def test_ice40_pll_matches_icepll_for_30_mhz():
    # icepll -i 12 -o 30: DIVR 0, DIVF 79, DIVQ 5, FILTER_RANGE 1.
    params = plan_clock("ice40", 12_000_000, 30e6).params
    assert (params["DIVR"], params["DIVF"], params["DIVQ"], params["FILTER_RANGE"]) == (0, 79, 5, 1)


@pytest.mark.parametrize("want", [20e6, 30e6, 40e6, 50e6, 62.5e6, 75e6])
def test_ecp5_pll_settings_make_the_frequency(want):
    plan = plan_clock("ecp5", 25_000_000, want)
    assert plan.primitive == "EHXPLLL"
    assert _ecp5_out(25e6, plan.params) == pytest.approx(plan.clock_hz)
    assert abs(plan.clock_hz - want) <= 0.01 * want


def test_the_oscillator_frequency_needs_no_pll_and_impossible_ones_are_refused():
    assert plan_clock("ice40", 12_000_000, 12e6).primitive is None
    with pytest.raises(ValueError, match="no ice40 PLL setting makes 10 MHz from 12 MHz"):
        plan_clock("ice40", 12_000_000, 10e6)
    with pytest.raises(ValueError, match="`family` must be 'ice40' or 'ecp5', not 'gowin'"):
        plan_clock("gowin", 12_000_000, 10e6)


def test_every_board_default_clock_and_baud_are_buildable():
    from dqt_hw.boards.uart import uart_divisor
    for board in BOARDS.values():
        plan = plan_clock(board.family, board.oscillator_hz, board.clock_hz)
        assert uart_divisor(round(plan.clock_hz), board.baud) >= 4
    with pytest.raises(ValueError, match="`--board` must be one of icebreaker, ulx3s-85f, "
                                         "ulx3s-25f, not 'arty'"):
        check_board("arty")


def test_fitted_config_sizes_memories_to_the_model():
    from test_export_package import random_graph
    graph = random_graph(3, dynamic=True)
    config, model = fitted_config(graph, cols=2)
    assert config.cols == 2 and config.supported_bits == model_bits(graph)
    assert config.data_words >= model.data_words_used > config.data_words // 2
    assert config.program_words >= len(model.program) > config.program_words // 2 or \
        config.program_words == 16
    # The weight buffer is the shortest power-of-two multiple of 16 that compiles.
    from dqt_hw.accel.compiler import CompileError, compile_graph
    from dqt_hw.accel.config import AcceleratorConfig
    import dataclasses
    if config.max_terms > 16:
        with pytest.raises(CompileError, match="max_terms"):
            compile_graph(graph, AcceleratorConfig(**dict(dataclasses.asdict(config),
                                                          max_terms=config.max_terms // 2)))
