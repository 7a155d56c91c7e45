"""train.fit end to end on digits, its bad-input errors, and the benchmark report writer."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from dqt_hw.golden import run_graph
from train import bench, fit
from train.checkpoint import load_model
from train.data import load_dataset, to_master_codes
from train.integerize import to_graph

TINY = ["--dataset", "digits", "--epochs", "1", "--width", "4", "--batch-size", "256",
        "--no-progress"]


def test_cli_end_to_end_dqt(tmp_path):
    out = tmp_path / "dqt"
    done = subprocess.run([sys.executable, "-m", "train.fit", *TINY, "--mode", "dqt",
                           "--out", str(out)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "metrics.json",
                                                     "train.log"]
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("accuracy", "integer_accuracy", "average_bits", "bitops",
                "bitops_relative_w8a8", "layer_bits_histogram", "seconds_per_epoch",
                "fixed_bits_accuracy", "fixed_bits_accuracy_shared_bn", "oracle",
                "off_modal_share", "budget"):
        assert key in metrics, key
    # The controller was calibrated to the 4-bit budget on the training images.
    assert max(metrics["budget"]["train_costs_calibrated"].values()) <= 1
    assert metrics["complete"] and 2 <= metrics["average_bits"] <= 8
    assert sorted(metrics["fixed_bits_accuracy"]) == ["3", "4", "5"]
    assert sum(metrics["layer_bits_histogram"]["block0.conv1"].values()) == 360
    assert "test accuracy" in (out / "train.log").read_text()
    model, config = load_model(out / "checkpoint.pt")
    assert config["mode"] == "dqt" and config["candidates"] == [3, 4, 5]
    assert config["training"]["alpha"] == 1.0
    images, labels = load_dataset("digits", "test")
    codes = to_master_codes(images, config["master_bits"])
    golden = run_graph(to_graph(model), codes)
    emulated = model.integer_forward(torch.from_numpy(codes))
    assert np.array_equal(golden["logits"], emulated["logits"].numpy())
    assert np.array_equal(golden["bits"], emulated["bits"].numpy())
    assert (golden["logits"].argmax(1) == labels).mean() == pytest.approx(
        metrics["integer_accuracy"])


@pytest.mark.parametrize("mode, extra", [("static", ["--layer-bits", "8,4,2,4,4,8,2,3"]),
                                         ("lsq", []), ("dqnet", []), ("fp32", [])])
def test_cli_other_modes(tmp_path, capsys, mode, extra):
    assert fit.main([*TINY, "--mode", mode, *extra, "--out", str(tmp_path)]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["mode"] == mode and metrics["accuracy"] > 0.1
    model, config = load_model(tmp_path / "checkpoint.pt")
    if mode == "static":
        assert config["static_bits"] == [8, 4, 2, 4, 4, 8, 2, 3]
        assert metrics["integer_accuracy"] > 0.1
    if mode == "lsq":
        assert metrics["average_bits"] == 4
    if mode == "dqnet":
        assert config["candidates"] == [3, 4, 5]


@pytest.mark.parametrize("args, message", [
    (["--dataset", "cifar"], "unknown dataset 'cifar'; choose one of digits, fashion-mnist"),
    (["--mode", "int4"], "unknown mode 'int4'; choose one of fp32, static, lsq, dqnet, dqt"),
    (["--mode", "dqt", "--candidates", ""], "`candidates` must not be empty"),
    (["--mode", "dqt", "--candidates", "2,9"], "candidate bit-width 9 is outside [2, 8]"),
    (["--mode", "dqt", "--candidates", "1,4"], "candidate bit-width 1 is outside [2, 8]"),
    (["--mode", "dqt", "--aux-bits", "2"], "`aux-bits` 2 is not a candidate bit-width"),
    (["--mode", "static", "--bits", "9"], "`bits` 9 is outside [2, 8]"),
    (["--mode", "static", "--layer-bits", "4,4"],
     "`layer-bits` must give one bit-width per controlled layer (8: block0.conv1, "
     "block0.conv2, block1.conv1, block1.conv2, block1.shortcut, block2.conv1, block2.conv2, "
     "block2.shortcut), not 2"),
    (["--mode", "static", "--layer-bits", "4,4,4,4,4,4,4,1"],
     "static bit-width 1 is outside [2, 8]"),
    (["--lr", "0"], "`lr` must be positive, not 0.0"),
    (["--mode", "dqt", "--bits", "4"], "`bits`/`layer-bits` apply to modes static and lsq"),
    (["--epochs", "0"], "`epochs` must be a positive integer, not 0"),
    (["--mode", "dqt", "--target", "low"], "`target` must be a number of bits, not 'low'"),
    (["--mode", "dqt", "--target", "1.5", "--candidates", "2,4"],
     "`target` 1.5 is below the smallest candidate 2"),
    (["--mode", "dqt", "--warmup", "0.9"], "need 0 <= `warmup` <= `freeze` <= 1"),
    (["--mode", "dqt", "--warmup-bits", "2"], "`warmup-bits` 2 is not a candidate bit-width"),
    (["--mode", "dqt", "--cost", "flops"], "unknown cost 'flops'; choose one of bits, bitops"),
    (["--mode", "dqt", "--aux-loss", "kl"], "unknown aux-loss 'kl'; choose one of ce, distill"),
    (["--mode", "dqt", "--probes", "0"], "`probes` must be a positive integer, not 0"),
])
def test_bad_input_is_one_line(tmp_path, capsys, args, message):
    assert fit.main(["--out", str(tmp_path / "run"), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_missing_fashion_mnist_names_the_package(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DQT_FASHION_MNIST_DIR", str(tmp_path / "nowhere"))
    assert fit.main(["--dataset", "fashion-mnist", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "apt-get install dataset-fashion-mnist" in err


def test_help_lists_every_option(capsys):
    with pytest.raises(SystemExit) as info:
        fit.main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--mode", "--candidates", "--alpha", "--aux-bits", "--target", "--noise",
                   "--warmup", "--warmup-bits", "--freeze", "--ctrl-lr", "--dual-lr",
                   "--controller-grid", "--layer-bits", "--train-subset", "--cost"):
        assert option in text


def _fake_metrics(mode, accuracy, bits, seed=0):
    metrics = {"mode": mode, "seed": seed, "accuracy": accuracy, "average_bits": bits,
               "bitops_relative_w8a8": bits ** 2 / 64, "cpu_seconds_per_epoch": 10.0 * bits,
               "train_images": 60000, "test_images": 10, "parameters": 1000, "epochs": 10,
               "layer_bits_histogram": {"block0.conv1": {"2": 4, "8": 6}}}
    if mode in ("static", "dqt"):
        metrics["integer_accuracy"] = accuracy - 0.001
    if mode in ("dqt", "dqnet"):
        metrics["fixed_bits_accuracy"] = {"2": accuracy - 0.2, "4": accuracy - 0.01,
                                          "8": accuracy}
        metrics["fixed_bits_accuracy_shared_bn"] = {"2": accuracy - 0.3, "4": accuracy - 0.02,
                                                    "8": accuracy}
        metrics["oracle"] = {"accuracy": accuracy + 0.03, "average_bits": 2.5,
                             "bitops_relative_w8a8": 0.1}
        metrics.update(off_modal_share=0.3, distinct_bit_vectors=2,
                       top_bit_vectors=[["2", 7], ["8", 3]], class_average_bits=[3.0] * 10,
                       image_bits_histogram={"2": 7, "8": 3})
    return metrics


def test_bench_report_creates_a_missing_results_file_and_refuses_one_without_its_section(
        tmp_path, capsys):
    new = tmp_path / "new.md"
    args = bench._parser().parse_args(["--results", str(new), "--width", "8",
                                       "--plot", str(tmp_path / "plot.png"),
                                       "--choices-plot", str(tmp_path / "choices.png")])
    results = {"fp32": [_fake_metrics("fp32", 0.90, 32)]}
    bench.write_section(args, results, ["python -m train.bench"])
    text = new.read_text()
    assert text.startswith("# Training benchmark (width 8)\n\n## Training (Fashion-MNIST)\n")
    assert "| FP32 | 1 | 90.00 |" in text
    other = tmp_path / "other.md"
    other.write_text("# Results\n")
    store = tmp_path / "store"
    assert bench.main(["--results", str(other), "--store", str(store), "--runs", "fp32",
                       "--out", str(tmp_path / "runs")]) == 2
    assert capsys.readouterr().err == (f"error: {other} has no line "
                                       f"'## Training (Fashion-MNIST)'\n")
    assert other.read_text() == "# Results\n" and not store.exists()
    assert not (tmp_path / "runs").exists()


def test_bench_report_replaces_only_its_section(tmp_path):
    results_file = tmp_path / "results.md"
    results_file.write_text("# Results\n\n## Golden model\n\nkeep me\n\n"
                            "## Training (Fashion-MNIST)\n\nold text\n\n## Export\n\nkeep too\n")
    args = bench._parser().parse_args(["--results", str(results_file),
                                       "--plot", str(tmp_path / "plot.png"),
                                       "--choices-plot", str(tmp_path / "choices.png")])
    two = lambda mode, accuracy, bits: [_fake_metrics(mode, accuracy, bits),  # noqa: E731
                                        _fake_metrics(mode, accuracy + 0.02, bits, 1)]
    results = {"fp32": two("fp32", 0.90, 32), "static-w4": two("static", 0.895, 4),
               "lsq-w4a4": two("lsq", 0.89, 4), "dqt": two("dqt", 0.90, 3.9),
               "dqt-hidden-trained": two("dqt", 0.89, 3.8),
               "dqt-248-alpha0": [_fake_metrics("dqt", 0.90, 3.9)],
               "dqt-248-aux-all": two("dqt", 0.91, 3.9)}
    step = {"seconds_per_step": {"fp32": 0.05, "dqt": 0.14}, "batch_size": 128, "rounds": 3,
            "phase_share": {"warmup": 0.2}, "ratio_to_fp32": {"fp32": 1.0, "dqt": 2.8}}
    bench.write_section(args, results, ["python -m train.bench"], step)
    text = results_file.read_text()
    assert "keep me" in text and "keep too" in text and "old text" not in text
    assert "| FP32 | 2 | 91.00 ± 1.41 | n/a |" in text
    assert "| DQT {3,4,5}, 4-bit budget | 2 | 91.00 ± 1.41 | 90.90 ± 1.41 | 3.90 |" in text
    # Two seeds 2 pp apart in each run: standard error sqrt(2 * 2 / 2) = 1.41 pp.
    assert ("DQT at an average of at most 4 bits (3.900) at or above static W4A4 (+0.50 ± 1.41 "
            "pp) and LSQ W4A4 (+1.00 ± 1.41 pp), within 0.3 pp of FP32 (+0.00 ± 1.41 pp; ± one "
            "standard error of the difference over the seeds): **met**. Other DQT "
            "configurations at this budget, for reference: DQT {3,4,5}, 4-bit budget, trained "
            "hidden layer (2 seeds) 3.80 bits, -0.50 pp against W4A4, +0.00 pp against LSQ, "
            "-1.00 pp against FP32, 30.0 % off modal.") in text
    assert "3-bit budget against static W3A3 and static mixed precision: **not yet" in text
    assert "30.0 % of test images get a bit vector other than the most common" in text
    assert "dqt +0.50 pp at 0.238 x W8A8: **met**" in text
    assert "Alpha = 0 ablation with fair fixed-width evaluation: **not yet measured**" in text
    results["dqt-248-alpha0"].append(_fake_metrics("dqt", 0.85, 3.9, 1))
    results["dqt-248"] = results.pop("dqt")
    bench.write_section(args, results, ["python -m train.bench"], step)
    text = results_file.read_text()
    assert ("every controlled layer at 2 bits gives 67.50 % (4-bit budget, alpha=0; shared "
            "batch norm 57.50 %), 71.00 % (4-bit budget; shared batch norm 61.00 %), 72.00 % "
            "(4-bit budget, K'={2,4,8}; shared batch norm 62.00 %): **measured**; alpha > 0 "
            "with 2 bits in K' stabilizes the 2-bit path") in text
    assert "A DQT step at most 3x FP32 CPU time: 2.80x" in text and "**met**" in text
    for plot in ("plot.png", "choices.png"):
        assert (tmp_path / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert text.index("## Export") > text.index("### Commands")


def test_bench_report_tables_the_per_width_batch_norm_reports(tmp_path):
    store, results_file = tmp_path / "store", tmp_path / "results.md"
    store.mkdir()
    results_file.write_text("# Results\n\n## Training (Fashion-MNIST)\n")
    for seed, (trained, per_width) in enumerate([(0.90, 0.89), (0.92, 0.92)]):
        (store / f"per-width-bn-dqt-seed{seed}.json").write_text(json.dumps(
            {"per_width_bn": {"calibration_images": 2000, "trained": trained,
                              "recalibrated": 0.91, "per_width": per_width}}))
    args = bench._parser().parse_args(["--results", str(results_file), "--store", str(store),
                                       "--plot", "", "--choices-plot", ""])
    bench.write_section(args, {"dqt": [_fake_metrics("dqt", 0.90, 3.9)]},
                        ["python -m train.bench"])
    text = results_file.read_text()
    assert "### One batch norm per width" in text
    assert ("| DQT {3,4,5}, 4-bit budget | 2 | 91.00 ± 1.41 | 91.00 ± 0.00 | 90.50 ± 2.12 | "
            "-0.50 ± 0.71 |") in text


def test_bench_resumes_from_stored_runs(tmp_path, monkeypatch, capsys):
    calls = []

    def fake_train(config, log):
        calls.append((config.mode, config.seed))
        return None, dict(_fake_metrics(config.mode, 0.9, 4, config.seed), complete=True)
    monkeypatch.setattr(bench, "train", fake_train)
    results_file = tmp_path / "results.md"
    results_file.write_text("## Training (Fashion-MNIST)\n")
    common = ["--results", str(results_file), "--plot", "", "--choices-plot", "",
              "--store", str(tmp_path / "store"), "--out", str(tmp_path / "runs"),
              "--runs", "static-w4,fp32"]
    assert bench.main(common) == 0
    assert calls == [("fp32", 0), ("static", 0), ("fp32", 1), ("static", 1)]
    stored = json.loads((tmp_path / "store" / "static-w4-seed1.json").read_text())
    assert stored["settings"]["bits"] == 4 and stored["settings"]["seed"] == 1
    assert bench.main(common) == 0 and len(calls) == 4          # nothing runs twice
    assert bench.main(common[:-1] + ["static-w4", "--epochs", "3"]) == 0
    assert len(calls) == 6                                       # other settings: run again
    assert "--mode static --bits 4 --epochs 3" in results_file.read_text()


def test_stored_settings_leave_out_what_a_run_does_not_use():
    static = bench.settings(fit.TrainConfig(dataset="fashion-mnist", mode="static", bits=4,
                                            noise=0.5, out="somewhere"))
    assert static["bits"] == 4 and "noise" not in static and "out" not in static
    dqt = bench.settings(fit.TrainConfig(dataset="fashion-mnist", mode="dqt"))
    assert dqt["candidates"] == "3,4,5" and dqt["aux_bits"] == "4,5" and "noise" in dqt
    three = bench.settings(fit.TrainConfig(dataset="fashion-mnist", mode="dqt", target=3))
    assert three["candidates"] == "2,3,4" and three["warmup_bits"] == 3


def test_static_frontier():
    points = [(0.25, 90.0), (0.14, 88.0), (0.5, 89.0), (0.25, 89.0)]
    assert bench.static_frontier(points, 0.1) == 88.0          # below: the cheapest point
    assert bench.static_frontier(points, 0.195) == pytest.approx(89.0)
    assert bench.static_frontier(points, 0.4) == 90.0          # the envelope never falls
    assert bench.static_frontier(points, 2.0) == 90.0


def test_mixed_precision_baseline_fits_the_bitops():
    bits = bench.mixed_layer_bits(16, 3)
    macs = [451584, 451584, 225792, 451584, 25088, 294912, 589824, 32768]
    assert sum(m * b * b for m, b in zip(macs, bits)) <= sum(macs) * 9
    assert bits == [3, 3, 4, 2, 4, 4, 2, 4]


def test_training_is_reproducible(tmp_path):
    config = fit.TrainConfig(dataset="digits", mode="dqt", epochs=1, width=4, batch_size=256,
                             train_subset=256, progress=False, seed=7)
    states = []
    for _ in range(2):
        model, metrics = fit.train(config, log=lambda message: None)
        states.append((model.state_dict(), metrics["accuracy"]))
    assert states[0][1] == states[1][1]
    assert all(torch.equal(states[0][0][k], states[1][0][k]) for k in states[0][0])


def test_step_times_cover_every_phase():
    times = bench.step_times(width=4, batch_size=16, rounds=1)
    seconds = times["seconds_per_step"]
    assert set(seconds) == {"fp32", "static-w4", "dqt-warmup", "dqt-controller",
                            "dqt-fine-tune", "dqt"}
    assert all(value > 0 for value in seconds.values())
    assert sum(times["phase_share"].values()) == pytest.approx(1.0)
    assert times["ratio_to_fp32"]["fp32"] == 1.0
