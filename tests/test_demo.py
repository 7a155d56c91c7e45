"""The README's first Quickstart command runs the demo: its own part, and its pipeline short of
synthesis (the CLIs it runs are tested in test_export_checkpoint.py and test_build.py)."""

from dqt_hw import demo


def test_demo_runs_and_shows_the_shift_only_switch(capsys):
    assert demo.main(["--no-pipeline"]) == 0
    out = capsys.readouterr().out
    assert "b = 2: accumulator shifted left by 12" in out
    assert "M = 25795, r = 9" in out


def test_demo_pipeline_shows_per_image_bit_choices(tmp_path, capsys):
    """`make demo` without synthesis, one epoch: every step runs, and the model of step 4
    picks different bit-widths for different images, bit-exact with the emulation."""
    assert demo.main(["--out", str(tmp_path), "--epochs", "1", "--no-build"]) == 0
    out = capsys.readouterr().out
    step4 = out[out.index("4. Per image precision"):]
    patterns = int(step4.split(" pattern(s) over 360 test images")[0].rsplit(" ", 1)[1])
    assert patterns > 1, step4
    assert "package still gives the emulation's logits and choices exactly" in step4
    assert (tmp_path / "pkg-digits-dqt-mixed" / "manifest.json").is_file()
