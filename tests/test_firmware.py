"""The model-to-C step and the runtime's C build (the runtime runs against the simulated RTL
in tests/test_sim_soc.py)."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from dqt_hw.accel.compiler import compile_graph
from dqt_hw.accel.config import AcceleratorConfig
from dqt_hw.firmware import MODEL_FORMAT_VERSION, check_symbol, images_c_source
from dqt_hw.firmware.__main__ import main as firmware_main
from dqt_hw.package import write_package

from test_accel_compiler import SMALL
from test_export_package import random_graph

FIRMWARE = Path(__file__).resolve().parents[1] / "firmware"
SMALL_ARGS = [f"--{k.replace('_', '-')}={v}" for k, v in SMALL.items()]
STRICT = ["-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror"]


def _c_array(text, name):
    body = re.search(rf"{name}\[\d+\] = \{{(.*?)\}};", text, re.S)[1]
    return [int(v.strip().rstrip("u"), 0) for v in body.split(",")]


def test_cli_writes_the_compiled_model_as_c(tmp_path):
    graph = random_graph(0, dynamic=True)
    package = tmp_path / "pkg"
    write_package(graph, package)
    out = tmp_path / "model"
    assert firmware_main([str(package), "--out", str(out), "--symbol", "digits_model",
                          *SMALL_ARGS]) == 0
    model = compile_graph(graph, AcceleratorConfig(**SMALL))
    text = (out / "model.c").read_text()
    assert _c_array(text, "digits_model_program") == model.program
    data = _c_array(text, "digits_model_data")
    assert data[0::2] == [int(w) & 0xFFFFFFFF for w in model.data]
    assert data[1::2] == [int(w) >> 32 for w in model.data]
    assert data[1::2][-len(model.constants):] == [c >> 32 for c in model.constants]
    assert _c_array(text, "digits_model_table") == model.table
    assert _c_array(text, "digits_model_slots") == [s["slot"] for s in model.slots]
    (image,) = model.inputs
    for field, value in (("format_version", MODEL_FORMAT_VERSION), ("cols", SMALL["cols"]),
                         ("data_words", SMALL["data_words"]), ("input_base", image["base"]),
                         ("input_cp", image["channels_stored"]),
                         ("op_count", len(model.ops))):
        assert f".{field} = {value}," in text
    assert "extern const dqt_model digits_model;" in (out / "model.h").read_text()


def test_model_format_version_matches_the_header():
    header = (FIRMWARE / "include" / "dqt.h").read_text()
    assert f"#define DQT_MODEL_FORMAT_VERSION {MODEL_FORMAT_VERSION}u" in header


def test_cli_refuses_cleanly(tmp_path, capsys):
    package = tmp_path / "pkg"
    write_package(random_graph(0, dynamic=True), package)
    out = tmp_path / "out"
    assert firmware_main([str(package), "--out", str(out), "--symbol", "2fast",
                          *SMALL_ARGS]) == 2
    assert capsys.readouterr().err == "error: `symbol` must be a C identifier, not '2fast'\n"
    assert firmware_main([str(package), "--out", str(out), "--images", "2", *SMALL_ARGS]) == 2
    assert "does not name its dataset" in capsys.readouterr().err
    assert firmware_main([str(package), "--out", str(out), "--max-terms", "16"]) == 2
    assert capsys.readouterr().err.startswith("error: op ")
    assert not out.exists() and not list(tmp_path.glob(".out*"))
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine")
    assert firmware_main([str(package), "--out", str(occupied), *SMALL_ARGS]) == 2
    assert "is not a firmware model folder" in capsys.readouterr().err
    assert (occupied / "notes.txt").read_text() == "mine"


def test_symbols_and_images_are_checked():
    with pytest.raises(ValueError, match=r"`symbol` must be a C identifier, not 'a-b'"):
        check_symbol("a-b")
    with pytest.raises(ValueError, match=r"`codes` must be \(N, C, H, W\) 8-bit master codes"):
        images_c_source([[[1, 2]]], [0])


@pytest.mark.skipif(shutil.which("cc") is None, reason="no host C compiler")
def test_runtime_and_model_compile_as_strict_c99(tmp_path):
    package = tmp_path / "pkg"
    write_package(random_graph(1, dynamic=True), package)
    out = tmp_path / "model"
    assert firmware_main([str(package), "--out", str(out), *SMALL_ARGS]) == 0
    for source in (FIRMWARE / "src" / "dqt.c", out / "model.c"):
        subprocess.run(["cc", *STRICT, "-I", str(FIRMWARE / "include"), "-I", str(out), "-c",
                        str(source), "-o", str(tmp_path / (source.stem + ".o"))], check=True)
    # A model with more logits than a dqt_result holds is refused at compile time.
    done = subprocess.run(["cc", *STRICT, "-DDQT_MAX_CLASSES=1", "-I",
                           str(FIRMWARE / "include"), "-I", str(out), "-c",
                           str(out / "model.c"), "-o", str(tmp_path / "small.o")],
                          capture_output=True, text=True)
    assert done.returncode != 0 and "build with -DDQT_MAX_CLASSES=" in done.stderr


@pytest.mark.skipif(shutil.which("riscv64-unknown-elf-gcc") is None,
                    reason="gcc-riscv64-unknown-elf is not installed (make install)")
def test_runtime_cross_compiles_for_rv32i(tmp_path):
    subprocess.run(["make", "-s", "-C", str(FIRMWARE), "lib", f"BUILD={tmp_path}"], check=True,
                   capture_output=True)
    library = tmp_path / "libdqt.a"
    symbols = subprocess.run(["riscv64-unknown-elf-nm", str(library)], check=True,
                             capture_output=True, text=True).stdout
    for name in ("dqt_init", "dqt_load_model", "dqt_infer", "dqt_strerror"):
        assert re.search(rf" T {name}$", symbols, re.M), name
    # No dynamic allocation: the runtime references no allocator.
    assert not re.search(r" U (malloc|calloc|realloc|free)$", symbols, re.M)


_PACKING_HARNESS = r"""
#include <stdio.h>
#include <stdlib.h>
#include "dqt.h"

/* A register file in host memory: STATUS reads DONE, so dqt_infer writes the image, starts
 * and returns at once; the IMAGE window keeps what the runtime wrote, from word 2 B on for
 * the input at data word B. */
static uint32_t regs[(1u << 20) / 4];
static uint8_t codes[4096 + 4];

int main(int argc, char **argv) {
    unsigned c = atoi(argv[1]), h = atoi(argv[2]), w = atoi(argv[3]), cp = atoi(argv[4]);
    unsigned shift = atoi(argv[5]), n = c * h * w, words = (h * w * cp + 3) / 4;
    for (unsigned i = 0; i < n; i++)
        codes[shift + i] = (uint8_t)atoi(argv[6 + i]);
    const unsigned base = 78, first = DQT_WIN_IMAGE / 4 + 2 * base;
    for (unsigned i = 0; i < words + 2 * base; i++)
        regs[DQT_WIN_IMAGE / 4 + i] = 0xDEADBEEFu;
    regs[DQT_REG_STATUS / 4] = DQT_STATUS_DONE_MASK;
    dqt_model model = {0};
    model.format_version = DQT_MODEL_FORMAT_VERSION;
    model.input_base = base;
    model.input_channels = c, model.input_height = h, model.input_width = w;
    model.input_cp = cp;
    model.classes = 1;
    dqt_device dev = {0};
    dev.base = (uintptr_t)regs;
    dev.model = &model;
    dev.timeout_cycles = 10;
    dqt_result result;
    int status = dqt_infer(&dev, codes + shift, &result);
    unsigned before = 0;                 /* words written before the input's first one */
    for (unsigned i = 0; i < 2 * base; i++)
        before += regs[DQT_WIN_IMAGE / 4 + i] != 0xDEADBEEFu;
    printf("%d %u", status, before);
    for (unsigned i = 0; i < words; i++)
        printf(" %u", (unsigned)regs[first + i]);
    printf("\n");
    return 0;
}
"""


@pytest.fixture(scope="module")
def packing_harness(tmp_path_factory):
    if shutil.which("cc") is None:
        pytest.skip("no host C compiler")
    root = tmp_path_factory.mktemp("packing")
    (root / "harness.c").write_text(_PACKING_HARNESS)
    subprocess.run(["cc", "-std=c99", "-O1", "-Wall", "-Werror", "-I", str(FIRMWARE / "include"),
                    str(root / "harness.c"), str(FIRMWARE / "src" / "dqt.c"), "-o",
                    str(root / "harness")], check=True)
    return root / "harness"


@pytest.mark.parametrize("channels, stored, shift", [
    (1, 1, 0), (1, 1, 1), (1, 4, 0), (1, 16, 0), (2, 2, 0), (3, 4, 0), (3, 16, 2), (20, 32, 0)])
def test_image_words_match_the_driver_packing(packing_harness, channels, stored, shift):
    """The runtime's IMAGE writes (all three code paths, aligned or not) against the Python
    driver's packing: every bus word that holds a real channel is written with the driver's
    value; words of padding lanes only are left alone (the layout leaves them undefined)."""
    import numpy as np
    from dqt_hw.accel.driver import image_words
    from dqt_hw.accel.layout import TensorPlacement
    height, width = 3, 5
    rng = np.random.default_rng(channels * 100 + stored)
    codes = rng.integers(0, 256, size=(channels, height, width))
    out = subprocess.run([str(packing_harness), str(channels), str(height), str(width),
                          str(stored), str(shift), *map(str, codes.reshape(-1))],
                         check=True, capture_output=True, text=True).stdout.split()
    status, before, words = int(out[0]), int(out[1]), [int(v) for v in out[2:]]
    assert (status, before) == (0, 0)

    class Model:                                    # what image_words reads of a model
        inputs = [{"name": "image"}]
        tensors = {"image": TensorPlacement("image", (channels, height, width),
                                            channels_stored=stored, signed=False)}
    expected = image_words(Model, codes)
    real = np.zeros(height * width * stored, dtype=bool)
    real.reshape(height * width, stored)[:, :channels] = True
    for index, (got, want) in enumerate(zip(words, expected)):
        if real[4 * index:4 * index + 4].any():
            assert got == want, index
        else:
            assert got == 0xDEADBEEF, index
