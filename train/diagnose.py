"""Can a controller tell which images need which widths? ``python -m train.diagnose CKPT``.

For a trained dynamic checkpoint and the first ``--images`` test images, measures for every
controlled layer l and candidate k each image's loss with layer l at k and the other layers as
the controller chose (`QResNet.counterfactual`; batch norm uses the statistics of the batch of
``--batch`` test images, replayed), and turns it into the advantage the controller is trained
to predict, A_ilk = mean_k' Q_ilk' - Q_ilk. Then, per layer and candidate:

* the mean advantage over images (what one static choice per layer can use) and the
  per-image standard deviation around it (what a per-image choice could add);
* the correlation of the controller's logits with the per-image part;
* the held-out R^2 (ridge regression fitted on the first half of the images, tested on the
  second) of the per-image part from the controller's own pooled features, and from the
  image's loss at the controller's choices (how hard the image is).

R^2 near 0 (or below) says the per-image differences are not predictable from that input: a
controller can then do no better than one choice per layer.

``--routing`` asks the same question one level up, for a whole image (`image_routing`): every
controlled layer at the lowest or at the highest candidate (batch norm recalibrated per
width), and a signal that ranks the images, sends the riskiest fraction f to the high width
and the rest to the low one. Signals: the controller's own features, the pooled outputs of
each block of the low-width pass (what a controller placed after that block would see), the
low-width pass's confidence (a cascade: it costs that pass) and the true label (a bound for
any signal that knows only the class). Learned signals are fitted on the first half of the
images and scored on the second. At the mean width of the middle candidate, a signal that
beats every layer at that width would make a per-image choice worth having.

``--per-width-bn`` asks whether one batch norm per width would help the controller's own
choices (`per_width_bn_report`): the test accuracy as the controller chooses with the trained
batch norm, with it recalibrated on the controller's choices, and with one set of statistics
per controlled layer and width (`QResNet.per_width_bn`: every calibration image with that
layer at that width, the statistics per-width constants of a package could carry).
Statistics from only the images the controller sends to a width would be confounded with
why it sends them. Writes a JSON report with ``--json``.
"""

import argparse
import json
import sys

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["measure_advantages", "heldout_r2", "diagnose", "image_routing",
           "per_width_bn_report", "main"]


@torch.no_grad()
def measure_advantages(model, images, labels, batch_size=250):
    """(advantages (N, L, K), controller logits (N, L, K), pooled features (N, F), losses (N,))
    of uint8 `images` (see the module doc)."""
    from .data import to_master_codes
    from .model import grid_pool
    candidates = len(model.config.candidates)
    parts = {"advantage": [], "logits": [], "features": [], "loss": []}
    model.train()
    with model.frozen_stats():
        for start in range(0, len(images), batch_size):
            codes = to_master_codes(torch.from_numpy(images[start:start + batch_size]),
                                    model.master_bits)
            target = torch.from_numpy(labels[start:start + batch_size])
            result = model(codes, record=True)
            count = len(target)
            rows = torch.arange(count).repeat(candidates)
            which = torch.arange(candidates).repeat_interleave(count)
            losses = []
            for layer in range(len(model.controlled)):
                logits = model.counterfactual(layer, which, rows)
                loss = F.cross_entropy(logits, target[rows], reduction="none")
                losses.append(loss.view(candidates, count).t())
            losses = torch.stack(losses, dim=1)
            parts["advantage"].append(losses.mean(dim=2, keepdim=True) - losses)
            parts["logits"].append(result["controller_logits"])
            stem = model.stem.run(model.input_activation(codes), model.master_bits)
            parts["features"].append(grid_pool(stem, model.config.controller_grid,
                                               model._pool_bits())[0])
            parts["loss"].append(F.cross_entropy(result["logits"], target, reduction="none"))
    model.eval()
    return tuple(torch.cat(parts[key]).double()
                 for key in ("advantage", "logits", "features", "loss"))


def heldout_r2(inputs, target, ridge=1.0):
    """R^2 on the second half of the rows of a ridge regression (standardized inputs plus a
    constant) fitted on the first half."""
    inputs = (inputs - inputs.mean(0)) / inputs.std(0).clamp(min=1e-9)
    inputs = torch.cat([inputs, torch.ones(len(inputs), 1, dtype=inputs.dtype)], dim=1)
    half = len(target) // 2
    fit, test = slice(0, half), slice(half, None)
    gram = inputs[fit].T @ inputs[fit] + ridge * torch.eye(inputs.shape[1], dtype=inputs.dtype)
    weights = torch.linalg.solve(gram, inputs[fit].T @ target[fit])
    residual = target[test] - inputs[test] @ weights
    return float(1 - (residual ** 2).mean() / ((target[test] - target[fit].mean()) ** 2).mean())


def diagnose(model, images, labels, batch_size=250):
    """The report (a dict) of the module doc."""
    advantage, logits, features, loss = measure_advantages(model, images, labels, batch_size)
    per_image = advantage - advantage.mean(dim=0, keepdim=True)
    guesses = logits - logits.mean(dim=0, keepdim=True)
    layers = {}
    for l, name in enumerate(model.layer_names):
        a, p = per_image[:, l].flatten(), guesses[:, l].flatten()
        layers[name] = {
            "mean_advantage": advantage[:, l].mean(dim=0).tolist(),
            "per_image_std": per_image[:, l].std(dim=0).tolist(),
            "controller_correlation": float(np.corrcoef(a.numpy(), p.numpy())[0, 1]),
            "r2_from_features": [heldout_r2(features, per_image[:, l, k])
                                 for k in range(advantage.shape[2])],
            "r2_from_loss": [heldout_r2(loss.view(-1, 1), per_image[:, l, k])
                             for k in range(advantage.shape[2])]}
    return {"images": len(images), "candidates": list(model.config.candidates),
            "layers": layers}


def _ridge_scores(inputs, target, ridge=1.0):
    """Scores of the second half of the rows from a ridge regression of `target` on `inputs`
    (standardized, plus a constant) fitted on the first half."""
    inputs = (inputs - inputs.mean(0)) / inputs.std(0).clamp(min=1e-9)
    inputs = torch.cat([inputs, torch.ones(len(inputs), 1, dtype=inputs.dtype)], dim=1)
    half = len(target) // 2
    gram = inputs[:half].T @ inputs[:half] + ridge * torch.eye(inputs.shape[1],
                                                              dtype=inputs.dtype)
    return inputs[half:] @ torch.linalg.solve(gram, inputs[:half].T @ target[:half])


def _auc(scores, positive):
    """Probability that a random positive scores above a random negative (ties count half)."""
    order = torch.argsort(torch.argsort(scores)).double() + 1
    count = int(positive.sum())
    if count in (0, len(positive)):
        return float("nan")
    return float((order[positive].sum() - count * (count + 1) / 2)
                 / (count * (len(positive) - count)))


@torch.no_grad()
def image_routing(model, images, labels, calibration_images, fractions=(0.25, 0.5, 0.75),
                  batch_size=500):
    """The whole-image routing report of the module doc (a dict)."""
    from .data import to_master_codes
    from .metrics import batches, recalibrated_bn
    from .model import global_pool, grid_pool
    candidates = sorted(model.config.candidates)
    low, high = candidates[0], candidates[-1]
    target = torch.from_numpy(labels)
    right, confidence, deep, stem_features = {}, None, None, []
    for bits in candidates:
        with recalibrated_bn(model, calibration_images, bits):
            model.eval()
            predictions, probabilities, pooled = [], [], []
            for rows in batches(len(images), batch_size):
                codes = to_master_codes(torch.from_numpy(images[rows]), model.master_bits)
                act = model.stem.run(model.input_activation(codes), model.master_bits)
                if bits == low:
                    stem_features.append(grid_pool(act, model.config.controller_grid,
                                                   model._pool_bits())[0])
                blocks = []
                for block in model.blocks:
                    act = block(act, [bits] * len(block.layers()))
                    blocks.append(global_pool(act, model._pool_bits())[0])
                logits = model.fc.run(global_pool(act, model._pool_bits()),
                                      model.master_bits)[0]
                predictions.append(logits.argmax(dim=1))
                probabilities.append(torch.softmax(logits.double(), dim=1))
                pooled.append(blocks)
            right[bits] = torch.cat(predictions) == target
            if bits == low:
                confidence = torch.cat(probabilities).max(dim=1).values
                deep = [torch.cat([p[i] for p in pooled]).double()
                        for i in range(len(model.blocks))]
    half = len(images) // 2
    test = slice(half, None)
    # Risk of an image at the low width: what a router sends up first.
    need = (~right[low]).double()
    signals = {"controller features": _ridge_scores(torch.cat(stem_features).double(), need)}
    for i, features in enumerate(deep):
        signals[f"block{i} output, low width"] = _ridge_scores(features, need)
    signals["low-width confidence (cascade)"] = -confidence[test]
    signals["true label (class-level bound)"] = _ridge_scores(
        F.one_hot(target, model.config.num_classes).double(), need)
    low_right, high_right = right[low][test], right[high][test]
    gain = high_right & ~low_right                  # images only the high width gets right
    report = {"images": len(images), "scored_images": len(images) - half, "low": low,
              "high": high,
              "fixed_width_accuracy": {str(b): float(right[b][test].double().mean())
                                       for b in candidates},
              "only_high_right": float(gain.double().mean()),
              "only_low_right": float((low_right & ~high_right).double().mean()),
              "signals": {}}
    count = len(low_right)
    for name, scores in signals.items():
        order = torch.argsort(scores, descending=True)
        row = {"auc_wrong_at_low": _auc(scores, ~low_right), "routed": {}}
        for fraction in fractions:
            up = torch.zeros(count, dtype=torch.bool)
            up[order[:round(fraction * count)]] = True
            accuracy = torch.where(up, high_right, low_right).double().mean()
            row["routed"][str(fraction)] = {"mean_bits": low + fraction * (high - low),
                                            "accuracy": float(accuracy)}
        report["signals"][name] = row
    return report


def per_width_bn_report(model, images, labels, calibration_images):
    """Test accuracy (fraction) as the controller chooses, with the trained, the recalibrated
    and the per-width batch norm (module doc)."""
    from .data import to_master_codes
    from .metrics import predict, recalibrated_bn
    target = torch.from_numpy(labels)

    def accuracy():
        return float((predict(model, images)[0] == target).double().mean())

    report = {"calibration_images": len(calibration_images), "trained": accuracy()}
    with recalibrated_bn(model, calibration_images, None):
        report["recalibrated"] = accuracy()
    with model.per_width_bn(to_master_codes(torch.from_numpy(calibration_images),
                                            model.master_bits)):
        report["per_width"] = accuracy()
    return report


def _parser():
    parser = argparse.ArgumentParser(prog="python -m train.diagnose",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="checkpoint.pt of a dqt or dqnet run")
    parser.add_argument("--images", type=int, default=2000,
                        help="first N test images (default 2000)")
    parser.add_argument("--batch", type=int, default=250,
                        help="images per batch (their batch-norm statistics; default 250)")
    parser.add_argument("--routing", action="store_true",
                        help="also the whole-image routing report (every test image; "
                             "see the module doc)")
    parser.add_argument("--per-width-bn", action="store_true",
                        help="also the controller's accuracy with one batch norm per width "
                             "(every test image; see the module doc)")
    parser.add_argument("--json", help="write the report here too")
    return parser


def main(argv=None):
    args = _parser().parse_args(argv)
    from dqt_hw.atomic import write_atomic
    from .checkpoint import load_model
    from .data import DatasetError, load_dataset
    from .metrics import CALIBRATION_IMAGES
    try:
        if args.images < 4 or args.batch < 2:
            raise ValueError("`images` must be at least 4 and `batch` at least 2")
        model, config = load_model(args.checkpoint)
        if not model.dynamic:
            raise ValueError(f"{args.checkpoint} is a {model.mode} model; only dqt and dqnet "
                             f"models have a controller to diagnose")
        images, labels = load_dataset(config["dataset"], "test")
        report = diagnose(model, images[:args.images], labels[:args.images], args.batch)
        if args.routing or args.per_width_bn:
            calibration = load_dataset(config["dataset"], "train")[0][:CALIBRATION_IMAGES]
        if args.routing:
            report["routing"] = image_routing(model, images, labels, calibration)
        if args.per_width_bn:
            report["per_width_bn"] = per_width_bn_report(model, images, labels, calibration)
    except (ValueError, DatasetError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    widths = ", ".join(map(str, report["candidates"]))
    print(f"{report['images']} test images, candidates {widths}; per layer and candidate: "
          f"mean advantage / per-image std; correlation of the controller with the per-image "
          f"part; held-out R^2 of the per-image part from the controller's features and from "
          f"the image's loss")
    for name, row in report["layers"].items():
        print(f"{name:<16} " + " ".join(f"{m:+.4f}/{s:.4f}" for m, s in
                                        zip(row["mean_advantage"], row["per_image_std"]))
              + f"  corr {row['controller_correlation']:+.3f}  R2 features "
              + " ".join(f"{r:+.3f}" for r in row["r2_from_features"]) + "  R2 loss "
              + " ".join(f"{r:+.3f}" for r in row["r2_from_loss"]))
    if args.routing:
        _print_routing(report["routing"])
    if args.per_width_bn:
        bn = report["per_width_bn"]
        print(f"\nas the controller chooses ({len(images)} test images): trained batch norm "
              f"{100 * bn['trained']:.2f} %, recalibrated {100 * bn['recalibrated']:.2f} %, "
              f"one per width {100 * bn['per_width']:.2f} % ({bn['calibration_images']} "
              f"training images)")
    if args.json:
        write_atomic(args.json, json.dumps(report, indent=2) + "\n")
    return 0


def _print_routing(routing):
    low, high = routing["low"], routing["high"]
    fixed = routing["fixed_width_accuracy"]
    print(f"\nwhole-image routing, {routing['scored_images']} scored test images: every layer "
          f"at {low} or at {high} bits; fixed widths "
          + ", ".join(f"{b}: {100 * a:.2f} %" for b, a in fixed.items())
          + f"; right only at {high}: {100 * routing['only_high_right']:.2f} %, only at {low}: "
          f"{100 * routing['only_low_right']:.2f} %")
    for name, row in routing["signals"].items():
        routed = ", ".join(f"{r['mean_bits']:.1f} bits {100 * r['accuracy']:.2f} %"
                           for r in row["routed"].values())
        print(f"{name:<34} AUC {row['auc_wrong_at_low']:.3f}  {routed}")


if __name__ == "__main__":
    sys.exit(main())
