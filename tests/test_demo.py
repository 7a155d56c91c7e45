"""The README's first Quickstart command runs the demo; its own part must keep working (the
pipeline steps it runs are the CLIs tested in test_export_checkpoint.py and test_build*.py)."""

from dqt_hw import demo


def test_demo_runs_and_shows_the_shift_only_switch(capsys):
    assert demo.main(["--no-pipeline"]) == 0
    out = capsys.readouterr().out
    assert "b = 2: accumulator shifted left by 12" in out
    assert "M = 25795, r = 9" in out
