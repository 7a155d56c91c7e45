"""The simulated board (cocotb + Verilator): the exact top level of the iCEBreaker bitstream,
PLL and pin buffers replaced by models, driven through its UART pins by the host's
`BridgeTransport` and `AcceleratorDriver`; every image matches the golden model and the status
LEDs follow the accelerator."""

import sys
from pathlib import Path

import pytest

SIM_DIR = Path(__file__).resolve().parents[1] / "sim"
sys.path.insert(0, str(SIM_DIR))

pytest.importorskip("cocotb")
pytest.importorskip("torch")

from board_package import small_digits_package  # noqa: E402


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    return small_digits_package(tmp_path_factory)[0]


def test_simulated_icebreaker_runs_images_bit_exact_over_the_uart(package, tmp_path):
    from board import BoardJob, run_board
    summary = run_board(BoardJob(package=str(package), board="icebreaker", images=3,
                                 bits=(8,), cascade=(3, 5), build_root=str(tmp_path)))
    assert summary["images"] == 3 and summary["mismatches"] == 0
    assert summary["leds_ok"]
    # The precision cascade, as `python -m dqt_hw.run --cascade` runs it: the median margin
    # sends some images to the second pass.
    cascade = summary["cascade"]
    assert cascade["mismatches"] == 0 and 1 <= cascade["run_twice"] <= 2
    # The dynamic run and the run pinned to 8 bits both report their cycles.
    assert set(summary["cycles"]) == {"dynamic", "8"} and summary["cycles"]["8"] > 0
    link = summary["link"]
    assert link["accelerator_seconds_per_image"] < link["seconds_per_image"]


def test_runs_share_one_build_and_keep_their_files_apart(package, tmp_path):
    """Two runs of one design reuse its simulator build; each run's job, arrays and report
    live in a folder of their own, removed when the run ends."""
    from board import BoardJob, run_board
    first = run_board(BoardJob(package=str(package), board="icebreaker", images=1,
                               build_root=str(tmp_path)))
    second = run_board(BoardJob(package=str(package), board="icebreaker", images=2, first=1,
                                build_root=str(tmp_path)))
    assert (first["images"], second["images"]) == (1, 2)
    assert first["mismatches"] == second["mismatches"] == 0
    builds = [path for path in tmp_path.iterdir() if path.is_dir()]
    assert len(builds) == 1 and (builds[0] / "top.v").is_file()
    assert not list(builds[0].glob("run-*")) and not list(builds[0].glob("job.*"))
