"""A precision cascade on a dynamic model: ``python -m train.cascade CKPT``.

The per-image signal that `train.diagnose --routing` finds is the network's own output at a
low width, not anything a controller sees before it runs. A cascade uses it: every image
first runs with every controlled layer at the low width; an image whose logit margin (top
logit minus the runner-up, on the trained model's float logits; the exported package's
cascade, `dqt_hw.eval`, compares integer logits) is below a threshold runs again at the high
width, and that second answer counts. The same stored weights serve both passes (the low
width is nested in the master codes), so only the shift amounts change between them.

The threshold for a target fraction f of images run twice is the margin of
``--threshold-images`` training images (never the test images) that f of them lie below, by
the rule of the integer package's cascade (`dqt_hw.eval.margin_threshold`: the k-th smallest,
k = floor(f N)). Each pass counts its full BitOPs (`train.metrics.bitops`, the controller's
layers included although the cascade does not use them), so a cascade's BitOPs per image are
those of the low pass plus the realized fraction times those of the high pass. Batch norm:
the model's shared statistics (what the exported package holds today) and, for comparison,
statistics recalibrated at each width (`train.metrics.recalibrated_bn`, which would need
per-width constants in the package). Writes a JSON report with ``--json``.
"""

import argparse
import contextlib
import itertools
import json
import sys

__all__ = ["FRACTIONS", "cascade_report", "main"]

#: Target fractions of images that run a second time.
FRACTIONS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4)
#: Training images whose margins set the thresholds.
THRESHOLD_IMAGES = 10000


def _logits(model, images, bits, batch_size=500):
    import torch
    from .data import to_master_codes
    from .metrics import batches
    model.eval()
    parts = []
    with torch.no_grad():
        for rows in batches(len(images), batch_size):
            codes = to_master_codes(torch.from_numpy(images[rows]), model.master_bits)
            parts.append(model(codes, bits=bits)["logits"])
    return torch.cat(parts).double()


def _margin(logits):
    top = logits.topk(2, dim=1).values
    return top[:, 0] - top[:, 1]


def cascade_report(model, images, labels, threshold_images, calibration_images,
                   fractions=FRACTIONS):
    """The report of the module doc (a dict) for every pair of candidate widths low < high."""
    import torch
    from dqt_hw.eval import margin_threshold
    from .metrics import bitops, evaluate, recalibrated_bn, w8a8_bitops
    candidates = sorted(model.config.candidates)
    target = torch.from_numpy(labels)
    reference = w8a8_bitops(model)
    layers = len(model.controlled)
    own = evaluate(model, images, labels)          # the controller's choices, for reference
    report = {"images": len(images), "threshold_images": len(threshold_images),
              "candidates": candidates,
              "controller": {"accuracy": own["accuracy"],
                             "bitops_relative_w8a8": own["bitops_relative_w8a8"]},
              "batch_norm": {}}
    for norm in ("shared", "recalibrated"):
        test, train = {}, {}
        for b in candidates:
            context = (recalibrated_bn(model, calibration_images, b) if norm == "recalibrated"
                       else contextlib.nullcontext())
            with context:
                test[b] = _logits(model, images, b)
                train[b] = _logits(model, threshold_images, b)
        right = {b: test[b].argmax(dim=1) == target for b in candidates}
        cost = {b: bitops(model, torch.full((1, layers), b)) for b in candidates}
        entry = {"fixed": {str(b): {"accuracy": float(right[b].double().mean()),
                                    "bitops_relative_w8a8": cost[b] / reference}
                           for b in candidates},
                 "cascades": []}
        for low, high in itertools.combinations(candidates, 2):
            margins, train_margins = _margin(test[low]), _margin(train[low])
            for fraction in fractions:
                threshold = float(margin_threshold(train_margins.numpy(), fraction))
                again = margins < threshold
                share = float(again.double().mean())
                accuracy = float(torch.where(again, right[high], right[low]).double().mean())
                entry["cascades"].append({
                    "low": low, "high": high, "target_fraction": fraction,
                    "threshold": threshold, "run_twice": share, "accuracy": accuracy,
                    "bitops_relative_w8a8": (cost[low] + share * cost[high]) / reference})
        report["batch_norm"][norm] = entry
    return report


def _parser():
    parser = argparse.ArgumentParser(prog="python -m train.cascade",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="checkpoint.pt of a dqt or dqnet run")
    parser.add_argument("--threshold-images", type=int, default=THRESHOLD_IMAGES,
                        help=f"training images that set the thresholds "
                             f"(default {THRESHOLD_IMAGES})")
    parser.add_argument("--json", help="write the report here too")
    return parser


def main(argv=None):
    args = _parser().parse_args(argv)
    from dqt_hw.atomic import write_atomic
    from .checkpoint import load_model
    from .data import DatasetError, load_dataset
    from .metrics import CALIBRATION_IMAGES
    try:
        if args.threshold_images < 10:
            raise ValueError("`threshold-images` must be at least 10")
        model, config = load_model(args.checkpoint)
        if not model.dynamic:
            raise ValueError(f"{args.checkpoint} is a {model.mode} model; a cascade needs a "
                             f"model trained at several widths (dqt or dqnet)")
        images, labels = load_dataset(config["dataset"], "test")
        train_images, _ = load_dataset(config["dataset"], "train")
        report = cascade_report(model, images, labels, train_images[-args.threshold_images:],
                                train_images[:CALIBRATION_IMAGES])
    except (ValueError, DatasetError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    report["checkpoint"] = str(args.checkpoint)
    own = report["controller"]
    print(f"the controller's choices: {100 * own['accuracy']:.2f} % at "
          f"{own['bitops_relative_w8a8']:.3f} x W8A8")
    for norm, entry in report["batch_norm"].items():
        print(f"batch norm {norm}: every layer at "
              + ", ".join(f"{b} bits {100 * f['accuracy']:.2f} % "
                          f"({f['bitops_relative_w8a8']:.3f} x W8A8)"
                          for b, f in entry["fixed"].items()))
        for row in entry["cascades"]:
            print(f"  {row['low']} -> {row['high']}, {100 * row['run_twice']:5.1f} % run twice: "
                  f"{100 * row['accuracy']:.2f} % at {row['bitops_relative_w8a8']:.3f} x W8A8")
    if args.json:
        write_atomic(args.json, json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
