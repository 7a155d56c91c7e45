"""Training benchmark on Fashion-MNIST: ``python -m train.bench`` (``make bench-train``).

Trains every run of `RUNS` with the same architecture, data and schedule, in the priority
order of `GROUPS` (the runs that decide issue 13's goals first; inside a group every run at
the first seed before any at the next), then replaces the "## Training (Fashion-MNIST)"
section of docs/results.md with tables, plots and the goals, met or missed, from the numbers.

Resumable run by run: each finished run's metrics (with the settings that produced them) are
stored as ``--store``/<run>-seed<s>.json, small JSON meant to be committed; a run whose stored
file has the same settings is not trained again, so a benchmark cut short continues where it
stopped, in another sitting. Checkpoints and logs go to ``--out`` (runs/bench-train/, not
committed). ``--report-only`` rewrites the section from the stored runs; ``--step-time``
measures the CPU time of training steps of FP32, static W4 and DQT interleaved in one process
(a ratio that the machine's load cannot skew) and stores it as ``--store``/step-time.json.
"""

import argparse
import dataclasses
import io
import itertools
import json
import math
import os
import statistics
import subprocess
import sys
import time

from dqt_hw.atomic import write_atomic

from .fit import TrainConfig, _Log, resolve, train, write_json_atomic
from .modes import DYNAMIC_MODES

__all__ = ["RUNS", "GROUPS", "main", "write_section", "mixed_layer_bits", "step_times",
           "static_frontier", "settings"]

SECTION = "## Training (Fashion-MNIST)"
#: run name -> (label, TrainConfig overrides); "layer_bits": "mixed3" is `mixed_layer_bits`.
#: DQT's default candidates are {t-1, t, t+1} around the budget t.
RUNS = {
    "fp32": ("FP32", dict(mode="fp32")),
    "static-w4": ("static W4A4 (nested)", dict(mode="static", bits=4)),
    "lsq-w4a4": ("LSQ W4A4", dict(mode="lsq", bits=4)),
    "dqt": ("DQT {3,4,5}, 4-bit budget", dict(mode="dqt")),
    "dqt-wide": ("DQT {2,3,4,5,6}, 4-bit budget", dict(mode="dqt", candidates="2,3,4,5,6")),
    "dqt-hidden-trained": ("DQT {3,4,5}, 4-bit budget, trained hidden layer",
                           dict(mode="dqt", ctrl_hidden="trained")),
    "static-w3": ("static W3A3 (nested)", dict(mode="static", bits=3)),
    "dqt-budget3": ("DQT {2,3,4}, 3-bit budget", dict(mode="dqt", target=3.0)),
    "static-mixed3": ("static mixed precision, W3A3 BitOPs",
                      dict(mode="static", layer_bits="mixed3")),
    "dqt-budget3-hidden-trained": ("DQT {2,3,4}, 3-bit budget, trained hidden layer",
                                   dict(mode="dqt", target=3.0, ctrl_hidden="trained")),
    "dqt-248": ("DQT {2,4,8}, 4-bit budget", dict(mode="dqt", candidates="2,4,8")),
    "dqt-248-aux-all": ("DQT {2,4,8}, 4-bit budget, K'={2,4,8}",
                        dict(mode="dqt", candidates="2,4,8", aux_bits="2,4,8")),
    "dqt-248-alpha0": ("DQT {2,4,8}, 4-bit budget, alpha=0",
                       dict(mode="dqt", candidates="2,4,8", alpha=0.0)),
    "dqnet": ("DQNet-style {3,4,5}, 4-bit budget", dict(mode="dqnet")),
    "static-w2": ("static W2A2 (nested)", dict(mode="static", bits=2)),
    "static-w8": ("static W8A8 (nested)", dict(mode="static", bits=8)),
}
#: Priority groups: goals of the default budget, of the 3-bit budget, then ablations.
GROUPS = (("fp32", "static-w4", "lsq-w4a4", "dqt", "dqt-wide", "dqt-hidden-trained"),
          ("static-w3", "dqt-budget3", "static-mixed3", "dqt-budget3-hidden-trained"),
          ("dqt-248", "dqt-248-aux-all", "dqt-248-alpha0", "dqnet", "static-w2", "static-w8"))
STATIC_RUNS = ("static-w2", "static-w3", "static-mixed3", "static-w4", "static-w8", "lsq-w4a4")
DYNAMIC_RUNS = ("dqt", "dqt-wide", "dqt-hidden-trained", "dqt-budget3",
                "dqt-budget3-hidden-trained", "dqt-248", "dqt-248-aux-all",
                "dqt-248-alpha0", "dqnet")


def _parser():
    parser = argparse.ArgumentParser(prog="python -m train.bench", description=__doc__.split(
        "\n\n")[0])
    parser.add_argument("--epochs", type=int, default=10, help="epochs per run (default 10)")
    parser.add_argument("--seeds", default="0,1", help="comma-separated seeds (default 0,1)")
    parser.add_argument("--width", type=int, default=16, help="first-stage channels (16)")
    parser.add_argument("--train-subset", type=int, default=0,
                        help="train on N of the 60000 images (default 0: all)")
    parser.add_argument("--runs", default=",".join(RUNS),
                        help="comma-separated subset of the runs (default: all, in priority "
                             "order)")
    parser.add_argument("--out", default="runs/bench-train",
                        help="folder of checkpoints and logs (not committed)")
    parser.add_argument("--store", default="docs/train-runs",
                        help="folder of the finished runs' metrics JSON (committed)")
    parser.add_argument("--results", default="docs/results.md", help="results file")
    parser.add_argument("--plot", default="docs/training_accuracy_bitops.png",
                        help="PNG plot of accuracy against BitOPs")
    parser.add_argument("--choices-plot", default="docs/training_bit_choices.png",
                        help="PNG plot of the dynamic models' per-image bit choices")
    parser.add_argument("--report-only", action="store_true",
                        help="only rewrite the results section from the stored runs")
    parser.add_argument("--refresh-integer", action="store_true",
                        help="re-measure the integer-emulation columns of stored runs from "
                             "their checkpoints (after a change of the integer export)")
    parser.add_argument("--step-time", action="store_true",
                        help="measure the CPU time per training step of FP32, static W4 and "
                             "DQT in one process, store it, and rewrite the section")
    return parser


def mixed_layer_bits(width, target, widths=(2, 3, 4)):
    """A static per-layer assignment with at most the BitOPs of every layer at `target` bits:
    from all layers at the smallest width, repeatedly raise the layer whose next width adds
    the fewest BitOPs while they stay within that budget (cheap layers get the bits)."""
    from . import model
    _, model_config = resolve(TrainConfig(dataset="fashion-mnist", mode="static", width=width))
    macs = [layer.macs for layer in model.build_model(model_config).controlled]
    bits = [widths[0]] * len(macs)
    budget_bitops = sum(macs) * target ** 2
    while True:
        options = []
        for i, b in enumerate(bits):
            if b == widths[-1]:
                continue
            higher = widths[widths.index(b) + 1]
            trial = bits[:i] + [higher] + bits[i + 1:]
            cost = sum(m * t * t for m, t in zip(macs, trial))
            if cost <= budget_bitops:
                options.append((cost, i, higher))
        if not options:
            return bits
        _, i, higher = min(options)
        bits[i] = higher


def _run_config(args, name, seed, folder):
    overrides = dict(RUNS[name][1])
    if overrides.get("layer_bits") == "mixed3":
        overrides["layer_bits"] = ",".join(map(str, mixed_layer_bits(args.width, 3)))
    return TrainConfig(dataset="fashion-mnist", epochs=args.epochs, width=args.width,
                       seed=seed, train_subset=args.train_subset, out=folder, threads=1,
                       progress=False, **overrides)


def settings(config):
    """What a run's result depends on: the resolved TrainConfig without the output options,
    and without the dynamic-mode options for the other modes (so tuning DQT's defaults does
    not invalidate the stored static runs)."""
    resolved, _ = resolve(config)
    dynamic_mode = resolved.mode in DYNAMIC_MODES
    return {field.name: getattr(resolved, field.name)
            for field in dataclasses.fields(resolved)
            if field.name not in ("out", "progress")
            and (dynamic_mode or not field.metadata.get("dynamic"))}


def _stored(path, config):
    if not os.path.exists(path):
        return None
    with open(path) as file:
        stored = json.load(file)
    if stored.get("complete") and stored.get("settings") == settings(config):
        return stored
    return None


def _code_version():
    """The commit checked out and whether train/ has uncommitted changes."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "train"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except OSError:
        return None
    return {"commit": commit or None, "train_sources_modified": bool(dirty)}


def _command(args, name, config):
    overrides = dict(RUNS[name][1])
    if "layer_bits" in overrides:
        overrides["layer_bits"] = config.layer_bits
    flags = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in overrides.items())
    return (f"python -m train.fit --dataset fashion-mnist {flags} --epochs {args.epochs} "
            f"--width {args.width} --seed {config.seed}"
            + (f" --train-subset {args.train_subset}" if args.train_subset else "")
            + f" --out {config.out}")


# -- step time ---------------------------------------------------------------------------------

def step_times(width=16, batch_size=128, rounds=16, seed=0):
    """CPU seconds per training step, the mean over `rounds` steps measured interleaved in this
    process (round robin over the kinds, so a change in the machine's load hits every kind
    alike): FP32, static W4, and successive steps of each phase of a DQT run with the default
    settings; "dqt" is the phases' mean weighted by their share of the run's steps."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from . import data, dynamic, model
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    images, labels = data.load_dataset("fashion-mnist", "train")
    rows = np.random.default_rng(seed).permutation(len(images))[:batch_size * 4]
    batches = [(data.to_master_codes(torch.from_numpy(images[r]), 8),
                torch.from_numpy(labels[r])) for r in np.split(rows, 4)]
    steppers = {}
    for kind, overrides in (("fp32", dict(mode="fp32")), ("static-w4", dict(mode="static",
                                                                             bits=4))):
        config, model_config = resolve(TrainConfig(dataset="fashion-mnist", width=width,
                                                   **overrides))
        net = model.build_model(model_config).train()
        optimizer = torch.optim.AdamW(net.parameters(), lr=config.lr)

        def step(codes, target, net=net, optimizer=optimizer):
            loss = F.cross_entropy(net(codes)["logits"], target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        steppers[kind] = step
    config, model_config = resolve(TrainConfig(dataset="fashion-mnist", width=width,
                                               mode="dqt"))
    net = model.build_model(model_config).train()
    total = 5 * (rounds + 2)                     # every phase has rounds + 2 steps
    run = dynamic.DynamicTraining(net, config, total)
    optimizer, _ = run.optimizer()
    first_step = {"warmup": 0, "controller": run.warm_end, "fine-tune": run.freeze_at}
    share = {"warmup": run.warm_end / total,
             "controller": (run.freeze_at - run.warm_end) / total,
             "fine-tune": (total - run.freeze_at) / total}
    for phase, first in first_step.items():
        def step(codes, target, steps=itertools.count(first)):
            # Successive steps of the phase: the fixed-width pass and the probed layer vary.
            loss, _ = run.loss(codes, target, next(steps))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            run.after_step()
        steppers[f"dqt-{phase}"] = step
    frozen = False
    seconds = {kind: [] for kind in steppers}
    for round_index in range(rounds + 2):
        for kind, step in steppers.items():
            if kind == "dqt-fine-tune" and not frozen:
                run.freeze(images[rows])                # the fine-tune phase runs frozen
                frozen = True
            codes, target = batches[round_index % len(batches)]
            started = time.process_time()
            step(codes, target)
            if round_index >= 2:                         # two warm-up rounds
                seconds[kind].append(time.process_time() - started)
    result = {kind: statistics.mean(values) for kind, values in seconds.items()}
    result["dqt"] = sum(share[p] * result[f"dqt-{p}"] for p in share)
    return {"seconds_per_step": result, "phase_share": share, "batch_size": batch_size,
            "width": width, "rounds": rounds,
            "ratio_to_fp32": {k: v / result["fp32"] for k, v in result.items()}}


# -- report ------------------------------------------------------------------------------------

def _mean(runs, key):
    return statistics.mean(m[key] for m in runs)


def _fmt(values, scale=100.0, digits=2, sign=""):
    values = [v * scale for v in values]
    if len(values) == 1:
        return f"{values[0]:{sign}.{digits}f}"
    return f"{statistics.mean(values):{sign}.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def _figure():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(plt, figure, path):
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    write_atomic(path, buffer.getvalue())


def _plot(results, path, cascades=None):
    plt = _figure()
    figure, axes = plt.subplots(figsize=(7.0, 4.6))
    markers = itertools.cycle("osD^vP<>Xhp*")      # with the colour cycle: unique pairs
    for name, (label, _) in RUNS.items():
        if name not in results or name == "fp32":
            continue
        runs = results[name]
        accuracies = [m["accuracy"] * 100 for m in runs]
        spread = statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0
        # A legend, not annotations: runs at the same BitOPs would overprint their labels.
        axes.errorbar([_mean(runs, "bitops_relative_w8a8")], [statistics.mean(accuracies)],
                      yerr=[spread], capsize=3, fmt=next(markers), label=label,
                      mfc="none" if name in STATIC_RUNS else None)
    for name in ("dqt", "dqt-budget3"):
        if name in results:
            oracle = [m["oracle"] for m in results[name]]
            axes.plot([statistics.mean(o["bitops_relative_w8a8"] for o in oracle)],
                      [statistics.mean(o["accuracy"] * 100 for o in oracle)], "k*",
                      label=f"oracle over the fixed widths ({name})")
    if cascades:
        rows = [c["batch_norm"]["shared"]["cascades"] for c in cascades.values()]
        pairs = sorted({(r["low"], r["high"]) for r in rows[0]})
        for low, high in pairs:
            points = [[r for r in seed if (r["low"], r["high"]) == (low, high)]
                      for seed in rows]
            axes.plot([statistics.mean(p[i]["bitops_relative_w8a8"] for p in points)
                       for i in range(len(points[0]))],
                      [statistics.mean(p[i]["accuracy"] * 100 for p in points)
                       for i in range(len(points[0]))], ":", marker=".",
                      label=f"cascade {low} -> {high} bits (dqt)")
    if "fp32" in results:
        axes.axhline(_mean(results["fp32"], "accuracy") * 100, color="gray", ls="--",
                     label="FP32")
    axes.legend(fontsize=7)
    axes.set_xlabel("BitOPs relative to W8A8")
    axes.set_ylabel("Fashion-MNIST top-1 (%)")
    axes.set_title("Accuracy against BitOPs (train.bench; filled: dynamic, open: static)")
    axes.grid(True, alpha=0.3)
    _save(plt, figure, path)


def _plot_choices(results, path):
    dynamic_runs = [name for name in DYNAMIC_RUNS if name in results]
    plt = _figure()
    figure, (left, right) = plt.subplots(1, 2, figsize=(10.0, 4.0))
    bar = 0.8 / len(dynamic_runs) / 8             # per-image means are multiples of 1/8
    for index, name in enumerate(dynamic_runs):
        histogram = results[name][0]["image_bits_histogram"]
        total = sum(histogram.values())
        left.bar([float(v) + (index - (len(dynamic_runs) - 1) / 2) * bar for v in histogram],
                 [100 * count / total for count in histogram.values()], width=bar,
                 label=RUNS[name][0])
    left.set_xlabel("average bits of an image (mean over controlled layers)")
    left.set_ylabel("% of test images")
    left.set_title("Per-image bit choices (seed 0)")
    left.legend(fontsize=7)
    left.grid(True, alpha=0.3)
    if "dqt" in results:
        histogram = results["dqt"][0]["layer_bits_histogram"]
        layers = list(histogram)
        widths = sorted({b for counts in histogram.values() for b in counts}, key=int)
        bottom = [0.0] * len(layers)
        for b in widths:
            shares = [100 * histogram[layer].get(b, 0) / sum(histogram[layer].values())
                      for layer in layers]
            right.bar(range(len(layers)), shares, bottom=bottom, label=f"{b} bits")
            bottom = [x + y for x, y in zip(bottom, shares)]
        right.set_xticks(range(len(layers)), layers, rotation=45, ha="right", fontsize=7)
        right.set_ylabel("% of test images")
        right.set_title(f"{RUNS['dqt'][0]}: width per layer (seed 0)")
        right.legend(fontsize=7)
    _save(plt, figure, path)


def static_frontier(points, bitops):
    """Accuracy of the static frontier at `bitops`: the best accuracy of the static (BitOPs,
    accuracy) points at or below each BitOPs, interpolated linearly between them; below the
    cheapest point, that point's accuracy (a dynamic model must match it with fewer BitOPs)."""
    best_at = {}
    for x, y in points:
        best_at[x] = max(y, best_at.get(x, -math.inf))
    envelope, best = [], -math.inf
    for x, y in sorted(best_at.items()):
        best = max(best, y)
        envelope.append((x, best))
    if bitops <= envelope[0][0]:
        return envelope[0][1]
    for (x0, y0), (x1, y1) in zip(envelope, envelope[1:]):
        if bitops <= x1:
            return y0 + (y1 - y0) * (bitops - x0) / (x1 - x0) if x1 > x0 else y1
    return envelope[-1][1]


def _goals(results, step):
    """Lines saying, from the numbers, whether each goal of issue 13 is met."""
    def has(*names):
        return all(name in results and len(results[name]) >= 2 for name in names)

    def acc(name):
        return _mean(results[name], "accuracy") * 100

    def error(name, other):
        """Standard error of acc(name) - acc(other), from the seeds' spread (pp)."""
        return 100 * math.sqrt(sum(statistics.variance([m["accuracy"] for m in results[n]])
                                   / len(results[n]) for n in (name, other)))
    lines = []
    if has("dqt", "static-w4", "lsq-w4a4", "fp32"):
        bits = _mean(results["dqt"], "average_bits")
        vs = {other: acc("dqt") - acc(other) for other in ("static-w4", "lsq-w4a4", "fp32")}
        se = {other: error("dqt", other) for other in vs}
        met = (bits <= 4.0 and vs["static-w4"] >= 0 and vs["lsq-w4a4"] >= 0
               and vs["fp32"] >= -0.3)
        lines.append(f"- DQT at an average of at most 4 bits ({bits:.3f}) at or above static "
                     f"W4A4 ({vs['static-w4']:+.2f} ± {se['static-w4']:.2f} pp) and LSQ W4A4 "
                     f"({vs['lsq-w4a4']:+.2f} ± {se['lsq-w4a4']:.2f} pp), within 0.3 pp of FP32 "
                     f"({vs['fp32']:+.2f} ± {se['fp32']:.2f} pp; ± one standard error of the "
                     f"difference over the seeds): **{'met' if met else 'missed'}**.")
        # The goal is judged on the default run; the variants were designed after seeing it.
        variants = [name for name in ("dqt-wide", "dqt-hidden-trained") if has(name)]
        if variants:
            lines[-1] += " Other DQT configurations at this budget, for reference: " + "; ".join(
                f"{RUNS[name][0]} ({len(results[name])} seeds) "
                f"{_mean(results[name], 'average_bits'):.2f} bits, "
                + ", ".join(f"{acc(name) - acc(other):+.2f} pp against {label}"
                            for other, label in (("static-w4", "W4A4"), ("lsq-w4a4", "LSQ"),
                                                 ("fp32", "FP32")))
                + f", {100 * _mean(results[name], 'off_modal_share'):.1f} % off modal"
                for name in variants) + "."
    else:
        lines.append("- DQT at most 4 bits against static W4A4, LSQ W4A4 and FP32: **not yet "
                     "measured** (needs two seeds of dqt, static-w4, lsq-w4a4 and fp32).")
    if has("dqt-budget3", "static-w3", "static-mixed3"):
        vs = {other: acc("dqt-budget3") - acc(other) for other in ("static-w3", "static-mixed3")}
        se = {other: error("dqt-budget3", other) for other in vs}
        met = all(v > 0 for v in vs.values())
        lines.append(f"- At a 3-bit budget ({_mean(results['dqt-budget3'], 'average_bits'):.3f} "
                     f"bits, BitOPs {_mean(results['dqt-budget3'], 'bitops_relative_w8a8'):.3f} "
                     f"x W8A8) DQT above static W3A3 ({vs['static-w3']:+.2f} ± "
                     f"{se['static-w3']:.2f} pp) and above the static mixed-precision model of "
                     f"W3A3 BitOPs ({_mean(results['static-mixed3'], 'bitops_relative_w8a8'):.3f}"
                     f" x W8A8; {vs['static-mixed3']:+.2f} ± {se['static-mixed3']:.2f} pp): "
                     f"**{'met' if met else 'missed'}**.")
    else:
        lines.append("- DQT at a 3-bit budget against static W3A3 and static mixed precision: "
                     "**not yet measured** (needs two seeds of dqt-budget3, static-w3 and "
                     "static-mixed3).")
    if has("dqt"):
        share = _mean(results["dqt"], "off_modal_share")
        statics = {name: (_mean(results[name], "bitops_relative_w8a8"), acc(name))
                   for name in STATIC_RUNS if name in results}
        above = []
        for name in ("dqt", "dqt-budget3"):
            if name in results and statics:
                bitops = _mean(results[name], "bitops_relative_w8a8")
                frontier = static_frontier(statics.values(), bitops)
                above.append((name, bitops, acc(name) - frontier))
        pareto = bool(above) and all(margin > 0 for _, _, margin in above)
        lines.append(f"- Dynamic for real: {100 * share:.1f} % of test images get a bit vector "
                     f"other than the most common one (goal: at least 20 %); accuracy against "
                     f"the frontier of the {len(statics)} static points measured (best static "
                     f"accuracy at no more BitOPs, interpolated): "
                     + ", ".join(f"{name} {margin:+.2f} pp at {bitops:.3f} x W8A8"
                                 for name, bitops, margin in above)
                     + f": **{'met' if share >= 0.2 and pareto else 'missed'}**"
                     + ("" if set(STATIC_RUNS) <= set(statics) else
                        f" (static points not yet measured: "
                        f"{', '.join(n for n in STATIC_RUNS if n not in statics)})") + ".")
    else:
        lines.append("- Dynamic for real: **not yet measured** (needs two seeds of dqt).")
    if has("dqt-248-aux-all", "dqt-248-alpha0"):
        names = [name for name in ("dqt-248-alpha0", "dqt-248", "dqt-248-aux-all")
                 if has(name)]

        def two_bits(name, key):
            return 100 * statistics.mean(m[key]["2"] for m in results[name])
        fair = {name: two_bits(name, "fixed_bits_accuracy") for name in names}
        shared = {name: two_bits(name, "fixed_bits_accuracy_shared_bn") for name in names}
        holds = fair["dqt-248-aux-all"] > fair["dqt-248-alpha0"] + 1
        lines.append("- Alpha = 0 ablation and the 2-bit stability claim, re-measured with batch "
                     "norm recalibrated per width: every controlled layer at 2 bits gives "
                     + ", ".join(f"{fair[n]:.2f} % ({RUNS[n][0].split(', ', 1)[1]}; shared "
                                 f"batch norm {shared[n]:.2f} %)" for n in names)
                     + f": **measured**; alpha > 0 with 2 bits in K' "
                     f"{'stabilizes' if holds else 'does not stabilize'} the 2-bit path here "
                     f"(stabilizes means more than 1 pp above alpha = 0).")
    else:
        lines.append("- Alpha = 0 ablation with fair fixed-width evaluation: **not yet "
                     "measured** (needs two seeds of dqt-248-aux-all and dqt-248-alpha0).")
    if step:
        ratio = step["ratio_to_fp32"]["dqt"]
        lines.append(f"- A DQT step at most 3x FP32 CPU time: {ratio:.2f}x (mean over the "
                     f"run's phases, measured interleaved in one process): "
                     f"**{'met' if ratio <= 3 else 'missed'}**.")
    else:
        lines.append("- A DQT step at most 3x FP32 CPU time: **not yet measured** (run "
                     "`python -m train.bench --step-time`).")
    return lines


def _seed_reports(args, prefix):
    """The stored reports `prefix`-seed<s>.json, by seed."""
    found = {}
    for seed in range(100):
        path = os.path.join(args.store, f"{prefix}-seed{seed}.json")
        if os.path.exists(path):
            with open(path) as file:
                found[seed] = json.load(file)
    return found


def _per_width_section(args):
    """Lines of the per-width batch-norm subsection, from `train.diagnose --per-width-bn`
    reports stored as per-width-bn-<run>-seed<s>.json (empty without them)."""
    rows = []
    for name, (label, _) in RUNS.items():
        reports = [report["per_width_bn"]
                   for report in _seed_reports(args, f"per-width-bn-{name}").values()]
        if reports:
            change = [r["per_width"] - r["trained"] for r in reports]
            rows.append(f"| {label} | {len(reports)} | "
                        + " | ".join(_fmt([r[key] for r in reports])
                                     for key in ("trained", "recalibrated", "per_width"))
                        + f" | {_fmt(change, sign='+')} |")
    if not rows:
        return []
    return ["", "### One batch norm per width", "",
            "`python -m train.diagnose CKPT --per-width-bn --json "
            f"{args.store}/per-width-bn-RUN-seedS.json`: top-1 (%) on the 10000 test images as "
            "the controller chooses (float model), with the trained batch norm, with it "
            "recalibrated on 2000 training images as the controller chooses, and with one set "
            "of statistics per controlled layer and width, each from every calibration image "
            "with that layer at that width (what per-width constants in a package would hold; "
            "docs/training.md). \"Trained\" is each report's own checkpoint: one retrained for "
            "the diagnosis can differ from the stored run.", "",
            "| run | seeds | trained | recalibrated | one per width | one per width - trained "
            "(pp) |", "|---|---|---|---|---|---|"] + rows


def _whole_image_section(args, results):
    """Lines of the routing and cascade subsection, from `train.diagnose --routing` and
    `train.cascade` reports of the dqt run's checkpoints (empty without them)."""
    routings = {s: r["routing"] for s, r in _seed_reports(args, "diagnose-dqt").items()
                if "routing" in r}
    cascades = _seed_reports(args, "cascade-dqt")
    if not routings and not cascades:
        return []
    body = ["", "### Whole images: a signal, and what a precision cascade buys", ""]
    if routings:
        first = next(iter(routings.values()))
        low, high, mid = first["low"], first["high"], str(0.5)
        body += [f"`python -m train.diagnose CKPT --routing` (seeds "
                 f"{', '.join(map(str, routings))}) routes whole images: every controlled "
                 f"layer at {low} or at {high} bits (batch norm recalibrated per width), the "
                 f"riskiest half by each signal at {high}, so a mean of "
                 f"{(low + high) / 2:g} bits; learned signals are fitted on the first "
                 f"{first['images'] - first['scored_images']} test images and scored on the "
                 f"other {first['scored_images']}. AUC: how well the signal ranks "
                 f"the images the {low}-bit pass gets wrong.", "",
                 f"| signal | AUC | accuracy at {(low + high) / 2:g} bits | every layer at "
                 f"{(low + high) // 2} bits |", "|---|---|---|---|"]
        for name in first["signals"]:
            rows = [r["signals"][name] for r in routings.values()]
            fixed = [r["fixed_width_accuracy"].get(str((low + high) // 2), math.nan)
                     for r in routings.values()]
            body.append(f"| {name} | {_fmt([r['auc_wrong_at_low'] for r in rows], 1, 3)} | "
                        f"{_fmt([r['routed'][mid]['accuracy'] for r in rows])} | "
                        f"{_fmt(fixed)} |")
    if cascades:
        statics = {name: (_mean(results[name], "bitops_relative_w8a8"),
                          _mean(results[name], "accuracy") * 100)
                   for name in STATIC_RUNS if name in results}
        first = next(iter(cascades.values()))
        body += ["", f"`python -m train.cascade CKPT` (seeds {', '.join(map(str, cascades))}, "
                 f"{first['images']} test images, the model's shared batch norm as exported): "
                 f"every image runs with every controlled layer at the low width; one whose "
                 f"logit margin is below the threshold (set on {first['threshold_images']} "
                 f"training images for the target share) runs again at the high width. "
                 f"BitOPs count both passes in "
                 f"full. \"Frontier\": the best static run at no more BitOPs, interpolated "
                 f"(the goal's frontier). The same checkpoints with their controller: "
                 + ", ".join(f"{100 * c['controller']['accuracy']:.2f} % at "
                             f"{c['controller']['bitops_relative_w8a8']:.3f} x W8A8"
                             for c in cascades.values()) + ".", "",
                 "| low -> high | target share run twice | run twice | accuracy | BitOPs x "
                 "W8A8 | frontier | vs frontier |", "|---|---|---|---|---|---|---|"]
        margins = []
        for index, row in enumerate(first["batch_norm"]["shared"]["cascades"]):
            rows = [c["batch_norm"]["shared"]["cascades"][index] for c in cascades.values()]
            accuracy = statistics.mean(r["accuracy"] for r in rows) * 100
            cost = statistics.mean(r["bitops_relative_w8a8"] for r in rows)
            frontier = static_frontier(statics.values(), cost) if statics else math.nan
            margins.append((accuracy - frontier, row["low"], row["high"],
                            statistics.mean(r["run_twice"] for r in rows), cost))
            body.append(f"| {row['low']} -> {row['high']} | {100 * row['target_fraction']:.0f} % "
                        f"| {_fmt([r['run_twice'] for r in rows], 100, 1)} % | "
                        f"{_fmt([r['accuracy'] for r in rows])} | {cost:.3f} | {frontier:.2f} | "
                        f"{accuracy - frontier:+.2f} |")

        def fixed(b):
            return _fmt([c["batch_norm"]["shared"]["fixed"][b]["accuracy"]
                         for c in cascades.values()])
        best = max(margins)
        body += ["", "Every layer at one width, same checkpoints, shared batch norm: "
                 + ", ".join(f"{b} bits {fixed(b)} %"
                             for b in first["batch_norm"]["shared"]["fixed"])
                 + f". Best cascade against the static frontier: {best[0]:+.2f} pp ({best[1]} "
                 f"-> {best[2]}, {100 * best[3]:.1f} % of the images run twice, {best[4]:.3f} x "
                 f"W8A8; the best of {len(margins)} points, so it is chosen on the test set)."]
        # The point fixed in advance: lowest to highest candidate, the goal's 20 % share.
        low, high = first["candidates"][0], first["candidates"][-1]
        index = next((i for i, r in enumerate(first["batch_norm"]["shared"]["cascades"])
                      if (r["low"], r["high"], r["target_fraction"]) == (low, high, 0.2)),
                     None)
        if index is not None and "static-w4" in results and "fp32" in results:
            rows = [c["batch_norm"]["shared"]["cascades"][index] for c in cascades.values()]
            accuracy = statistics.mean(r["accuracy"] for r in rows) * 100
            cost = statistics.mean(r["bitops_relative_w8a8"] for r in rows)
            versus = [accuracy - _mean(results["static-w4"], "accuracy") * 100,
                      accuracy - _mean(results["fp32"], "accuracy") * 100,
                      accuracy - static_frontier(statics.values(), cost)]
            body += ["", f"Fixed in advance (lowest to highest candidate, the goal's 20 % "
                     f"share): {low} -> {high} bits, "
                     f"{100 * statistics.mean(r['run_twice'] for r in rows):.1f} % of the "
                     f"images run twice, {_fmt([r['accuracy'] for r in rows])} % at "
                     f"{cost:.3f} x W8A8: {versus[0]:+.2f} pp against static W4A4, "
                     f"{versus[1]:+.2f} against FP32, {versus[2]:+.2f} against the static "
                     f"frontier, with a second bit vector for every image run twice."]
            spreads = [statistics.stdev([m["accuracy"] * 100 for m in results[name]])
                       for name in STATIC_RUNS + ("fp32",) if len(results.get(name, ())) > 1]
            if spreads:
                inside = max(abs(v) for v in versus) < max(spreads)
                body[-1] += (f" The static runs and FP32 spread from seed to seed by a "
                             f"standard deviation of up to {max(spreads):.2f} pp: these "
                             f"margins are {'inside' if inside else 'beyond'} it.")
    return body


def write_section(args, results, commands, step=None):
    """Replace the training section of the results file (atomically) with the report."""
    seeds = sorted({m["seed"] for runs in results.values() for m in runs})
    any_run = next(iter(results.values()))[0]
    body = [
        "",
        f"Produced by `python -m train.bench` (`make bench-train`); every run: Fashion-MNIST, "
        f"{any_run['train_images']} training / {any_run['test_images']} test images, "
        f"{any_run['epochs']} epochs, ResNet width {args.width} (3 stages of one basic block, "
        f"stride-2 stem, {any_run['parameters']} backbone parameters), AdamW lr 2e-3 cosine, "
        f"batch 128, seed(s) {', '.join(map(str, seeds))}, one CPU thread on the shared 2-core "
        f"machine. Each run's metrics are in `{args.store}/` (the benchmark resumes from them). "
        f"Top-1 in %, mean ± standard deviation over the seeds a row lists. \"Integer\" is the "
        f"integer emulation (train.integerize, bit-exact with dqt_hw.golden.run_graph); LSQ, "
        f"DQNet and FP32 have no nested integer form. Average bits: mean over images and "
        f"controlled layers (stem and classifier always at 8 bits); BitOPs include stem, "
        f"classifier and controller. \"Off modal\": share of test images whose bit vector is "
        f"not the most common one. Dynamic runs: docs/training.md (warm-up, controller with "
        f"measured alternatives and a Lagrangian budget, calibration, fine-tuning).",
        "",
        "| run | seeds | top-1 (%) | integer top-1 (%) | average bits | BitOPs / W8A8 | "
        "off modal (%) | CPU s / epoch |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, (label, _) in RUNS.items():
        if name not in results:
            continue
        runs = results[name]
        integer = (_fmt([m["integer_accuracy"] for m in runs]) if "integer_accuracy" in runs[0]
                   else "n/a")
        bits = "32 (float)" if name == "fp32" else f"{_mean(runs, 'average_bits'):.2f}"
        off = _fmt([m["off_modal_share"] for m in runs], digits=1) if name in DYNAMIC_RUNS \
            else "-"
        body.append(f"| {label} | {len(runs)} | {_fmt([m['accuracy'] for m in runs])} | "
                    f"{integer} | {bits} | {_mean(runs, 'bitops_relative_w8a8'):.3f} | {off} | "
                    f"{_mean(runs, 'cpu_seconds_per_epoch'):.0f} |")
    dynamic_runs = [name for name in DYNAMIC_RUNS if name in results]
    if dynamic_runs:
        widths = sorted({b for name in dynamic_runs for b in
                         results[name][0]["fixed_bits_accuracy"]}, key=int)
        body += ["", "### Fixed widths, fairly: every controlled layer at one width", "",
                 "Top-1 (%) of each dynamic model with the controller bypassed, batch norm "
                 "recalibrated at that width on 2000 training images (evaluation only, "
                 "`train.metrics.recalibrated_bn`; in parentheses: with the shared batch norm, "
                 "whose statistics come from the mix of widths the controller picks). The "
                 "oracle routes each test image to the smallest width whose recalibrated "
                 "network classifies it correctly (the smallest when none does).", "",
                 "| run | " + " | ".join(f"all at {b} bits" for b in widths)
                 + " | controller | oracle (avg bits) |", "|---|" + "---|" * (len(widths) + 2)]
        for name in dynamic_runs:
            runs = results[name]
            cells = [(f"{_fmt([m['fixed_bits_accuracy'][b] for m in runs])} "
                      f"({_fmt([m['fixed_bits_accuracy_shared_bn'][b] for m in runs])})"
                      if b in runs[0]["fixed_bits_accuracy"] else "-") for b in widths]
            oracle = [m["oracle"] for m in runs]
            body.append(f"| {RUNS[name][0]} | " + " | ".join(cells)
                        + f" | {_fmt([m['accuracy'] for m in runs])} | "
                          f"{_fmt([o['accuracy'] for o in oracle])} "
                          f"({statistics.mean(o['average_bits'] for o in oracle):.2f}) |")
    for name in ("dqt", "dqt-wide", "dqt-budget3"):
        if name not in results:
            continue
        first = results[name][0]
        histogram = first.get("integer_layer_bits_histogram", first["layer_bits_histogram"])
        widths = sorted({b for counts in histogram.values() for b in counts}
                        | set(first["fixed_bits_accuracy"]), key=int)
        total = first["test_images"]
        body += ["", f"### Bit-widths chosen by the controller: {RUNS[name][0]} (seed "
                     f"{first['seed']}, integer model, % of the {total} test images)", "",
                 "| layer | " + " | ".join(f"{b} bits" for b in widths) + " |",
                 "|---|" + "---|" * len(widths)]
        for layer, counts in histogram.items():
            body.append(f"| {layer} | " + " | ".join(
                f"{100 * counts.get(b, 0) / total:.1f}" for b in widths) + " |")
        body += ["", f"{first['distinct_bit_vectors']} distinct bit vectors; most common: "
                     + ", ".join(f"`{vector}` {100 * count / total:.1f} %"
                                 for vector, count in first["top_bit_vectors"][:4])
                     + "; mean bits per class (0-9): "
                     + ", ".join(f"{b:.2f}" for b in first["class_average_bits"]) + "."]
    if args.plot:
        _plot(results, args.plot, _seed_reports(args, "cascade-dqt"))
        relative = os.path.relpath(args.plot, os.path.dirname(os.path.abspath(args.results)))
        body += ["", f"![Accuracy against BitOPs]({relative})"]
    if args.choices_plot and dynamic_runs:
        _plot_choices(results, args.choices_plot)
        relative = os.path.relpath(args.choices_plot,
                                   os.path.dirname(os.path.abspath(args.results)))
        body += ["", f"![Per-image bit choices]({relative})"]
    diagnosis_path = os.path.join(args.store, "diagnose-dqt-seed0.json")
    if os.path.exists(diagnosis_path):
        with open(diagnosis_path) as file:
            layers = json.load(file)["layers"].values()
        mean = max(abs(m) for row in layers for m in row["mean_advantage"])
        spread = statistics.mean(s for row in layers for s in row["per_image_std"])
        best = max(r for row in layers for key in ("r2_from_features", "r2_from_loss")
                   for r in row[key])
        corr = max(abs(row["controller_correlation"]) for row in layers)
        body += ["", "### Can a controller tell which images need which widths?", "",
                 f"`python -m train.diagnose runs/bench-train/dqt-seed0/checkpoint.pt --json "
                 f"{diagnosis_path}` measures, on 2000 test images, each image's loss with one "
                 f"controlled layer at each candidate and the others as chosen. The advantage "
                 f"of a width over the others averages at most {mean:.4f} nats per layer (what "
                 f"one choice per layer can use), while it varies from image to image with a "
                 f"standard deviation of {spread:.4f} nats on average; but that per-image part "
                 f"is not predictable: its correlation with the trained controller's logits is "
                 f"at most {corr:.3f}, and the best held-out R^2 of a ridge regression from the "
                 f"controller's pooled features, or even from the image's own loss, is "
                 f"{best:.3f}. The image-to-image differences are the luck of the quantization "
                 f"noise, which is also what the oracle exploits; a controller can only learn "
                 f"the per-layer means, so its choices are nearly the same for every image."]
    body += _per_width_section(args)
    body += _whole_image_section(args, results)
    if step:
        seconds, ratio = step["seconds_per_step"], step["ratio_to_fp32"]
        body += ["", "### Training step time", "",
                 f"CPU seconds per step (batch {step['batch_size']}, mean of "
                 f"{step['rounds']} interleaved rounds, `python -m train.bench --step-time`); "
                 f"the DQT run's mean weights its phases by their share of the steps "
                 f"({', '.join(f'{p} {100 * s:.0f} %' for p, s in step['phase_share'].items())}"
                 f").", "", "| step | ms | x FP32 |", "|---|---|---|"]
        for kind in seconds:
            body.append(f"| {kind} | {1000 * seconds[kind]:.1f} | {ratio[kind]:.2f} |")
    body += ["", "### Goals of issue 13", ""] + _goals(results, step)
    full = any_run["train_images"] >= 60000 and any_run["epochs"] >= 10 and len(seeds) >= 2
    if not full:
        body += ["", "Scope: below the issue's scale (60000 training images, at least 10 "
                     "epochs, two seeds): `python -m train.bench` runs that scale."]
    body += ["", "### Commands", "", "```"] + commands + ["```", ""]
    lines = _results_lines(args)
    start = lines.index(SECTION) + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("## ")), len(lines))
    lines[start:end] = body
    write_atomic(args.results, "\n".join(lines))


def _results_lines(args):
    """The results file's lines; a new file is a title and the section heading. A file
    without the heading is refused (the benchmark checks this before it trains)."""
    if not os.path.exists(args.results):
        folder = os.path.dirname(args.results) or "."
        if not os.path.isdir(folder):
            raise ValueError(f"{args.results}: folder {folder} does not exist")
        return [f"# Training benchmark (width {args.width})", "", SECTION, ""]
    with open(args.results) as file:
        lines = file.read().split("\n")
    if SECTION not in lines:
        raise ValueError(f"{args.results} has no line {SECTION!r}")
    return lines


def _order(names, seeds):
    for group in GROUPS:
        for seed in seeds:
            for name in group:
                if name in names:
                    yield name, seed


def main(argv=None):
    args = _parser().parse_args(argv)
    # Import every train module now (after --help, which needs none), so that editing the
    # sources while a long benchmark runs cannot change the code its later runs use.
    from . import budget, dynamic, integerize, model, quant  # noqa: F401
    from . import checkpoint, data
    from .metrics import integer_metrics
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
        names = [name.strip() for name in args.runs.split(",") if name.strip()]
        unknown = [name for name in names if name not in RUNS]
        if unknown or not seeds:
            raise ValueError(f"unknown run(s) {', '.join(unknown)}; known: {', '.join(RUNS)}"
                             if unknown else "`seeds` must not be empty")
        _results_lines(args)            # a results file it cannot update: refused now
        step_path = os.path.join(args.store, "step-time.json")
        if args.step_time:
            print("measuring training step times (a few minutes)", flush=True)
            os.makedirs(args.store, exist_ok=True)
            write_json_atomic(step_path, step_times(width=args.width))
        results, commands = {}, []
        started = time.time()
        code = _code_version()          # the code this process imported, not a later edit
        for name, seed in _order(names, seeds):
            folder = os.path.join(args.out, f"{name}-seed{seed}")
            config = _run_config(args, name, seed, folder)
            stored_path = os.path.join(args.store, f"{name}-seed{seed}.json")
            stored = _stored(stored_path, config)
            if stored is None and not (args.report_only or args.step_time):
                os.makedirs(folder, exist_ok=True)
                log = _Log(os.path.join(folder, "train.log"))
                print(f"[{time.time() - started:7.0f} s] {name} seed {seed}", flush=True)
                _, stored = train(config, log=log)
                stored["settings"] = settings(config)
                stored["code"] = code
                os.makedirs(args.store, exist_ok=True)
                write_json_atomic(stored_path, stored)
            if stored is not None and args.refresh_integer and "integer_accuracy" in stored:
                net, _ = checkpoint.load_model(os.path.join(folder, "checkpoint.pt"))
                images, labels = data.load_dataset("fashion-mnist", "test")
                print(f"re-measuring the integer emulation of {folder}", flush=True)
                stored.update(integer_metrics(net, images, labels))
                write_json_atomic(stored_path, stored)
            if stored is not None:
                results.setdefault(name, []).append(stored)
                commands.append(_command(args, name, config))
        if not results:
            raise ValueError(f"no finished runs in {args.store}; run without --report-only")
        step = None
        if os.path.exists(step_path):
            with open(step_path) as file:
                step = json.load(file)
        given = [a for a in (argv if argv is not None else sys.argv[1:])
                 if a not in ("--report-only", "--refresh-integer", "--step-time")]
        commands.insert(0, " ".join(["python -m train.bench"] + given))
        if step:
            commands.insert(1, "python -m train.bench --step-time")
        write_section(args, results, commands, step)
        print(f"wrote {args.results} ({SECTION}) after {time.time() - started:.0f} s",
              flush=True)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
