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
controller can then do no better than one choice per layer. Writes a JSON report with
``--json``.
"""

import argparse
import json
import sys

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["measure_advantages", "heldout_r2", "diagnose", "main"]


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


def _parser():
    parser = argparse.ArgumentParser(prog="python -m train.diagnose",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="checkpoint.pt of a dqt or dqnet run")
    parser.add_argument("--images", type=int, default=2000,
                        help="first N test images (default 2000)")
    parser.add_argument("--batch", type=int, default=250,
                        help="images per batch (their batch-norm statistics; default 250)")
    parser.add_argument("--json", help="write the report here too")
    return parser


def main(argv=None):
    args = _parser().parse_args(argv)
    from dqt_hw.atomic import write_atomic
    from .checkpoint import load_model
    from .data import DatasetError, load_dataset
    try:
        if args.images < 4 or args.batch < 2:
            raise ValueError("`images` must be at least 4 and `batch` at least 2")
        model, config = load_model(args.checkpoint)
        if not model.dynamic:
            raise ValueError(f"{args.checkpoint} is a {model.mode} model; only dqt and dqnet "
                             f"models have a controller to diagnose")
        images, labels = load_dataset(config["dataset"], "test")
        report = diagnose(model, images[:args.images], labels[:args.images], args.batch)
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
    if args.json:
        write_atomic(args.json, json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
