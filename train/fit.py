"""Train one model: ``python -m train.fit --dataset digits --mode dqt --out runs/digits-dqt``.

Writes into ``--out``: ``checkpoint.pt`` (see train.checkpoint; rewritten atomically after
every epoch), ``metrics.json`` (accuracy, integer accuracy, average bits, BitOPs, per-layer bit
histogram, time per epoch, ...; derived from the checkpoint, see train.run) and ``train.log``.
A folder holding anything else is refused unless ``--resume`` (continue an unfinished run) or
``--overwrite`` is given. Run with ``--help`` for every option.

Loss (dqt): J = CE + alpha * sum_{b in K'} CE(every controlled layer at b)
               + beta * cost,   cost = max(0, E[d] - target) (--target, default 4 bits)
or E[d] itself with --target none; E[d] is the controller's expected cost (the mean over
layers and images of sum_k p_k d_k), d_k = b_k (--cost bits) or the layer's BitOPs at b_k
relative to the whole controlled part at n bits (--cost bitops). dqnet uses the same
machinery with alpha = 0, candidates {t-1, t, t+1}, cost bits and the hinge beta = 0.05,
target t.
"""

import argparse
import dataclasses
import json
import math
import os
import signal
import sys
import time

import numpy as np

from dqt_hw.atomic import atomic_file

from . import run
from .data import DATASETS, DatasetError, dataset_info, load_dataset, to_master_codes
from .modes import DYNAMIC_MODES, MODES, NESTED_MODES

# torch, train.model and train.checkpoint are imported where they are used, so that `--help`
# and a refused --out answer without loading torch (seconds on a cold start).

__all__ = ["TrainConfig", "parse_args", "resolve", "train", "evaluate", "main",
           "write_json_atomic"]

COSTS = ("bits", "bitops")


def _field(default, help, **extra):
    return dataclasses.field(default=default, metadata={"help": help, **extra})


@dataclasses.dataclass
class TrainConfig:
    """Every option of a training run (the CLI flags are these names with dashes)."""
    dataset: str = _field("digits", f"dataset: {', '.join(DATASETS)}")
    mode: str = _field("dqt", f"training mode: {', '.join(MODES)} (docs/training.md)")
    out: str = _field(None, "output folder (checkpoint.pt, metrics.json, train.log)")
    epochs: int = _field(10, "training epochs")
    batch_size: int = _field(128, "mini-batch size")
    lr: float = _field(2e-3, "Adam learning rate (cosine decay to 0)")
    weight_decay: float = _field(5e-5, "AdamW weight decay")
    seed: int = _field(0, "seed of weights, data order and Gumbel noise")
    width: int = _field(16, "channels of the first stage (stages: w, 2w, 4w)")
    blocks: str = _field("1,1,1", "residual blocks per stage, three comma-separated counts")
    stem_stride: int = _field(None, "stride of the stem conv (default: 2 for 28x28 images, "
                                    "1 for 8x8)")
    master_bits: int = _field(8, "master width n")
    bits: int = _field(None, "static/lsq: one bit-width for every controlled layer "
                             "(default n for static, 4 for lsq)")
    layer_bits: str = _field(None, "static/lsq: comma-separated bit-width per controlled layer")
    candidates: str = _field(None, "dqt/dqnet: candidate bit-widths (default 2,4,8 for dqt; "
                                   "t-1,t,t+1 for dqnet)")
    alpha: float = _field(None, "dqt: weight of the fixed-precision CE terms (default 1)")
    aux_bits: str = _field(None, "dqt: K', the bit-widths of the fixed-precision CE terms "
                                 "(default: the smallest candidate)")
    beta: float = _field(None, "dqt/dqnet: weight of the cost term (default 1 dqt, 0.05 dqnet)")
    cost: str = _field("bits", f"dqt/dqnet cost d_k: {', '.join(COSTS)}")
    target: float = _field(None, "dqt/dqnet: hinge target of the cost (default 4 bits; "
                                 "'none' for the plain linear cost); dqnet's t")
    tau: float = _field(1.0, "Gumbel-Softmax temperature")
    train_subset: int = _field(0, "train on the first N images of a seeded permutation "
                                  "(0: all)")
    threads: int = _field(1, "torch CPU threads")
    progress: bool = _field(True, "show a progress bar")


def _int_list(name, text):
    items = [item.strip() for item in str(text).split(",") if item.strip()]
    try:
        values = tuple(int(item) for item in items)
    except ValueError:
        raise ValueError(f"`{name}` must be comma-separated integers, not {text!r}") from None
    if not values:
        raise ValueError(f"`{name}` must not be empty: give comma-separated bit-widths")
    return values


def resolve(config):
    """Validate a TrainConfig; return (config with defaults filled in, ModelConfig)."""
    from .model import ModelConfig, build_model
    config = dataclasses.replace(config)
    if config.dataset not in DATASETS:
        raise ValueError(f"unknown dataset {config.dataset!r}; choose one of "
                         f"{', '.join(DATASETS)}")
    if config.mode not in MODES:
        raise ValueError(f"unknown mode {config.mode!r}; choose one of {', '.join(MODES)}")
    if config.cost not in COSTS:
        raise ValueError(f"unknown cost {config.cost!r}; choose one of {', '.join(COSTS)}")
    for name in ("epochs", "batch_size", "width", "master_bits", "threads"):
        value = getattr(config, name)
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name.replace('_', '-')}` must be a positive integer, "
                             f"not {value!r}")
    if config.train_subset < 0:
        raise ValueError(f"`train-subset` must be 0 or positive, not {config.train_subset}")
    for name in ("lr", "tau"):
        if not getattr(config, name) > 0:
            raise ValueError(f"`{name}` must be positive, not {getattr(config, name)!r}")
    n = config.master_bits
    channels, size, classes = dataset_info(config.dataset)
    if config.stem_stride is None:
        config.stem_stride = 2 if size > 16 else 1
    blocks = _int_list("blocks", config.blocks)
    static_bits, candidates = None, (2, 4, 8)
    dynamic = config.mode in DYNAMIC_MODES
    if config.mode in ("static", "lsq"):
        if config.layer_bits is not None and config.bits is not None:
            raise ValueError("give either `bits` or `layer-bits`, not both")
        if config.layer_bits is not None:
            static_bits = _int_list("layer-bits", config.layer_bits)
        else:
            uniform = config.bits if config.bits is not None else (n if config.mode == "static"
                                                                   else 4)
            if not 2 <= uniform <= n:
                raise ValueError(f"`bits` {uniform} is outside [2, {n}] (`master-bits` is {n})")
            static_bits = ("uniform", uniform)
    elif config.bits is not None or config.layer_bits is not None:
        raise ValueError(f"`bits`/`layer-bits` apply to modes static and lsq, not "
                         f"{config.mode!r}")
    if isinstance(config.target, int) and not isinstance(config.target, bool):
        config.target = float(config.target)
    if isinstance(config.target, str) and config.target.lower() != "none":
        try:
            config.target = float(config.target)
        except ValueError:
            raise ValueError(f"`target` must be a number or 'none', not {config.target!r}") \
                from None
    if config.mode == "dqnet":
        t = int(config.target) if isinstance(config.target, float) else 4
        candidates = (_int_list("candidates", config.candidates) if config.candidates
                      is not None else (t - 1, t, t + 1))
        config.target = float(t) if config.target is None else config.target
        config.alpha = 0.0 if config.alpha is None else config.alpha
        config.beta = 0.05 if config.beta is None else config.beta
    elif config.mode == "dqt":
        candidates = (_int_list("candidates", config.candidates) if config.candidates
                      is not None else (2, 4, 8))
        config.alpha = 1.0 if config.alpha is None else config.alpha
        config.beta = 1.0 if config.beta is None else config.beta
        config.target = 4.0 if config.target is None else config.target
    if dynamic:
        for bits in candidates:
            if not 2 <= bits <= n:
                raise ValueError(f"candidate bit-width {bits} is outside [2, {n}] "
                                 f"(`master-bits` is {n})")
        aux = (_int_list("aux-bits", config.aux_bits) if config.aux_bits is not None
               else (min(candidates),))
        for bits in aux:
            if bits not in candidates:
                raise ValueError(f"`aux-bits` {bits} is not a candidate bit-width "
                                 f"(candidates: {', '.join(map(str, candidates))})")
        config.aux_bits = ",".join(map(str, aux))
        config.candidates = ",".join(map(str, candidates))
        if config.alpha < 0 or config.beta < 0:
            raise ValueError("`alpha` and `beta` must be non-negative")
    model_config = ModelConfig(in_channels=channels, image_size=size, num_classes=classes,
                               width=config.width, blocks=blocks,
                               stem_stride=config.stem_stride, mode=config.mode,
                               master_bits=n, candidates=candidates)
    if static_bits is not None:
        count = len(build_model(model_config).controlled)
        if static_bits[0] == "uniform":
            static_bits = (static_bits[1],) * count
        elif len(static_bits) != count:
            raise ValueError(f"`layer-bits` must give one bit-width per controlled layer "
                             f"({count}: {', '.join(build_model(model_config).layer_names)}), "
                             f"not {len(static_bits)}")
        model_config.static_bits = static_bits
    build_model(model_config)                 # validates bit-widths against the architecture
    return config, model_config


# -- costs and evaluation -------------------------------------------------------------------

def layer_bits_matrix(model, result, batch):
    """Per-image bit-width of every controlled layer, int64 (N, L)."""
    import torch
    if model.mode == "fp32":
        return torch.full((batch, len(model.controlled)), 32, dtype=torch.int64)
    if result.get("choice") is not None:
        candidates = torch.tensor(model.config.candidates)
        return candidates[result["choice"].argmax(dim=-1)]
    return torch.tensor(model.static_layer_bits()).expand(batch, -1)


def bitops(model, layer_bits):
    """Mean BitOPs per image (MACs * b_a * b_w, b_a = b_w) for an (N, L) bit matrix."""
    import torch
    fixed_bits = 32 if model.mode == "fp32" else model.master_bits
    fixed = sum(layer.macs for layer in model.fixed_layers()) * fixed_bits ** 2
    macs = torch.tensor([layer.macs for layer in model.controlled], dtype=torch.float64)
    return fixed + float((layer_bits.double() ** 2 * macs).sum(dim=1).mean())


def w8a8_bitops(model):
    """BitOPs of the same backbone (no controller) with every layer at 8 bits."""
    layers = [model.stem, model.fc] + list(model.controlled)
    return sum(layer.macs for layer in layers) * 64


def expected_cost(model, probs, kind):
    """Mean over images and controlled layers of sum_k p_k d_k (see module doc)."""
    import torch
    candidates = torch.tensor(model.config.candidates, dtype=probs.dtype)
    if kind == "bits":
        return (probs * candidates).sum(dim=-1).mean()
    macs = torch.tensor([layer.macs for layer in model.controlled], dtype=probs.dtype)
    per_layer = (probs * candidates ** 2).sum(dim=-1) * macs          # (N, L)
    return per_layer.sum(dim=1).mean() / (macs.sum() * model.master_bits ** 2)


def _batches(count, size):
    for start in range(0, count, size):
        yield slice(start, min(start + size, count))


def integer_metrics(model, images, labels):
    """metrics.json's integer_* fields: the integer emulation (train.integerize) on a test set."""
    import torch
    with torch.no_grad():
        integer = evaluate(model, images, labels, integer=True)
    return {"integer_accuracy": integer["accuracy"],
            "integer_average_bits": integer["average_bits"],
            "integer_layer_bits_histogram": integer["layer_bits_histogram"]}


def evaluate(model, images, labels, *, bits=None, batch_size=500, integer=False):
    """Top-1 accuracy and bit statistics on uint8 images.

    integer=True runs the integer emulation (train.integerize); otherwise the fake-quant
    (or float) forward pass with `bits` as in QResNet.forward.
    """
    import torch

    from .integerize import emulate, to_graph
    model.eval()
    graph = to_graph(model) if integer else None
    correct, all_bits = 0, []
    for rows in _batches(len(images), batch_size):
        codes = to_master_codes(torch.from_numpy(images[rows]), model.master_bits)
        target = torch.from_numpy(labels[rows])
        if integer:
            result = emulate(graph, codes)
            layer_bits = (result["bits"] if "bits" in result else
                          torch.tensor(model.static_layer_bits()).expand(len(target), -1))
        else:
            result = model(codes, bits=bits)
            layer_bits = (torch.full((len(target), len(model.controlled)), bits)
                          if isinstance(bits, int) else
                          layer_bits_matrix(model, result, len(target)))
        correct += int((result["logits"].argmax(dim=1) == target).sum())
        all_bits.append(layer_bits)
    layer_bits = torch.cat(all_bits)
    histogram = {name: {str(b): int((layer_bits[:, i] == b).sum())
                        for b in torch.unique(layer_bits[:, i]).tolist()}
                 for i, name in enumerate(model.layer_names)}
    macs = torch.tensor([layer.macs for layer in model.controlled], dtype=torch.float64)
    return {"accuracy": correct / len(images),
            "average_bits": float(layer_bits.double().mean()),
            "average_bits_mac_weighted": float((layer_bits.double() * macs).sum(dim=1).mean()
                                               / macs.sum()),
            "bitops": bitops(model, layer_bits),
            "bitops_relative_w8a8": bitops(model, layer_bits) / w8a8_bitops(model),
            "layer_bits_histogram": histogram}


# -- training ---------------------------------------------------------------------------------

def write_json_atomic(path, data):
    with atomic_file(path) as file:
        json.dump(data, file, indent=2)
        file.write("\n")


class _Log:
    def __init__(self, path, append=False):
        self.path = path
        open(path, "a" if append else "w").close()

    def __call__(self, message):
        line = f"{time.strftime('%H:%M:%S')} {message}"
        with open(self.path, "a") as file:
            file.write(line + "\n")
        print(line, flush=True)


def _loss(model, config, codes, target):
    """(loss, result) of one batch (see the module doc for the terms)."""
    import torch.nn.functional as F
    result = model(codes)
    loss = F.cross_entropy(result["logits"], target)
    if model.dynamic:
        if config.alpha > 0:
            with model.frozen_stats():
                for bits in _int_list("aux-bits", config.aux_bits):
                    loss = loss + config.alpha * F.cross_entropy(
                        model(codes, bits=bits)["logits"], target)
        if config.beta > 0:
            cost = expected_cost(model, result["probs"], config.cost)
            if isinstance(config.target, float):
                cost = F.relu(cost - config.target)
            loss = loss + config.beta * cost
    return loss, result


def train(config, *, log=print, resume=None):
    """Run training as `config` says; return (model, metrics). Writes files when config.out.

    `resume`: the checkpoint payload of this run, unfinished (`train.run.load_for_resume`);
    training continues after its last finished epoch, as if never interrupted.
    """
    import torch

    from .checkpoint import checkpoint_config
    from .model import build_model
    config, model_config = resolve(config)
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    train_images, train_labels = load_dataset(config.dataset, "train")
    test_images, test_labels = load_dataset(config.dataset, "test")
    if config.train_subset:
        rows = np.random.default_rng(config.seed).permutation(len(train_images))
        rows = np.sort(rows[:config.train_subset])
        train_images, train_labels = train_images[rows], train_labels[rows]
    model = build_model(model_config)
    model.gumbel_tau = config.tau
    params = sum(p.numel() for name, p in model.named_parameters()
                 if not name.startswith("ctrl_"))
    log(f"{config.mode} on {config.dataset}: {len(train_images)} train / {len(test_images)} "
        f"test images, {params} backbone parameters, {len(model.controlled)} controlled layers")
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay)
    steps = config.epochs * math.ceil(len(train_images) / config.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, steps) / steps)))
    generator = torch.Generator().manual_seed(config.seed)
    train_config = dataclasses.asdict(config)
    epoch_seconds, cpu_seconds, history = [], [], []
    first_epoch = 1
    if resume is not None:
        first_epoch, history, epoch_seconds, cpu_seconds = run.restore(
            resume, model, optimizer, scheduler, generator)
        log(f"resuming after epoch {first_epoch - 1} of {config.epochs}")
    elif config.out:
        run.begin(config.out)
    from tqdm import tqdm
    for epoch in range(first_epoch, config.epochs + 1):
        model.train()
        order = torch.randperm(len(train_images), generator=generator).numpy()
        started, cpu_started = time.perf_counter(), time.process_time()
        total_loss = correct = seen = 0
        bits_sum = 0.0
        bar = tqdm(list(_batches(len(order), config.batch_size)), desc=f"epoch {epoch}",
                   disable=not config.progress, leave=False, file=sys.stderr)
        for rows in bar:
            index = order[rows]
            codes = to_master_codes(torch.from_numpy(train_images[index]), config.master_bits)
            target = torch.from_numpy(train_labels[index])
            loss, result = _loss(model, config, codes, target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f"the loss became {loss.item()} in epoch {epoch}; "
                                         f"lower --lr")
            total_loss += loss.item() * len(index)
            correct += int((result["logits"].argmax(dim=1) == target).sum())
            seen += len(index)
            if model.dynamic:
                bits_sum += float(layer_bits_matrix(model, result, len(index)).double()
                                  .mean()) * len(index)
            bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.3f}")
        epoch_seconds.append(time.perf_counter() - started)
        cpu_seconds.append(time.process_time() - cpu_started)
        entry = {"epoch": epoch, "loss": total_loss / seen, "train_accuracy": correct / seen,
                 "seconds": epoch_seconds[-1], "cpu_seconds": cpu_seconds[-1]}
        if model.dynamic:
            entry["train_average_bits"] = bits_sum / seen
        history.append(entry)
        log(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in entry.items()))
        if config.out:
            run.save(config.out, model, checkpoint_config(model, config.dataset, train_config),
                     {"mode": config.mode, "dataset": config.dataset, "epochs": config.epochs,
                      "history": history, "complete": False},
                     run.capture(epoch, optimizer, scheduler, generator, epoch_seconds,
                                 cpu_seconds))
    started = time.perf_counter()
    metrics = {"mode": config.mode, "dataset": config.dataset, "seed": config.seed,
               "parameters": params, "train_images": len(train_images),
               "test_images": len(test_images), "epochs": config.epochs,
               "seconds_per_epoch": float(np.mean(epoch_seconds)),
               # CPU time of this process: comparable between runs on a shared machine.
               "cpu_seconds_per_epoch": float(np.mean(cpu_seconds)),
               "history": history}
    metrics.update(evaluate(model, test_images, test_labels))
    if model.mode in NESTED_MODES:
        metrics.update(integer_metrics(model, test_images, test_labels))
    if model.dynamic:
        metrics["fixed_bits_accuracy"] = {
            str(b): evaluate(model, test_images, test_labels, bits=b)["accuracy"]
            for b in model.config.candidates}
    metrics["eval_seconds"] = time.perf_counter() - started
    metrics["complete"] = True
    summary = (f"test accuracy {metrics['accuracy']:.4f}"
               + (f", integer {metrics['integer_accuracy']:.4f}"
                  if "integer_accuracy" in metrics else "")
               + f", average bits {metrics['average_bits']:.2f}, BitOPs "
                 f"{metrics['bitops_relative_w8a8']:.3f} x W8A8, "
                 f"{metrics['seconds_per_epoch']:.1f} s/epoch")
    log(summary)
    if config.out:
        run.save(config.out, model, checkpoint_config(model, config.dataset, train_config),
                 metrics)
    return model, metrics


# -- command line -----------------------------------------------------------------------------

def _parser(given_only=False):
    """The command line. given_only: no defaults, so parsing yields only the options given."""
    parser = argparse.ArgumentParser(
        prog="python -m train.fit", description=__doc__.split("\n\n")[0],
        epilog="Example: python -m train.fit --dataset fashion-mnist --mode dqt --epochs 10 "
               "--out runs/fmnist-dqt")
    for field in dataclasses.fields(TrainConfig):
        flag = "--" + field.name.replace("_", "-")
        default = argparse.SUPPRESS if given_only else field.default
        if field.type is bool or field.type == "bool":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction,
                                default=default, help=field.metadata["help"])
            continue
        kind = {"int": int, "float": float}.get(getattr(field.type, "__name__", field.type), str)
        if field.name == "target":
            kind = str
        parser.add_argument(flag, type=kind, default=default,
                            required=field.name == "out",
                            help=field.metadata["help"] + (f" (default {field.default})"
                                                           if field.default is not None else ""))
    existing = parser.add_mutually_exclusive_group()
    existing.add_argument("--resume", action="store_true",
                          help="continue the unfinished run in --out after its last finished "
                               "epoch, with its own settings")
    existing.add_argument("--overwrite", action="store_true",
                          help="replace the run already in --out (a non-empty --out is "
                               "refused otherwise)")
    return parser


def _options(parser, argv):
    """(TrainConfig fields given, resume, overwrite) of a command line."""
    options = vars(parser.parse_args(argv))
    return options, options.pop("resume", False), options.pop("overwrite", False)


def parse_args(argv=None):
    """TrainConfig from command-line arguments (--resume and --overwrite aside)."""
    return TrainConfig(**_options(_parser(), argv)[0])


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    options, resume, overwrite = _options(_parser(), argv)   # --help exits here, no torch yet
    config = TrainConfig(**options)
    try:
        run.check_out(config.out, resume=resume, overwrite=overwrite)
        payload = None
        if resume:
            payload = run.load_for_resume(config.out)
            if payload["metrics"].get("complete"):
                print(f"{config.out} holds {run.describe(config.out)}; nothing to resume")
                return 0
            given = _options(_parser(given_only=True), argv)[0]
            config = run.resumed_config(payload, given, TrainConfig, resolve)
        resolve(config)
        os.makedirs(config.out, exist_ok=True)
        log = _Log(os.path.join(config.out, run.LOG), append=resume)
        train(config, log=log, resume=payload)
    except (ValueError, TypeError, DatasetError, FloatingPointError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"error: interrupted; {run.after_interrupt(config.out)}", file=sys.stderr)
        return 130
    return 0


def _terminate(signum, frame):
    raise KeyboardInterrupt


if __name__ == "__main__":
    # A terminated run (kill, a CI timeout) unwinds like an interrupted one and says what it left.
    signal.signal(signal.SIGTERM, _terminate)
    sys.exit(main())
