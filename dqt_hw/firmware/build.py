"""Build the SoC firmware (firmware/Makefile) for a model folder of `python -m dqt_hw.firmware`,
and measure its size. Needs Debian's gcc-riscv64-unknown-elf and picolibc (`make install`)."""

import subprocess
import sys
from pathlib import Path

__all__ = ["FIRMWARE_DIR", "build_firmware", "firmware_size"]

#: The firmware sources of this checkout.
FIRMWARE_DIR = Path(__file__).resolve().parents[2] / "firmware"


def build_firmware(model_dir, build_dir, verbose=False):
    """`make -C firmware MODEL=model_dir BUILD=build_dir`; returns the ROM image (bytes).
    Raises RuntimeError (one line) when the build fails; its output goes to stderr."""
    command = ["make", "-C", str(FIRMWARE_DIR), f"MODEL={Path(model_dir).resolve()}",
               f"BUILD={Path(build_dir).resolve()}"]
    try:
        result = subprocess.run(command, capture_output=True, text=True)
    except FileNotFoundError:
        raise RuntimeError("`make` is not installed") from None
    if verbose or result.returncode:
        sys.stderr.write(result.stdout + result.stderr)
    if result.returncode:
        raise RuntimeError(f"the firmware build failed ({' '.join(command)})")
    return (Path(build_dir) / "classify.bin").read_bytes()


def firmware_size(build_dir):
    """Bytes of the built firmware: {"text", "data", "bss", "rom" (text + data),
    "runtime_text" (libdqt.a)}."""
    def sizes(path):
        out = subprocess.run(["riscv64-unknown-elf-size", str(path)], capture_output=True,
                             text=True, check=True).stdout.splitlines()
        totals = [0, 0, 0]
        for line in out[1:]:
            for i, value in enumerate(line.split()[:3]):
                totals[i] += int(value)
        return totals
    text, data, bss = sizes(Path(build_dir) / "classify.elf")
    runtime = sizes(Path(build_dir) / "libdqt.a")
    return {"text": text, "data": data, "bss": bss, "rom": text + data,
            "runtime_text": runtime[0]}
