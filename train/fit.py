"""Train one model: ``python -m train.fit --dataset digits --mode dqt --out runs/digits-dqt``.

Writes into ``--out``: ``checkpoint.pt`` (see train.checkpoint; rewritten atomically after
every epoch), ``metrics.json`` (accuracy, integer accuracy, average bits, BitOPs, per-layer bit
histogram, time per epoch, ...; derived from the checkpoint, see train.run) and ``train.log``.
A folder holding anything else is refused unless ``--resume`` (continue an unfinished run) or
``--overwrite`` is given. Run with ``--help`` for every option.

Dynamic modes (dqt, dqnet) train in three phases (fractions of the steps; train.dynamic and
docs/training.md give the details):

1. warm-up (``--warmup``): the backbone alone, every controlled layer at ``--warmup-bits``;
2. controller (until ``--freeze``): each image and layer runs at the argmax of the
   controller's logits minus the budget's prices plus Gumbel noise annealed from ``--noise``
   to 0, so training ends on the choices inference makes; the controller (own learning rate
   ``--ctrl-lr``) learns each candidate's per-image loss, measured for ``--probes`` layers a
   step; the budget ``--target`` (``--cost``: mean bits, BitOPs, or both) is a Lagrangian
   whose multipliers follow dual ascent (``--dual-lr``) on the costs of what the network ran;
3. fine-tuning: stem and controller frozen, the choices calibrated to the budget on the
   training images (folded into the controller's last bias), the backbone trained on them.

With ``--alpha`` > 0, every ``--aux-every``-th step adds alpha * CE of the whole network at
one fixed width of K' (``--aux-bits``, default the candidates from the warm-up width up, in
turn).
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

__all__ = ["TrainConfig", "parse_args", "resolve", "train", "main",
           "write_json_atomic"]

COSTS = ("bits", "bitops", "both")
AUX_LOSSES = ("ce", "distill")
CTRL_HIDDEN = ("fixed", "trained")


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
    candidates: str = _field(None, "dqt/dqnet: candidate bit-widths (default t-1,t,t+1 "
                                   "around the budget t = --target)", dynamic=True)
    alpha: float = _field(None, "dqt/dqnet: weight of the fixed-width CE term (default 1 dqt, "
                                "0 dqnet)", dynamic=True)
    aux_bits: str = _field(None, "dqt/dqnet: K', the fixed widths of that term, one per "
                                 "auxiliary pass in turn (default: the candidates from "
                                 "--warmup-bits up)", dynamic=True)
    aux_every: int = _field(3, "dqt/dqnet: run the fixed-width pass every N-th step",
                            dynamic=True)
    aux_loss: str = _field("ce", f"dqt/dqnet: loss of the fixed-width pass: "
                                 f"{', '.join(AUX_LOSSES)} (ce: against the labels; distill: "
                                 f"against the dynamic path's predictions)", dynamic=True)
    cost: str = _field("both", f"dqt/dqnet budget: {', '.join(COSTS)} (bits: mean bits per "
                               f"layer; bitops: MAC-weighted mean of b^2, i.e. BitOPs)",
                       dynamic=True)
    target: float = _field(None, "dqt/dqnet: the budget in bits (default 4)", dynamic=True)
    noise: float = _field(0.03, "dqt/dqnet: initial scale of the Gumbel noise on the "
                               "controller's logits; anneals to 0 by --freeze", dynamic=True)
    warmup: float = _field(0.2, "dqt/dqnet: fraction of the steps at static bits before the "
                                "controller starts", dynamic=True)
    warmup_bits: int = _field(None, "dqt/dqnet: width of the warm-up (default: the largest "
                                    "candidate not above the target)", dynamic=True)
    freeze: float = _field(0.8, "dqt/dqnet: fraction of the steps after which the controller "
                                "and stem are frozen and calibrated to the budget", dynamic=True)
    ctrl_lr: float = _field(5e-3, "dqt/dqnet: controller learning rate (cosine over the "
                                  "controller phase)", dynamic=True)
    ctrl_hidden: str = _field("fixed", "dqt/dqnet: the controller's hidden layer: fixed (a "
                                       "random projection centred on the training images' "
                                       "features when the controller starts; only the output "
                                       "layer learns) or trained (its ReLUs die: "
                                       "docs/training.md)", dynamic=True)
    dual_lr: float = _field(0.05, "dqt/dqnet: dual-ascent step of the budget multipliers",
                            dynamic=True)
    probes: int = _field(1, "dqt/dqnet: controlled layers per step whose other candidates are "
                            "measured to train the controller", dynamic=True)
    controller_grid: int = _field(2, "dqt/dqnet: the controller reads the stem output "
                                     "average-pooled to a GRID x GRID map", dynamic=True)
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
    if not config.lr > 0:
        raise ValueError(f"`lr` must be positive, not {config.lr!r}")
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
    if config.target is not None:
        try:
            config.target = float(config.target)
        except ValueError:
            raise ValueError(f"`target` must be a number of bits, not {config.target!r}") \
                from None
    if dynamic:
        candidates = _resolve_dynamic(config, n)
    model_config = ModelConfig(in_channels=channels, image_size=size, num_classes=classes,
                               width=config.width, blocks=blocks,
                               stem_stride=config.stem_stride, mode=config.mode,
                               master_bits=n, candidates=candidates,
                               controller_grid=config.controller_grid if dynamic else 1)
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


def _resolve_dynamic(config, n):
    """Fill in and check the dynamic modes' options; return the candidate tuple."""
    from .model import check_layer_bits
    config.target = 4.0 if config.target is None else config.target
    t = round(config.target)
    candidates = (_int_list("candidates", config.candidates) if config.candidates is not None
                  else tuple(sorted({min(max(b, 2), n) for b in (t - 1, t, t + 1)})))
    config.alpha = (0.0 if config.mode == "dqnet" else 1.0) if config.alpha is None \
        else config.alpha
    for bits in candidates:
        check_layer_bits(bits, n, "candidate")
    candidates = tuple(sorted(candidates))
    if not candidates[0] <= config.target:
        raise ValueError(f"`target` {config.target:g} is below the smallest candidate "
                         f"{candidates[0]}: no choice meets it")
    if config.warmup_bits is None:
        config.warmup_bits = max(b for b in candidates if b <= config.target)
    elif config.warmup_bits not in candidates:
        raise ValueError(f"`warmup-bits` {config.warmup_bits} is not a candidate bit-width "
                         f"(candidates: {', '.join(map(str, candidates))})")
    aux = (_int_list("aux-bits", config.aux_bits) if config.aux_bits is not None
           else tuple(b for b in candidates if b >= config.warmup_bits))
    for bits in aux:
        if bits not in candidates:
            raise ValueError(f"`aux-bits` {bits} is not a candidate bit-width "
                             f"(candidates: {', '.join(map(str, candidates))})")
    for name in ("alpha", "noise", "dual_lr"):
        if not getattr(config, name) >= 0:
            raise ValueError(f"`{name.replace('_', '-')}` must not be negative, "
                             f"not {getattr(config, name)!r}")
    if not config.ctrl_lr > 0:
        raise ValueError(f"`ctrl-lr` must be positive, not {config.ctrl_lr!r}")
    if config.ctrl_hidden not in CTRL_HIDDEN:
        raise ValueError(f"unknown ctrl-hidden {config.ctrl_hidden!r}; choose one of "
                         f"{', '.join(CTRL_HIDDEN)}")
    if config.aux_loss not in AUX_LOSSES:
        raise ValueError(f"unknown aux-loss {config.aux_loss!r}; choose one of "
                         f"{', '.join(AUX_LOSSES)}")
    for name in ("probes", "aux_every"):
        value = getattr(config, name)
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name.replace('_', '-')}` must be a positive integer, "
                             f"not {value!r}")
    if not 0 <= config.warmup <= config.freeze <= 1:
        raise ValueError(f"need 0 <= `warmup` <= `freeze` <= 1, not warmup {config.warmup} "
                         f"and freeze {config.freeze}")
    if not isinstance(config.controller_grid, int) or config.controller_grid < 1:
        raise ValueError(f"`controller-grid` must be a positive integer, "
                         f"not {config.controller_grid!r}")
    config.aux_bits = ",".join(map(str, aux))
    config.candidates = ",".join(map(str, candidates))
    return candidates


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


def _static_loss(model, codes, target):
    import torch.nn.functional as F
    result = model(codes)
    return F.cross_entropy(result["logits"], target), result


def train(config, *, log=print, resume=None):
    """Run training as `config` says; return (model, metrics). Writes files when config.out.

    `resume`: the checkpoint payload of this run, unfinished (`train.run.load_for_resume`);
    training continues after its last finished epoch, as if never interrupted.
    """
    import torch

    from .checkpoint import checkpoint_config
    from .dynamic import DynamicTraining
    from .metrics import (CALIBRATION_IMAGES, batches, choice_report, evaluate,
                          fixed_width_report, integer_metrics, predict)
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
    params = sum(p.numel() for name, p in model.named_parameters()
                 if not name.startswith("ctrl_"))
    log(f"{config.mode} on {config.dataset}: {len(train_images)} train / {len(test_images)} "
        f"test images, {params} backbone parameters, {len(model.controlled)} controlled layers")
    steps = config.epochs * math.ceil(len(train_images) / config.batch_size)
    dynamic = DynamicTraining(model, config, steps) if model.dynamic else None
    if dynamic:
        optimizer, scheduler = dynamic.optimizer()
    else:
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                      weight_decay=config.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, steps) / steps)))
    step = 0
    generator = torch.Generator().manual_seed(config.seed)
    train_config = dataclasses.asdict(config)
    epoch_seconds, cpu_seconds, history = [], [], []
    first_epoch = 1
    if resume is not None:
        first_epoch, history, epoch_seconds, cpu_seconds = run.restore(
            resume, model, optimizer, scheduler, generator, dynamic)
        step = (first_epoch - 1) * math.ceil(len(train_images) / config.batch_size)
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
        bar = tqdm(list(batches(len(order), config.batch_size)), desc=f"epoch {epoch}",
                   disable=not config.progress, leave=False, file=sys.stderr)
        for rows in bar:
            index = order[rows]
            codes = to_master_codes(torch.from_numpy(train_images[index]), config.master_bits)
            target = torch.from_numpy(train_labels[index])
            if dynamic:
                dynamic.before_step(step, train_images)
                loss, result = dynamic.loss(codes, target, step)
            else:
                loss, result = _static_loss(model, codes, target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            if dynamic:
                dynamic.after_step()
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f"the loss became {loss.item()} in epoch {epoch}; "
                                         f"lower --lr")
            total_loss += loss.item() * len(index)
            correct += int((result["logits"].argmax(dim=1) == target).sum())
            seen += len(index)
            bits_sum += float(result["bits"].double().mean()) * len(index)
            bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.3f}")
        epoch_seconds.append(time.perf_counter() - started)
        cpu_seconds.append(time.process_time() - cpu_started)
        entry = {"epoch": epoch, "loss": total_loss / seen, "train_accuracy": correct / seen,
                 "seconds": epoch_seconds[-1], "cpu_seconds": cpu_seconds[-1]}
        if dynamic:
            entry["train_average_bits"] = bits_sum / seen
            entry.update(dynamic.summary(step))
        history.append(entry)
        log(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in entry.items()))
        if config.out:
            run.save(config.out, model, checkpoint_config(model, config.dataset, train_config),
                     {"mode": config.mode, "dataset": config.dataset, "epochs": config.epochs,
                      "history": history, "complete": False},
                     run.capture(epoch, optimizer, scheduler, generator, epoch_seconds,
                                 cpu_seconds, dynamic.state_dict() if dynamic else None))
    started = time.perf_counter()
    metrics = {"mode": config.mode, "dataset": config.dataset, "seed": config.seed,
               "parameters": params, "train_images": len(train_images),
               "test_images": len(test_images), "epochs": config.epochs,
               "seconds_per_epoch": float(np.mean(epoch_seconds)),
               # CPU time of this process: comparable between runs on a shared machine.
               "cpu_seconds_per_epoch": float(np.mean(cpu_seconds)),
               "history": history}
    if dynamic and dynamic.calibration_offset is None:          # --freeze 1: calibrate now
        dynamic.freeze(train_images)
    metrics.update(evaluate(model, test_images, test_labels))
    if model.mode in NESTED_MODES:
        metrics.update(integer_metrics(model, test_images, test_labels))
    if dynamic:
        calibration = np.random.default_rng(0).permutation(len(train_images))
        calibration = train_images[np.sort(calibration[:CALIBRATION_IMAGES])]
        metrics.update(fixed_width_report(model, test_images, test_labels, calibration))
        metrics.update(choice_report(predict(model, test_images)[1], test_labels))
        metrics["budget"] = {"target": config.target, "cost": config.cost,
                             "multipliers": dict(dynamic.budget.multipliers),
                             "calibration_offset": dynamic.calibration_offset,
                             "train_costs_calibrated": dynamic.calibrated_costs}
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
