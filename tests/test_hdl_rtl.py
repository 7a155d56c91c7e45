# amaranth: UnusedElaboratable=no
"""The committed Verilog under rtl/ is exactly what `python -m dqt_hw.hdl` generates."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dqt_hw.hdl.rtl import REFERENCE_DESIGNS, compare_rtl, readme, write_rtl

RTL = Path(__file__).resolve().parent.parent / "rtl"


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    """Every reference design regenerated once (as `python -m dqt_hw.hdl --check` does)."""
    folder = tmp_path_factory.mktemp("fresh_rtl")
    write_rtl(folder)
    return folder


def test_rtl_is_fresh(fresh):
    assert compare_rtl(RTL, fresh) == [], "rtl/ is stale: run `python -m dqt_hw.hdl`"


def test_generation_is_deterministic(fresh, tmp_path):
    write_rtl(tmp_path, ["nest_unit_signed", "pe_scalable"])
    for name in ("nest_unit_signed.v", "pe_scalable.v"):
        assert (tmp_path / name).read_text() == (fresh / name).read_text()


def test_compare_reports_every_kind_of_difference(fresh, tmp_path):
    copy = tmp_path / "rtl"
    shutil.copytree(RTL, copy)
    edited = copy / "nest_unit_signed.v"
    edited.write_text(edited.read_text().replace("nested", "nestde", 1))
    (copy / "pe_fixed.v").unlink()
    (copy / "old_block.v").write_text("module old_block; endmodule\n")
    problems = "\n".join(compare_rtl(copy, fresh))
    assert "nest_unit_signed.v differs from the generator" in problems
    assert "nestde" in problems                        # the diff is shown
    assert "pe_fixed.v is missing" in problems
    assert "old_block.v is not produced by the generator" in problems


def test_cli(tmp_path):
    done = subprocess.run([sys.executable, "-m", "dqt_hw.hdl", "--out", str(tmp_path / "out"),
                           "--design", "nest_unit_unsigned"],
                          capture_output=True, text=True, check=True)
    assert "wrote" in done.stdout and (tmp_path / "out" / "nest_unit_unsigned.v").exists()
    missing = subprocess.run([sys.executable, "-m", "dqt_hw.hdl", "--check", "--out",
                              str(tmp_path / "nowhere")], capture_output=True, text=True)
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'nowhere'} is not a folder"]
    blocked = tmp_path / "a_file"
    blocked.write_text("not a folder\n")
    failed = subprocess.run([sys.executable, "-m", "dqt_hw.hdl", "--out", str(blocked / "rtl"),
                             "--design", "nest_unit_unsigned"], capture_output=True, text=True)
    assert failed.returncode == 1
    assert len(failed.stderr.strip().splitlines()) == 1
    assert failed.stderr.startswith(f"error: cannot write {blocked / 'rtl'}")


def test_readme_lists_every_design_and_port():
    text = readme()
    for name in REFERENCE_DESIGNS:
        assert f"## {name}.v" in text
    assert "| `operands__payload` | in | 513 |" in text
    assert "`last`: bits [512, 513)" in text
