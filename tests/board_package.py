"""A small digits DQT package for the board tests (trained once per test session)."""

from pathlib import Path

_CACHE = {}


def small_digits_package(tmp_path_factory):
    """A 1-epoch, width-4 digits DQT model with a random controller output layer (so the
    bit-widths vary per image), exported; (package folder, checkpoint)."""
    if "package" not in _CACHE:
        from dqt_hw.export import main as export_main
        from train.fit import main as fit_main
        from train.random_controller import main as random_main
        root = Path(tmp_path_factory.mktemp("board-package"))
        run = root / "run"
        assert fit_main(["--threads", "1", "--no-progress", "--dataset", "digits",
                         "--mode", "dqt", "--epochs", "1", "--width", "4",
                         "--out", str(run)]) == 0
        checkpoint = root / "randctrl.pt"
        assert random_main([str(run / "checkpoint.pt"), "--dataset", "digits",
                            "--out", str(checkpoint)]) == 0
        package = root / "pkg"
        assert export_main([str(checkpoint), "--out", str(package)]) == 0
        _CACHE["package"] = (package, checkpoint)
    return _CACHE["package"]
