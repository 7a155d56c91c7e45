"""dqt_hw.eval and dqt_hw.vectors on packages of random golden graphs (no training needed)."""

import json

import numpy as np
import pytest

from dqt_hw.eval import (agreement, bit_statistics, controlled_bits, logit_margin,
                         margin_threshold, run_cascade, run_package)
from dqt_hw.eval import main as eval_main
from dqt_hw.golden import run_graph
from dqt_hw.package import load_package, pin_bits, run_cli, write_package
from dqt_hw.vectors import load_vectors, make_vectors, write_vectors
from dqt_hw.vectors import main as vectors_main

from test_export_package import random_graph, random_images


@pytest.fixture(scope="module")
def dynamic_package(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "dynamic"
    write_package(random_graph(5), out)
    return out


_MAINS = {"dqt_hw.eval": eval_main, "dqt_hw.vectors": vectors_main}


class _Result:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def _cli(capsys):
    """Run `python -m MODULE ARGS` in-process (the same `run_cli` path as the real command;
    tests/test_export_checkpoint.py runs the commands as subprocesses)."""
    def run(module, *args):
        capsys.readouterr()
        code = run_cli(_MAINS[module], [str(a) for a in args])
        out = capsys.readouterr()
        return _Result(code, out.out, out.err)
    return run


def test_run_package_equals_one_golden_run(dynamic_package):
    graph, _ = load_package(dynamic_package)
    images = random_images(50)
    logits, chosen, rate = run_package(graph, images, batch_size=7, progress=False)
    whole = run_graph(graph, images)
    np.testing.assert_array_equal(logits, whole["logits"])
    np.testing.assert_array_equal(chosen["block1"], whole["bits"][:, 0])
    np.testing.assert_array_equal(chosen["block2"], whole["bits"][:, 1])
    assert set(chosen["stem"]) == {8} and rate > 0


def test_bit_statistics_definitions(dynamic_package):
    _, manifest = load_package(dynamic_package)
    assert manifest["controlled_layers"] == ["block1", "block2"]
    macs = {op["name"]: op["hw"]["macs"] for op in manifest["ops"] if "weight" in op}
    chosen = {name: np.full(4, 8) for name in macs}
    chosen["block1"] = np.array([2, 2, 4, 8])
    chosen["block2"] = np.array([8, 4, 4, 2])
    stats = bit_statistics(manifest, chosen)
    backbone = ["stem", "block1", "block2", "classifier"]
    assert stats["layer_bits"]["block1"] == {"2": 2, "4": 1, "8": 1}
    assert set(stats["layer_bits"]) == set(backbone)           # controller layers excluded
    controller = 64 * (macs["ctrl_fc1"] + macs["ctrl_fc2"])
    per_image = [
        macs["stem"] * 64 + macs["block1"] * b1 ** 2 + macs["block2"] * b2 ** 2
        + macs["classifier"] * 64 + controller for b1, b2 in zip([2, 2, 4, 8], [8, 4, 4, 2])]
    assert stats["bitops"] == pytest.approx(np.mean(per_image))
    w8a8 = 64 * sum(macs[n] for n in backbone)                   # no controller in W8A8
    assert stats["bitops_w8a8"] == w8a8
    assert stats["bitops_relative_w8a8"] == pytest.approx(np.mean(per_image) / w8a8)
    assert stats["controller_bitops"] == controller
    # Average bits over the controlled layers only; MAC-weighted by their MACs.
    assert stats["average_bits"] == pytest.approx(np.mean([2, 2, 4, 8, 8, 4, 4, 2]))
    weighted = [(macs["block1"] * b1 + macs["block2"] * b2) / (macs["block1"] + macs["block2"])
                for b1, b2 in zip([2, 2, 4, 8], [8, 4, 4, 2])]
    assert stats["average_bits_mac_weighted"] == pytest.approx(np.mean(weighted))


def test_agreement_counts_per_image():
    logits = np.array([[1, 2, 3], [3, 2, 1], [0, 5, 0], [1, 1, 1]])
    reference = logits.copy()
    reference[1, 2] = 2          # logits differ, prediction still 0
    reference[2] = [9, 5, 0]     # prediction differs
    bits = np.array([[2, 4], [4, 4], [8, 8], [2, 2]])
    ref_bits = bits.copy()
    ref_bits[3, 1] = 4
    result = agreement(logits, bits, reference, ref_bits)
    assert result == {"logits_identical": 0.5, "predictions_identical": 0.75,
                      "bits_identical": 0.75}
    assert agreement(logits, None, logits, None)["bits_identical"] is None
    with pytest.raises(ValueError, match=r"reference logits have shape \(4, 2\), the package "
                                         r"gives \(4, 3\)"):
        agreement(logits, None, logits[:, :2], None)
    with pytest.raises(ValueError, match=r"reference bit choices have shape \(4, 1\), the "
                                         r"package gives \(4, 2\)"):
        agreement(logits, bits, logits, ref_bits[:, :1])


def test_controlled_bits_follow_table_order(dynamic_package):
    _, manifest = load_package(dynamic_package)
    chosen = {"block1": np.array([2, 4]), "block2": np.array([8, 2])}
    np.testing.assert_array_equal(controlled_bits(manifest, chosen), [[2, 8], [4, 2]])


def test_eval_cli_on_digits(dynamic_package, tmp_path, _cli):
    # A random 8x8 graph runs on the digits test set: the CLI path end to end, no training.
    report_file = tmp_path / "report.json"
    result = _cli("dqt_hw.eval", dynamic_package, "--dataset", "digits", "--batch-size", "100",
                  "--json", report_file)
    assert result.returncode == 0, result.stderr
    report = json.loads(report_file.read_text())
    assert report["images"] == 360
    assert "top-1:" in result.stdout and "BitOPs:" in result.stdout
    assert "golden" in result.stderr                          # the progress bar
    graph, _ = load_package(dynamic_package)
    from train.data import load_dataset, to_master_codes
    images, labels = load_dataset("digits", "test")
    logits = run_graph(graph, to_master_codes(images, 8))["logits"]
    assert report["top1"] == np.mean(logits.argmax(1) == labels)
    assert sum(report["layer_bits"]["block1"].values()) == 360


def test_cascade_reruns_the_images_below_the_margin(dynamic_package):
    graph, _ = load_package(dynamic_package)
    codes = random_images(40, seed=3)
    low = run_graph(pin_bits(graph, 2), codes)["logits"]
    high = run_graph(pin_bits(graph, 8), codes)["logits"]
    margins = logit_margin(low)
    np.testing.assert_array_equal(margins, np.sort(low, 1)[:, -1] - np.sort(low, 1)[:, -2])
    threshold = int(np.median(margins))
    logits, again = run_cascade(graph, codes, 2, 8, threshold, batch_size=7, progress=False)
    np.testing.assert_array_equal(again, margins < threshold)
    np.testing.assert_array_equal(logits, np.where(again[:, None], high, low))
    assert 0 < again.sum() < len(codes)
    # The threshold of a share: the k-th smallest margin, k = floor(share N).
    values = np.array([5, 1, 9, 3, 3])
    assert [margin_threshold(values, s) for s in (0, 0.2, 0.4, 0.5, 0.99, 1)] == \
        [1, 3, 3, 3, 9, 10]
    assert np.mean(values < margin_threshold(values, 0.4)) == 0.2     # ties stay at pass 1


def test_eval_cli_cascade(dynamic_package, tmp_path, _cli):
    report_file = tmp_path / "report.json"
    result = _cli("dqt_hw.eval", dynamic_package, "--dataset", "digits", "--no-progress",
                  "--cascade", "2,8", "--share", "0.5", "--json", report_file)
    assert result.returncode == 0, result.stderr
    cascade = json.loads(report_file.read_text())["cascade"]
    from train.data import load_dataset, to_master_codes
    images, labels = load_dataset("digits", "test")
    train_images, _ = load_dataset("digits", "train")
    graph, manifest = load_package(dynamic_package)
    train_low = run_graph(pin_bits(graph, 2), to_master_codes(train_images, 8))["logits"]
    threshold = margin_threshold(logit_margin(train_low), 0.5)
    logits, again = run_cascade(graph, to_master_codes(images, 8), 2, 8, threshold,
                                progress=False)
    assert cascade["margin_threshold"] == threshold and cascade["threshold_images"] == 1437
    assert cascade["run_twice"] == again.mean() and 0 < again.mean() < 1
    assert cascade["top1"] == np.mean(logits.argmax(1) == labels)

    def bitops(bits):
        return bit_statistics(manifest, {op["name"]: np.array([bits if isinstance(
            op["bits"], dict) else op["bits"]]) for op in graph["ops"]
            if op["op"] in ("conv2d", "linear")})
    expected = bitops(2)["bitops"] + again.mean() * bitops(8)["bitops"]
    assert cascade["bitops"] == pytest.approx(expected)
    assert f"cascade 2 -> 8 bits, margin threshold {threshold}" in result.stdout
    given = _cli("dqt_hw.eval", dynamic_package, "--dataset", "digits", "--no-progress",
                 "--cascade", "2,8", "--margin", str(threshold), "--json", report_file)
    assert given.returncode == 0 and "(given)" in given.stdout
    assert json.loads(report_file.read_text())["cascade"]["top1"] == cascade["top1"]


@pytest.mark.parametrize("args, message", [
    (["--dataset", "fashion-mnist"], r"the package expects images of shape \[1, 8, 8\] but "
                                     r"fashion-mnist gives \[1, 28, 28\]"),
    (["--dataset", "digits", "--cascade", "8,2"], "`--cascade` needs 2 <= LOW < HIGH <= 8, "
                                                  "not 8,2"),
    (["--dataset", "digits", "--cascade", "4"], "`--cascade` must be two bit-widths LOW,HIGH, "
                                                "not '4'"),
    (["--dataset", "digits", "--share", "0.3"], "`--share` and `--margin` need `--cascade "
                                                "LOW,HIGH`"),
    (["--dataset", "digits", "--cascade", "2,4", "--share", "1.5"],
     "`--share` must be between 0 and 1, not 1.5"),
    (["--dataset", "digits", "--cascade", "2,4", "--share", "0.1", "--margin", "3"],
     "give `--share` or `--margin`, not both"),
    (["--dataset", "digits", "--limit", "0"], "`--limit` must be a positive integer, not 0"),
    (["--dataset", "digits", "--batch-size", "0"],
     "`--batch-size` must be a positive integer, not 0"),
])
def test_eval_cli_errors(dynamic_package, args, message, _cli):
    result = _cli("dqt_hw.eval", dynamic_package, *args)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and message.replace("\\", "") in \
        result.stderr.replace("\\", "")
    assert "Traceback" not in result.stderr


def test_eval_cli_on_missing_package(tmp_path, _cli):
    result = _cli("dqt_hw.eval", tmp_path / "nothing", "--dataset", "digits")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (f"error: {tmp_path / 'nothing'}: is not a directory "
                                     f"(expected a package written by `python -m "
                                     f"dqt_hw.export`)")


def test_vectors_hold_every_layer(dynamic_package, tmp_path):
    images = random_images(6)
    meta, arrays = make_vectors(dynamic_package, images, source="test")
    write_vectors(tmp_path / "v.npz", meta, arrays)
    meta, arrays = load_vectors(tmp_path / "v.npz")
    assert meta["format"] == "dqt-hw-vectors" and meta["version"] == 1
    graph, _ = load_package(dynamic_package)
    env = run_graph(graph, images, keep_all=True)
    for op in meta["ops"]:
        for tensor in op["inputs"] + [op["output"]]:
            np.testing.assert_array_equal(arrays[f"tensor/{tensor}"], env[tensor])
    # Re-running one layer from its dumped input at its dumped bit-widths gives its output:
    # what an RTL regression does.
    from dqt_hw.golden import nested_conv2d
    block = next(op for op in graph["ops"] if op["name"] == "block2")
    for i in range(6):
        out = nested_conv2d(arrays["tensor/t_j1"][i:i + 1], block["weight"],
                            bias=block["bias"], multiplier=block["multiplier"],
                            shift=block["shift"], bits=int(arrays["bits/block2"][i]),
                            master_bits=8, lo=0, hi=255, stride=2, padding=1)
        np.testing.assert_array_equal(out, arrays["tensor/t_b2"][i:i + 1])
    np.testing.assert_array_equal(arrays["bits/block2"], arrays["tensor/bits"][:, 1])


def test_vectors_cli_and_version_check(dynamic_package, tmp_path, _cli):
    out = tmp_path / "vec.npz"
    result = _cli("dqt_hw.vectors", dynamic_package, "--images", 3, "--random", 7, "--out", out)
    assert result.returncode == 0, result.stderr
    meta, arrays = load_vectors(out)
    assert arrays["tensor/image"].shape == (3, 1, 8, 8) and meta["source"] == "random seed 7"
    result = _cli("dqt_hw.vectors", dynamic_package, "--images", 5, "--dataset", "digits",
                  "--out", out)
    assert result.returncode == 0, result.stderr
    meta, arrays = load_vectors(out)
    assert arrays["labels"].shape == (5,)
    meta["version"] = 0
    np.savez(out, meta=np.array(json.dumps(meta)), **arrays)
    with pytest.raises(ValueError, match=r"'dqt-hw-vectors' version 0 is not 'dqt-hw-vectors' "
                                         r"version 1; regenerate it with `python -m "
                                         r"dqt_hw.vectors PACKAGE"):
        load_vectors(out)
    result = _cli("dqt_hw.vectors", dynamic_package, "--images", 0, "--random", 1,
                  "--out", out)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: `--images` must be a positive integer, not 0"
