"""Every `python -m` entry point answers --help, and mistyped paths, without importing torch.

Importing torch takes seconds (about 14 s from a cold disk cache), so this pins the cause of
a slow --help rather than a time, which would depend on the machine's load.
"""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

ENTRY_POINTS = ("train.fit", "train.bench", "train.cascade", "dqt_hw.export", "dqt_hw.package",
                "dqt_hw.eval", "dqt_hw.vectors", "dqt_hw.build", "dqt_hw.build.cells",
                "dqt_hw.energy", "dqt_hw.demo", "dqt_hw.hdl", "dqt_hw.hdl.cycles", "dqt_hw.golden",
                "dqt_hw.bench", "sim/regression.py")

# Runs the module as `python -m` does, then says which heavy modules were imported.
_PROBE = """
import runpy, sys
sys.argv = [sys.argv[1]] + sys.argv[2:]
try:
    if sys.argv[0].endswith(".py"):
        sys.path.insert(0, sys.argv[0].rsplit("/", 1)[0])
        runpy.run_path(sys.argv[0], run_name="__main__")
    else:
        runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
except SystemExit as exit:
    code = exit.code
else:
    code = 0
print("\\nexit", code, "torch" in sys.modules)
"""


def _probe(module, *args):
    done = subprocess.run([sys.executable, "-c", _PROBE, module, *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    exit_line = done.stdout.strip().splitlines()[-1].split()
    return int(exit_line[1]) if exit_line[1] != "None" else 0, exit_line[2] == "True", done


@pytest.mark.parametrize("module", ENTRY_POINTS)
def test_help_does_not_import_torch(module):
    code, torch_loaded, done = _probe(module, "--help")
    assert code == 0, done.stderr
    assert "usage: " in done.stdout
    assert not torch_loaded, f"`python -m {module} --help` imports torch"


@pytest.mark.parametrize("module, args, message", [
    ("dqt_hw.export", ["missing.pt", "--out", "pkg"], "missing.pt: no such checkpoint file"),
    ("dqt_hw.export", ["{notes}/todo.txt", "--out", "pkg"],
     "todo.txt is not a PyTorch checkpoint: it is an empty file"),
    ("dqt_hw.eval", ["{pkg}", "--dataset", "digits", "--compare", "missing.pt"],
     "missing.pt: no such checkpoint file"),
    ("train.fit", ["--out", "{notes}"], "already holds files that are not a training run"),
])
def test_bad_paths_are_reported_before_torch_loads(tmp_path, module, args, message):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("")
    pkg = tmp_path / "pkg"
    _write_tiny_package(pkg)
    args = [arg.format(pkg=pkg, notes=notes) for arg in args]
    code, torch_loaded, done = _probe(module, *args)
    assert code == 2 and message in done.stderr, done.stderr
    assert not torch_loaded


def _write_tiny_package(path):
    import numpy as np

    from dqt_hw.package import write_package
    graph = {"format": "dqt-hw-graph", "version": 1, "master_bits": 8,
             "inputs": {"image": {"shape": [1, 8, 8]}}, "outputs": ["logits"],
             "ops": [{"op": "flatten", "name": "flat", "input": "image", "output": "x"},
                     {"op": "linear", "name": "fc", "input": "x", "output": "logits",
                      "weight": np.ones((10, 64), np.int64), "bias": np.zeros(10, np.int64),
                      "multiplier": np.ones(10, np.int64), "shift": np.zeros(10, np.int64),
                      "bits": 8, "lo": -2 ** 31, "hi": 2 ** 31 - 1}]}
    write_package(graph, path)
