"""Export of real checkpoints: command line end to end on a freshly trained tiny digits model,
bit-exact agreement with the PyTorch integer emulation, and refusal of bad checkpoints."""

import json
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")   # the [train] extra; installed everywhere CI runs

from dqt_hw.eval import evaluate, main as eval_main
from dqt_hw.export import export_checkpoint, main as export_main
from dqt_hw.golden import run_graph
from dqt_hw.package import load_package, run_cli
from train.checkpoint import checkpoint_config, save_checkpoint
from train.data import load_dataset, to_master_codes
from train.model import build_model

DIGITS = dict(image_size=8, width=4, stem_stride=1)


def _cli(module, *args):
    return subprocess.run([sys.executable, "-m", module, *map(str, args)],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="session")
def trained_digits(tmp_path_factory):
    """A dqt model trained for 4 batches on digits with `python -m train.fit` (about 10 s)."""
    out = tmp_path_factory.mktemp("fit") / "digits-dqt"
    result = _cli("train.fit", "--dataset", "digits", "--mode", "dqt", "--epochs", 1,
                  "--train-subset", 256, "--batch-size", 64, "--width", 4, "--no-progress",
                  "--out", out)
    assert result.returncode == 0, result.stderr
    return out / "checkpoint.pt"


def test_export_eval_compare_from_the_command_line(trained_digits, tmp_path):
    package = tmp_path / "pkg"
    result = _cli("dqt_hw.export", trained_digits, "--out", package)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"wrote {package}: dynamic model")
    report_file = tmp_path / "report.json"
    result = _cli("dqt_hw.eval", package, "--dataset", "digits", "--compare", trained_digits,
                  "--json", report_file)
    assert result.returncode == 0, result.stderr
    assert "identical logits: 100.00 %" in result.stdout
    report = json.loads(report_file.read_text())
    compare = report["compare"]
    assert (compare["logits_identical"], compare["predictions_identical"],
            compare["bits_identical"]) == (1.0, 1.0, 1.0)
    assert compare["emulation_top1"] == report["top1"]
    assert compare["exported_from_this_checkpoint"] is True
    # The training run's own integer accuracy (train.fit metrics) is the package's.
    metrics = json.loads((trained_digits.parent / "metrics.json").read_text())
    assert metrics["integer_accuracy"] == report["top1"]
    assert report["images"] == 360
    _, manifest = load_package(package)
    assert manifest["metadata"]["dataset"] == "digits"
    assert manifest["metadata"]["training_complete"] is True
    assert manifest["logits"] == {"tensor": "logits", "frac_bits": 16,
                                  "classes": [str(d) for d in range(10)]}
    # The manifest alone rebuilds the test set: rows of load_digits(), pixels by its rule.
    from sklearn.datasets import load_digits
    digits, card = load_digits(), manifest["dataset"]
    assert card["name"] == "digits" and card["images"] == len(card["rows"]) == 360
    images, labels = load_dataset("digits", "test")
    pixels = (digits.images.astype(np.int64) * 255 + 8) // 16       # card["pixels"]
    assert np.array_equal(pixels[card["rows"]], images[:, 0])
    assert np.array_equal(digits.target[card["rows"]], labels)
    config = torch.load(trained_digits, weights_only=True)["config"]
    assert manifest["controlled_layers"] == config["layer_names"]
    result = _cli("dqt_hw.vectors", package, "--images", 4, "--dataset", "digits",
                  "--out", tmp_path / "vectors.npz")
    assert result.returncode == 0, result.stderr


def _warmed_model(mode, seed, **extra):
    """A model with random weights whose batch-norm statistics, PACT clips and EMA ranges come
    from a few train-mode passes over digits (no optimizer step): realistic constants, fast."""
    torch.manual_seed(seed)
    model = build_model(dict(DIGITS, mode=mode, **extra))
    images, _ = load_dataset("digits", "train")
    model.train()
    with torch.no_grad():
        if model.dynamic:
            # A random controller, so the bit choices really vary from image to image.
            model.ctrl_fc2.weight.normal_(0, 0.5)
        for start in range(0, 320, 64):
            model(to_master_codes(torch.from_numpy(images[start:start + 64]), 8))
    model.eval()
    return model


@pytest.mark.parametrize("mode, extra", [
    ("dqt", {}),
    ("dqt", {"candidates": (3, 5, 6, 8)}),
    ("static", {"static_bits": (2, 3, 4, 5, 6, 8, 2, 4)}),
])
def test_package_equals_integer_emulation_on_digits(tmp_path, mode, extra):
    model = _warmed_model(mode, 1, **extra)
    checkpoint = tmp_path / "model.pt"
    save_checkpoint(checkpoint, model, checkpoint_config(model, "digits"))
    manifest = export_checkpoint(checkpoint, tmp_path / "pkg")
    report = evaluate(tmp_path / "pkg", "digits", compare=checkpoint, progress=False)
    compare = report["compare"]
    assert compare["logits_identical"] == 1.0 and compare["predictions_identical"] == 1.0
    if mode == "dqt":
        assert compare["bits_identical"] == 1.0
        # The controller really switches: some layers see several widths across images.
        switching = [name for name in model.layer_names if len(report["layer_bits"][name]) > 1]
        assert len(switching) >= 2, report["layer_bits"]
        assert manifest["candidates"] == sorted(model.config.candidates)
        tables = manifest["controller"]["tables"]
        assert [t["layer"] for t in tables] == model.layer_names
    else:
        assert compare["bits_identical"] is None
        assert {name: list(h) for name, h in report["layer_bits"].items()
                if name in model.layer_names} == {
            name: [str(b)] for name, b in zip(model.layer_names, extra["static_bits"])}
    # The package and the in-memory model agree directly too.
    graph, _ = load_package(tmp_path / "pkg")
    images, _ = load_dataset("digits", "test")
    codes = to_master_codes(images[:50], 8)
    np.testing.assert_array_equal(run_graph(graph, codes)["logits"],
                                  model.integer_forward(torch.from_numpy(codes))["logits"])


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad")
    model = _warmed_model("dqt", 2)
    good = folder / "good.pt"
    save_checkpoint(good, model, checkpoint_config(model, "digits"))
    data = good.read_bytes()
    (folder / "truncated.pt").write_bytes(data[:len(data) // 2])
    (folder / "garbage.pt").write_bytes(b"not a checkpoint at all\n" * 10)
    torch.save(model.state_dict(), folder / "plain.pt")
    other = build_model(dict(DIGITS, mode="dqt", width=6))
    save_checkpoint(folder / "mismatch.pt", model,
                    dict(checkpoint_config(other, "digits")))
    fp32 = build_model(dict(DIGITS, mode="fp32"))
    save_checkpoint(folder / "fp32.pt", fp32, checkpoint_config(fp32, "digits"))
    return folder


@pytest.mark.parametrize("name, message", [
    ("missing.pt", "missing.pt: no such checkpoint file"),
    ("truncated.pt", "truncated.pt is truncated or corrupt"),
    ("garbage.pt", "garbage.pt is not a PyTorch checkpoint: it is a text file"),
    ("plain.pt", "plain.pt is a plain state dict, not a dqt-hw checkpoint"),
    ("mismatch.pt", "mismatch.pt: the state dict does not match the config's architecture"),
    ("fp32.pt", "mode 'fp32' has no nested integer form"),
])
def test_bad_checkpoint_is_one_line_and_writes_nothing(checkpoints, tmp_path, capsys, name,
                                                       message):
    out = tmp_path / "pkg"
    assert run_cli(export_main, [str(checkpoints / name), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and error.count("\n") == 1, error
    assert message in error
    assert sorted(p.name for p in tmp_path.iterdir()) == []      # no DIR, no temp dirs


def test_failed_export_keeps_the_old_package(checkpoints, tmp_path, capsys):
    out = tmp_path / "pkg"
    assert run_cli(export_main, [str(checkpoints / "good.pt"), "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert run_cli(export_main, [str(checkpoints / "truncated.pt"), "--out", str(out)]) == 2
    after = {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert before == after
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pkg"]


def test_eval_refuses_unknown_package_version(checkpoints, tmp_path, capsys):
    out = tmp_path / "pkg"
    assert run_cli(export_main, [str(checkpoints / "good.pt"), "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["version"] = 2
    (out / "manifest.json").write_text(json.dumps(manifest))
    capsys.readouterr()
    assert run_cli(eval_main, [str(out), "--dataset", "digits"]) == 2
    assert capsys.readouterr().err == (
        f"error: {out}: unsupported package format version 2 (this dqt_hw reads version 1); "
        f"re-export it with `python -m dqt_hw.export CHECKPOINT --out {out}`\n")
