"""Whole-network co-simulation on the generated Verilog (cocotb + Verilator): a digits DQT model
with a controller that varies per image runs image by image through the accelerator, loaded
over the bus, and matches the golden model and the PyTorch integer emulation exactly."""

import sys
from pathlib import Path

import pytest

SIM_DIR = Path(__file__).resolve().parents[1] / "sim"
sys.path.insert(0, str(SIM_DIR))

pytest.importorskip("cocotb")
torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def varying_package(tmp_path_factory):
    """Train a small digits DQT model, give it a random controller, export it."""
    from dqt_hw.export import main as export_main
    from train.fit import main as fit_main
    from train.random_controller import main as random_main
    root = tmp_path_factory.mktemp("net")
    run = root / "run"
    assert fit_main(["--threads", "1", "--no-progress", "--dataset", "digits", "--mode", "dqt",
                     "--epochs", "2", "--width", "8", "--out", str(run)]) == 0
    checkpoint = root / "randctrl.pt"
    assert random_main([str(run / "checkpoint.pt"), "--dataset", "digits",
                        "--out", str(checkpoint)]) == 0
    package = root / "pkg"
    assert export_main([str(checkpoint), "--out", str(package)]) == 0
    return package, checkpoint


def test_network_cosimulation_matches_golden_and_pytorch(varying_package, tmp_path):
    from net import NetJob, run_net
    package, checkpoint = varying_package
    summary = run_net(NetJob(package=str(package), checkpoint=str(checkpoint), images=20,
                             build_root=str(tmp_path)))
    assert summary["images"] == 20
    assert summary["references"] == ["golden", "torch"]
    assert summary["mismatches"] == 0
    # The controller really switches: most controlled layers take several widths, and
    # consecutive images run at different precisions.
    varied = [layer for layer, hist in summary["bits_histogram"].items() if len(hist) > 1]
    assert len(varied) > len(summary["bits_histogram"]) // 2, summary["bits_histogram"]
    assert summary["bits_switches"] >= 10
