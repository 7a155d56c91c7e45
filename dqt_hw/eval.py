"""Run an integer model package with the golden interpreter over a test set.

    python -m dqt_hw.eval DIR --dataset {digits,fashion-mnist} [--compare CHECKPOINT]

Reports top-1 accuracy, the distribution of chosen bit-widths per layer, average bits, BitOPs
and images/second. With `--compare`, the checkpoint's PyTorch model also runs in its integer
emulation mode on the same master codes and the report gives the fraction of images whose
logits, prediction and bit choices are identical to the package's, plus the float
(fake-quant) top-1 of the same model.

With `--cascade LOW,HIGH` it also runs the package as a precision cascade: every image with
every dynamic-precision layer at LOW bits, then again at HIGH bits for the images whose logit
margin (top logit minus the runner-up) is below a threshold, set by `--margin` or as the
`--share` quantile of the margins of training images; the second answer counts.

Definitions (docs/export-format.md §Evaluation):
- BitOPs of one image = sum over every conv2d/linear layer (the controller's included) of
  MACs x b_a x b_w, where b_a = b_w = the layer's bit-width for that image; "relative to
  W8A8" divides by the backbone's sum of MACs x 8 x 8 (the same network without a
  controller, every layer at 8 bits). The controller's share is also reported on its own.
- Average bits = mean over images and the package's controlled layers (the variable-precision
  ones; the stem and classifier always run at n bits) of b, each layer counting once;
  "MAC-weighted" weights each layer by its MACs.
"""

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .golden import run_graph
from .package import layer_bits, layer_ops, load_package, run_cli

__all__ = ["DATASETS", "CASCADE_THRESHOLD_IMAGES", "load_test_set", "run_package",
           "bit_statistics", "agreement", "logit_margin", "margin_threshold", "cascade_margin",
           "check_cascade_package",
           "run_cascade", "add_cascade_arguments", "cascade_arguments",
           "evaluate", "main"]

DATASETS = ("digits", "fashion-mnist")
#: Training images (the last ones of the split) whose margins set a cascade's threshold.
CASCADE_THRESHOLD_IMAGES = 10000


def load_test_set(name, master_bits, input_shape, split="test"):
    """(master codes (N, *input_shape) int64, labels (N,) int64) of a dataset's test split
    (or its training split, for `split="train"`).

    Uses the training code's loader and its image-to-code mapping (`train.data`), so the
    package sees exactly the codes the PyTorch model was trained and compared on.
    """
    if name not in DATASETS:
        raise ValueError(f"`--dataset` must be one of {', '.join(DATASETS)}, not {name!r}")
    from train.data import load_dataset, to_master_codes
    images, labels = load_dataset(name, split)
    codes = np.asarray(to_master_codes(images, master_bits))
    if tuple(codes.shape[1:]) != tuple(input_shape):
        raise ValueError(f"the package expects images of shape {list(input_shape)} but "
                         f"{name} gives {list(codes.shape[1:])}; evaluate it on the dataset "
                         f"it was trained on")
    return codes.astype(np.int64), np.asarray(labels, dtype=np.int64)


def run_package(graph, codes, *, batch_size=500, progress=True, desc="golden"):
    """Run the golden interpreter over `codes` in batches.

    Returns (logits (N, classes), {layer: bits (N,)}, images per second). Only the time spent
    in `run_graph` counts towards the rate.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer, not {batch_size!r}")
    input_name = next(iter(graph["inputs"]))
    logits, chosen = [], {op["name"]: [] for op in layer_ops(graph)}
    elapsed = 0.0
    with tqdm(total=len(codes), desc=desc, unit="img", disable=not progress,
              file=sys.stderr) as bar:
        for start in range(0, len(codes), batch_size):
            batch = codes[start:start + batch_size]
            began = time.perf_counter()
            env = run_graph(graph, {input_name: batch}, keep_all=True)
            elapsed += time.perf_counter() - began
            logits.append(env["logits"])
            for name, bits in layer_bits(graph, env, len(batch)).items():
                chosen[name].append(bits)
            bar.update(len(batch))
    rate = len(codes) / elapsed if elapsed > 0 else float("inf")
    return (np.concatenate(logits), {k: np.concatenate(v) for k, v in chosen.items()}, rate)


def bit_statistics(manifest, chosen):
    """Per-layer bit histograms, average bits and BitOPs from per-image layer bit-widths.

    `chosen` maps every conv2d/linear op name to the (N,) bit-widths it ran at. BitOPs count
    every conv2d/linear layer, the controller's included; W8A8 is the backbone alone at 8 x 8.
    Average bits are taken over the package's `controlled_layers`.
    """
    notes = {op["name"]: op["hw"] for op in manifest["ops"]}
    backbone = [name for name in chosen if notes[name]["role"] == "backbone"]
    controller = [name for name in chosen if notes[name]["role"] == "controller"]
    controlled = manifest["controlled_layers"]
    macs = {name: float(notes[name]["macs"]) for name in chosen}
    histogram = {}
    for name in backbone:
        widths, counts = np.unique(chosen[name], return_counts=True)
        histogram[name] = {str(int(w)): int(c) for w, c in zip(widths, counts)}

    def per_image_bitops(names):
        return sum(macs[name] * chosen[name].astype(np.float64) ** 2 for name in names)

    bitops = float(np.mean(per_image_bitops(backbone + controller)))
    w8a8 = 64 * sum(macs[name] for name in backbone)
    bits = np.stack([chosen[name] for name in controlled], axis=1).astype(np.float64)
    weights = np.array([macs[name] for name in controlled])
    return {
        "layer_bits": histogram,
        "average_bits": float(bits.mean()),
        "average_bits_mac_weighted": float((bits * weights).sum(axis=1).mean() / weights.sum()),
        "bitops": bitops,
        "bitops_w8a8": w8a8,
        "bitops_relative_w8a8": bitops / w8a8,
        "controller_bitops": float(np.mean(per_image_bitops(controller))) if controller
        else 0.0,
        "backbone_macs": int(sum(macs[name] for name in backbone)),
    }


def logit_margin(logits):
    """Top logit minus the runner-up, per image (int64: an integer comparison)."""
    top = np.sort(np.asarray(logits, dtype=np.int64), axis=1)
    return top[:, -1] - top[:, -2]


def margin_threshold(margins, share):
    """The threshold below which a share `share` of `margins` lies: the k-th smallest margin,
    k = floor(share N) (a margin strictly below it runs twice), or one above the largest.
    Integer margins give an integer; `train.cascade` applies the same rule to float ones."""
    ordered = np.sort(np.asarray(margins))
    k = int(np.floor(share * len(ordered)))
    return ordered[k].item() if k < len(ordered) else ordered[-1].item() + 1


def _pass_bitops(manifest, graph):
    """bit_statistics of one image of a graph whose layers all have fixed widths."""
    chosen = {op["name"]: np.array([op["bits"]], np.int64) for op in layer_ops(graph)}
    return bit_statistics(manifest, chosen)


def check_cascade_package(graph, where):
    """Refuse a graph without dynamic-precision layers: both passes would be the same."""
    if not any(isinstance(op["bits"], dict) for op in layer_ops(graph)):
        raise ValueError(f"{where}: the package has no dynamic-precision layers; a cascade "
                         f"needs a model trained at several widths")


def run_cascade(graph, codes, low, high, threshold, *, batch_size=500, progress=True):
    """(logits (N, classes), run twice (N,) bool): every image with every dynamic layer at
    `low` bits, then the images whose logit margin is below `threshold` at `high` bits."""
    from .package import pin_bits
    logits, _, _ = run_package(pin_bits(graph, low), codes, batch_size=batch_size,
                               progress=progress, desc=f"cascade {low} bits")
    again = logit_margin(logits) < threshold
    if again.any():
        logits = logits.copy()
        logits[again] = run_package(pin_bits(graph, high), codes[again],
                                    batch_size=batch_size, progress=progress,
                                    desc=f"cascade {high} bits")[0]
    return logits, again


def cascade_margin(graph, dataset, low, share, *, batch_size=500, progress=True):
    """(threshold, training images used): the margin below which a share `share` of the last
    CASCADE_THRESHOLD_IMAGES training images lies with every dynamic layer at `low` bits."""
    from .package import pin_bits
    input_shape = next(iter(graph["inputs"].values()))["shape"]
    train_codes, _ = load_test_set(dataset, graph["master_bits"], input_shape, split="train")
    train_codes = train_codes[-CASCADE_THRESHOLD_IMAGES:]
    train_logits = run_package(pin_bits(graph, low), train_codes, batch_size=batch_size,
                               progress=progress, desc="cascade threshold")[0]
    return margin_threshold(logit_margin(train_logits), share), len(train_codes)


def _cascade_report(graph, manifest, dataset, codes, labels, cascade, *, batch_size,
                    progress):
    from .package import pin_bits
    low, high, share, margin = cascade
    report = {"low": low, "high": high}
    if margin is None:
        margin, count = cascade_margin(graph, dataset, low, share, batch_size=batch_size,
                                       progress=progress)
        report.update(share=share, threshold_images=count)
    logits, again = run_cascade(graph, codes, low, high, margin, batch_size=batch_size,
                                progress=progress)
    low_pass = _pass_bitops(manifest, pin_bits(graph, low))
    high_pass = _pass_bitops(manifest, pin_bits(graph, high))
    bitops = low_pass["bitops"] + float(again.mean()) * high_pass["bitops"]
    report.update(margin_threshold=margin, run_twice=float(again.mean()),
                  top1=float(np.mean(logits.argmax(1) == labels)), bitops=bitops,
                  bitops_relative_w8a8=bitops / low_pass["bitops_w8a8"])
    return report


def _identical_rows(package, reference, what):
    """Fraction of images (rows) whose entries are all equal in both arrays."""
    reference = np.asarray(reference)
    if reference.shape != package.shape:
        raise ValueError(f"reference {what} have shape {reference.shape}, the package gives "
                         f"{package.shape}")
    return float(np.mean(np.all(package == reference, axis=1)))


def agreement(logits, chosen, reference_logits, reference_bits):
    """Fractions of images with identical logits, predictions and bit choices.

    `chosen` and `reference_bits` are (N, controlled layers) in controller-table order, or None
    for a static model (then the bit-choice rate is None: there is no choice to compare).
    """
    identical = _identical_rows(logits, reference_logits, "logits")
    reference_logits = np.asarray(reference_logits)
    return {
        "logits_identical": identical,
        "predictions_identical": float(np.mean(logits.argmax(1) == reference_logits.argmax(1))),
        "bits_identical": (None if reference_bits is None and chosen is None else
                           _identical_rows(chosen, reference_bits, "bit choices")),
    }


def controlled_bits(manifest, chosen):
    """(N, controlled layers) bit-widths in controller-table order, or None when static."""
    if not manifest.get("controller"):
        return None
    return np.stack([chosen[t["layer"]] for t in manifest["controller"]["tables"]], axis=1)


def evaluate(package_dir, dataset, *, compare=None, batch_size=500, limit=None,
             progress=True, cascade=None):
    """Everything `python -m dqt_hw.eval` reports, as a JSON-ready dict. `cascade`: None or
    (low, high, share, margin), margin None to set it from `share`."""
    graph, manifest = load_package(package_dir)
    if cascade is not None:
        check_cascade_package(graph, package_dir)
    if "logits" not in graph["outputs"]:
        raise ValueError(f"{package_dir}: the package has no 'logits' output "
                         f"(outputs: {graph['outputs']})")
    input_shape = next(iter(manifest["inputs"].values()))["shape"]
    codes, labels = load_test_set(dataset, manifest["master_bits"], input_shape)
    if limit is not None:
        codes, labels = codes[:limit], labels[:limit]
    logits, chosen, rate = run_package(graph, codes, batch_size=batch_size, progress=progress)
    report = {"package": str(package_dir), "dataset": dataset, "images": int(len(labels)),
              "top1": float(np.mean(logits.argmax(1) == labels)),
              "images_per_second": rate, **bit_statistics(manifest, chosen)}
    if compare is not None:
        from .torch_reference import run_checkpoint
        reference = run_checkpoint(compare, codes, batch_size=batch_size, progress=progress)
        report["compare"] = {
            "checkpoint": str(compare),
            **agreement(logits, controlled_bits(manifest, chosen), reference["logits"],
                        reference["bits"]),
            "emulation_top1": float(np.mean(reference["logits"].argmax(1) == labels)),
            "float_top1": float(np.mean(reference["float_logits"].argmax(1) == labels)),
        }
        report["compare"]["integer_minus_float_top1"] = (report["top1"]
                                                         - report["compare"]["float_top1"])
        # How often the float fake-quant model decides like the integer package (informative;
        # the float path rounds the same codes but its requantizers and argmax run in float).
        report["compare"]["float_predictions_identical"] = float(
            np.mean(logits.argmax(1) == reference["float_logits"].argmax(1)))
        report["compare"]["float_bits_identical"] = (
            None if reference["float_bits"] is None else
            _identical_rows(controlled_bits(manifest, chosen), reference["float_bits"],
                            "float bit choices"))
        digest = hashlib.sha256(Path(compare).read_bytes()).hexdigest()
        report["compare"]["exported_from_this_checkpoint"] = (
            manifest.get("metadata", {}).get("checkpoint_sha256") == digest)
    if cascade is not None:
        report["cascade"] = _cascade_report(graph, manifest, dataset, codes, labels, cascade,
                                            batch_size=batch_size, progress=progress)
    return report


def format_report(report):
    """The report as Markdown lines for a terminal or docs/results.md."""
    lines = [f"package {report['package']} on {report['dataset']} "
             f"({report['images']} test images)",
             f"top-1: {100 * report['top1']:.2f} %",
             f"average bits (controlled layers): {report['average_bits']:.3f} per layer, "
             f"{report['average_bits_mac_weighted']:.3f} MAC-weighted",
             f"BitOPs: {report['bitops'] / 1e6:.3f} M per image = "
             f"{100 * report['bitops_relative_w8a8']:.2f} % of W8A8 "
             f"({report['bitops_w8a8'] / 1e6:.3f} M), of which controller "
             f"{report['controller_bitops'] / 1e6:.3f} M",
             f"speed: {report['images_per_second']:.0f} images/s (golden interpreter, "
             f"single process)",
             "bit-widths per layer (images):"]
    for name, histogram in report["layer_bits"].items():
        lines.append(f"  {name}: " + ", ".join(f"{b} bits: {n}" for b, n in histogram.items()))
    if "compare" in report:
        c = report["compare"]
        bits = "n/a (static)" if c["bits_identical"] is None else \
            f"{100 * c['bits_identical']:.2f} %"
        lines += [f"compare with {c['checkpoint']} (PyTorch integer emulation"
                  + ("" if c["exported_from_this_checkpoint"] else
                     "; WARNING: the package was not exported from this checkpoint") + "):",
                  f"  identical logits: {100 * c['logits_identical']:.2f} %",
                  f"  identical predictions: {100 * c['predictions_identical']:.2f} %",
                  f"  identical bit choices: {bits}",
                  f"  emulation top-1 {100 * c['emulation_top1']:.2f} %, float (fake-quant) "
                  f"top-1 {100 * c['float_top1']:.2f} %, integer - float "
                  f"{100 * c['integer_minus_float_top1']:+.2f} pp",
                  f"  float model: same prediction as the package for "
                  f"{100 * c['float_predictions_identical']:.2f} % of images"
                  + ("" if c["float_bits_identical"] is None else
                     f", same bit choices for {100 * c['float_bits_identical']:.2f} %")]
    if "cascade" in report:
        c = report["cascade"]
        rule = (f"the {100 * c['share']:g} % quantile of {c['threshold_images']} training "
                f"images" if "share" in c else "given")
        lines.append(f"cascade {c['low']} -> {c['high']} bits, margin threshold "
                     f"{c['margin_threshold']} ({rule}): {100 * c['run_twice']:.2f} % of the "
                     f"images run twice, top-1 {100 * c['top1']:.2f} %, BitOPs "
                     f"{100 * c['bitops_relative_w8a8']:.2f} % of W8A8")
    return "\n".join(lines)


def add_cascade_arguments(parser, verb):
    """--cascade, --share and --margin (`dqt_hw.eval`, `dqt_hw.run`)."""
    parser.add_argument("--cascade", metavar="LOW,HIGH",
                        help=f"{verb} a precision cascade: every image at LOW bits, again at "
                             f"HIGH bits when its logit margin is below the threshold")
    parser.add_argument("--share", type=float,
                        help="cascade threshold: the margin below which this share of the last "
                             f"{CASCADE_THRESHOLD_IMAGES} training images lies (default 0.2)")
    parser.add_argument("--margin", type=int,
                        help="cascade threshold as an integer logit margin (instead of --share)")


def cascade_arguments(args):
    """(low, high, share, margin) from --cascade/--share/--margin, or None."""
    if args.cascade is None:
        if args.share is not None or args.margin is not None:
            raise ValueError("`--share` and `--margin` need `--cascade LOW,HIGH`")
        return None
    try:
        low, high = (int(item) for item in args.cascade.split(","))
    except ValueError:
        raise ValueError(f"`--cascade` must be two bit-widths LOW,HIGH, not "
                         f"{args.cascade!r}") from None
    if not 2 <= low < high <= 8:
        raise ValueError(f"`--cascade` needs 2 <= LOW < HIGH <= 8, not {low},{high}")
    if args.share is not None and args.margin is not None:
        raise ValueError("give `--share` or `--margin`, not both")
    share = 0.2 if args.share is None else args.share
    if not 0 <= share <= 1:
        raise ValueError(f"`--share` must be between 0 and 1, not {share}")
    return low, high, (None if args.margin is not None else share), args.margin


def _write_json(path, report):
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(report, indent=1) + "\n")
    temporary.replace(path)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m dqt_hw.eval",
        description="Run an integer model package with the golden interpreter over a test set "
                    "and report accuracy, bit-widths, BitOPs and speed.")
    parser.add_argument("package", metavar="DIR", help="package written by dqt_hw.export")
    parser.add_argument("--dataset", required=True, choices=DATASETS,
                        help="test set to run (the one the model was trained on)")
    parser.add_argument("--compare", metavar="CHECKPOINT",
                        help="also run this checkpoint's PyTorch integer emulation and report "
                             "identical logits / predictions / bit choices")
    parser.add_argument("--batch-size", type=int, default=500, help="images per golden run")
    parser.add_argument("--limit", type=int, help="evaluate only the first N test images")
    add_cascade_arguments(parser, "also run")
    parser.add_argument("--json", metavar="FILE", help="also write the report as JSON")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        raise ValueError(f"`--batch-size` must be a positive integer, not {args.batch_size}")
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"`--limit` must be a positive integer, not {args.limit}")
    if args.compare is not None and not Path(args.compare).is_file():
        raise ValueError(f"{args.compare}: no such checkpoint file")      # before any work
    cascade = cascade_arguments(args)
    report = evaluate(args.package, args.dataset, compare=args.compare,
                      batch_size=args.batch_size, limit=args.limit,
                      progress=not args.no_progress, cascade=cascade)
    print(format_report(report))
    if args.json:
        _write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
