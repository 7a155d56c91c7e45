"""python -m dqt_hw.run: one-line errors for a missing build, a port that cannot open, a
missing programmer and a silent board (the image-by-image path runs on the simulated board,
tests/test_sim_board.py)."""

import json

import pytest

from dqt_hw.accel.config import AcceleratorConfig
from dqt_hw.boards.catalog import BOARDS
from dqt_hw.run import main, program_board


def _build_folder(tmp_path, package):
    import dataclasses
    from dqt_hw.accel.sizing import fitted_config
    from dqt_hw.package import load_package
    graph, _ = load_package(package)
    config, _ = fitted_config(graph, cols=1)
    folder = tmp_path / "build"
    folder.mkdir()
    (folder / "board.json").write_text(json.dumps({
        "board": "icebreaker", "package": str(package), "config": dataclasses.asdict(config),
        "clock_hz": 12e6, "baud": 1_000_000, "bitstream": "top.bin"}))
    return folder


def _error(capsys):
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_a_folder_without_board_json_is_refused(tmp_path, capsys):
    assert main(["--build", str(tmp_path), "--port", "/dev/null"]) == 2
    assert "is not a board build folder (no board.json)" in _error(capsys)


def test_a_port_that_cannot_open_and_a_silent_port(tmp_path, capsys):
    pytest.importorskip("serial")
    from test_export_package import random_graph
    from dqt_hw.package import write_package
    graph = random_graph(1, dynamic=True)
    package = tmp_path / "pkg"
    write_package(graph, package, metadata={"dataset": "digits"})
    folder = _build_folder(tmp_path, package)
    assert main(["--build", str(folder), "--port", "/dev/does-not-exist", "--images", "2",
                 "--no-progress"]) == 2
    assert "cannot open /dev/does-not-exist" in _error(capsys)
    # A pseudo-terminal opens like a serial port and never answers: a timeout, not a hang.
    import os
    controller, device = os.openpty()
    try:
        assert main(["--build", str(folder), "--port", os.ttyname(device), "--images", "2",
                     "--timeout", "0.2", "--no-progress"]) == 2
    finally:
        os.close(controller)
        os.close(device)
    assert "no answer from the board within 0.2 s" in _error(capsys)


def test_program_without_the_programmer_names_the_package(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(OSError, match=r"iceprog not found: install it \(Debian: apt-get "
                                      r"install fpga-icestorm\)"):
        program_board(BOARDS["icebreaker"], tmp_path / "top.bin")
    with pytest.raises(OSError, match="openFPGALoader not found.*openfpgaloader"):
        program_board(BOARDS["ulx3s-85f"], tmp_path / "top.bit")


@pytest.mark.parametrize("args, message", [
    (["--cascade", "5,3"], "`--cascade` needs 2 <= LOW < HIGH <= 8, not 5,3"),
    (["--margin", "4"], "`--share` and `--margin` need `--cascade LOW,HIGH`"),
    (["--cascade", "2,4", "--static"], "the package has no dynamic-precision layers; a cascade "
                                       "needs a model trained at several widths"),
])
def test_cascade_arguments_are_checked_before_the_port_opens(tmp_path, capsys, args, message):
    from test_export_package import random_graph
    from dqt_hw.package import write_package
    static = "--static" in args
    package = tmp_path / "pkg"
    write_package(random_graph(1, dynamic=not static), package, metadata={"dataset": "digits"})
    folder = _build_folder(tmp_path, package)
    argv = ["--build", str(folder), "--port", "/dev/does-not-exist", "--images", "2",
            "--no-progress"] + [arg for arg in args if arg != "--static"]
    assert main(argv) == 2
    assert message in _error(capsys)
