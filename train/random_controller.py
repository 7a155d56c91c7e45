"""A test article for the hardware: a DQT checkpoint whose controller output layer is random.

    python -m train.random_controller runs/digits-dqt/checkpoint.pt --dataset digits \
        --out runs/digits-dqt-randctrl.pt [--seed 0] [--std 0.5]

The trained controller of a DQT model may pick one candidate for nearly every image (see
docs/results.md); hardware tests need the opposite: choices that change from image to image in
most controlled layers, so that precision switches between consecutive images are exercised.
This replaces `ctrl_fc2` by normal weights (std `--std`, seed `--seed`) and sets its bias to
minus the mean of those random scores over the first 512 training images, so that every
candidate wins for some images. The model is otherwise unchanged; its accuracy drops with the
random choices (it is not a trained controller). Integer export and emulation work as for any
checkpoint.
"""

import argparse
import sys

__all__ = ["randomize_controller", "main"]


def randomize_controller(model, codes, *, seed=0, std=0.5):
    """Replace `model.ctrl_fc2` in place (see the module docstring); `codes` (N, C, H, W)
    master codes calibrate the bias."""
    import torch
    if not model.dynamic:
        raise ValueError("the model has no controller (train it with --mode dqt)")
    generator = torch.Generator().manual_seed(seed)
    model.eval()
    with torch.no_grad():
        layer = model.ctrl_fc2
        layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator) * std)
        layer.bias.zero_()
        act = model.stem.run(model.input_activation(torch.as_tensor(codes)), model.master_bits)
        scores = model.controller(act).flatten(1)      # (N, L * K), the bias still zero
        layer.bias.copy_(-scores.mean(dim=0))
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m train.random_controller",
                                     description=__doc__.split("\n\n")[2])
    parser.add_argument("checkpoint", help="a dqt checkpoint (train.fit --mode dqt)")
    parser.add_argument("--dataset", required=True, choices=("digits", "fashion-mnist"))
    parser.add_argument("--out", required=True, help="the new checkpoint (.pt)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--std", type=float, default=0.5)
    args = parser.parse_args(argv)
    from pathlib import Path
    if not Path(args.checkpoint).is_file():
        print(f"error: {args.checkpoint}: no such file", file=sys.stderr)
        return 2
    if Path(args.out).exists():
        print(f"error: {args.out} exists; choose another --out", file=sys.stderr)
        return 2
    from .checkpoint import load_checkpoint, load_model, save_checkpoint
    from .data import load_dataset, to_master_codes
    model, config = load_model(args.checkpoint)
    images, _ = load_dataset(args.dataset, "train")
    codes = to_master_codes(images[:512], model.master_bits)
    try:
        randomize_controller(model, codes, seed=args.seed, std=args.std)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    save_checkpoint(args.out, model, config, load_checkpoint(args.checkpoint)["metrics"])
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
