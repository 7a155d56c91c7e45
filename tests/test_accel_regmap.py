"""The register map: generated docs table, C header and JSON are current; the map is sound."""

import subprocess
import sys

from dqt_hw.accel.config import AcceleratorConfig
from dqt_hw.accel.regmap import GENERATED_FILES, main, register_map


def test_generated_files_are_current():
    assert main(["--check"]) == 0, "regenerate with `python -m dqt_hw.accel.regmap`"


def test_check_fails_on_a_stale_file(tmp_path, capsys):
    for path in GENERATED_FILES:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
    assert main(["--root", str(tmp_path)]) == 0
    header = tmp_path / "firmware/include/dqt_regs.h"
    header.write_text(header.read_text().replace("0x00018u", "0x00019u"))
    assert main(["--check", "--root", str(tmp_path)]) == 1
    assert "firmware/include/dqt_regs.h" in capsys.readouterr().err


def test_registers_and_windows_do_not_overlap():
    for config in (AcceleratorConfig(), AcceleratorConfig(data_words=1 << 15, slots=64,
                                                          max_ops=256, wide_words=1024,
                                                          table_words=1024,
                                                          program_words=1 << 14)):
        regmap = register_map(config)
        spans = [(r.offset, r.offset + 4 * r.count, r.name) for r in regmap.registers]
        spans += [(w.offset, w.offset + 4 * w.words, w.name) for w in regmap.windows]
        spans.sort()
        for (s1, e1, n1), (s2, e2, n2) in zip(spans, spans[1:]):
            assert e1 <= s2, (n1, n2)
        assert spans[-1][1] <= 1 << regmap.address_bits


def test_c_header_compiles(tmp_path):
    source = tmp_path / "t.c"
    source.write_text('#include "dqt_regs.h"\nint main(void) { return DQT_REG_STATUS == 0x18u '
                      '&& DQT_STATUS_ERROR_CODE_MASK == 0xff00u ? 0 : 1; }\n')
    from pathlib import Path
    include = Path(__file__).resolve().parents[1] / "firmware" / "include"
    compiler = subprocess.run(["cc", "-std=c99", "-Wall", "-Werror", "-I", str(include),
                               str(source), "-o", str(tmp_path / "t")], capture_output=True)
    assert compiler.returncode == 0, compiler.stderr.decode()
    assert subprocess.run([str(tmp_path / "t")]).returncode == 0
