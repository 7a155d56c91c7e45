"""The README's first Quickstart command runs the demo; it must keep working."""

from dqt_hw import demo


def test_demo_runs_and_shows_the_shift_only_switch(capsys):
    assert demo.main([]) == 0
    out = capsys.readouterr().out
    assert "b = 2: accumulator shifted left by 12" in out
    assert "M = 25795, r = 9" in out
