"""A training run's folder, where a run is never silently lost or misdescribed.

    OUT/checkpoint.pt    the record: weights and the metrics that describe them, one file
    OUT/metrics.json     a copy of those metrics plus "checkpoint_sha256", the checkpoint's hash
    OUT/train.log        the log

The checkpoint carries its own metrics (train.checkpoint), so the two can never disagree;
metrics.json is derived from it and written after it. "complete" is true only in the final
write, after training and the final evaluation, and a fresh run removes a previous run's
metrics.json before its first checkpoint. So a metrics.json that says complete always sits
beside the checkpoint it describes, and an interrupted run's checkpoint says "complete": false
(which `python -m dqt_hw.export` refuses unless told otherwise).

While a run is unfinished its checkpoint also holds a "training_state" (optimizer, schedule and
random-generator states; a dynamic run's budget multipliers and calibration) from which `python -m train.fit --out OUT --resume` continues exactly
where it stopped: the resumed run ends with the weights of an uninterrupted one.

Everything here but `load_for_resume`, `capture` and `restore` runs without importing torch,
so a refused folder is reported at once.
"""

import hashlib
import json
import os

from dqt_hw.atomic import atomic_file

__all__ = ["CHECKPOINT", "METRICS", "LOG", "RunFolderError", "describe", "check_out",
           "begin", "save", "load_for_resume", "resumed_config", "capture", "restore",
           "after_interrupt"]

CHECKPOINT, METRICS, LOG = "checkpoint.pt", "metrics.json", "train.log"
#: Options that may differ when a run is resumed: they do not change what is computed.
RESUME_MAY_CHANGE = ("out", "progress", "threads")


class RunFolderError(ValueError):
    """An output folder that the requested run may not use; the message says what to do."""


def _metrics(out):
    try:
        with open(os.path.join(out, METRICS)) as file:
            metrics = json.load(file)
    except (OSError, ValueError):
        return None
    return metrics if isinstance(metrics, dict) else None


def describe(out):
    """A few words on what `out` holds, from its metrics.json (no torch needed)."""
    metrics = _metrics(out)
    has_checkpoint = os.path.isfile(os.path.join(out, CHECKPOINT))
    if metrics is not None and has_checkpoint:
        what = f"{metrics.get('mode', '?')} on {metrics.get('dataset', '?')}"
        if metrics.get("complete"):
            return (f"a finished run ({what}, {metrics.get('epochs')} epochs, test accuracy "
                    f"{metrics.get('accuracy', float('nan')):.4f})")
        done = len(metrics.get("history", []))
        total = metrics.get("epochs")
        return f"an unfinished run ({what}, epoch {done} of {total} done)"
    if has_checkpoint:
        return "a checkpoint without its metrics.json"
    entries = sorted(os.listdir(out))
    return (f"files that are not a training run ({', '.join(entries[:3])}"
            + (", ...)" if len(entries) > 3 else ")"))


def check_out(out, *, resume=False, overwrite=False):
    """Refuse an output folder the run would damage; raises RunFolderError.

    A missing or empty folder is always fine (so is one holding only the train.log of a run
    that never finished an epoch). Anything else needs `overwrite` (the run's three files are
    replaced, other files are left alone) or, for an unfinished run, `resume`.
    """
    if resume and overwrite:
        raise RunFolderError("give either --resume or --overwrite, not both")
    if os.path.exists(out) and not os.path.isdir(out):
        raise RunFolderError(f"`--out` {out} is a file, not a folder")
    entries = set(os.listdir(out)) if os.path.isdir(out) else set()
    if resume:
        if CHECKPOINT not in entries:
            raise RunFolderError(f"nothing to resume: {out} holds no {CHECKPOINT}; start the "
                                 f"run without --resume")
        return
    if not entries - {LOG} or overwrite:
        return
    kind = describe(out)
    if kind.startswith("an unfinished run"):
        hint = "--resume to continue it or --overwrite to start again"
    elif kind.startswith("a finished run"):
        hint = "--overwrite to replace it, or choose another --out"
    else:
        hint = "another --out (or --overwrite to write the run's files into it anyway)"
    raise RunFolderError(f"`--out` {out} already holds {kind}; give {hint}")


def begin(out):
    """Start a fresh run in `out`: remove a previous run's metrics.json, then its checkpoint, so
    the folder never shows old results beside a new checkpoint."""
    os.makedirs(out, exist_ok=True)
    for name in (METRICS, CHECKPOINT):
        try:
            os.remove(os.path.join(out, name))
        except FileNotFoundError:
            pass


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save(out, model, config, metrics, training_state=None):
    """Write checkpoint.pt, then metrics.json derived from it; both atomically.

    Adds "checkpoint_sha256" to `metrics` (in place, so a caller that writes metrics.json
    again keeps it) and returns it.
    """
    from .checkpoint import save_checkpoint
    path = os.path.join(out, CHECKPOINT)
    save_checkpoint(path, model, config, {k: v for k, v in metrics.items()
                                          if k != "checkpoint_sha256"}, training_state)
    metrics["checkpoint_sha256"] = _sha256(path)
    with atomic_file(os.path.join(out, METRICS)) as file:
        json.dump(metrics, file, indent=2)
        file.write("\n")
    return metrics["checkpoint_sha256"]


def load_for_resume(out):
    """The checkpoint payload of the unfinished run in `out` (CheckpointError if unreadable)."""
    from .checkpoint import load_checkpoint
    payload = load_checkpoint(os.path.join(out, CHECKPOINT))
    if not payload["metrics"].get("complete") and "training_state" not in payload:
        raise RunFolderError(f"{out}/{CHECKPOINT} holds no training state to resume from "
                             f"(an older train.fit wrote it); start again with --overwrite")
    return payload


def resumed_config(payload, given, make_config, resolve):
    """The TrainConfig of the run being resumed.

    The settings come from the checkpoint; `given` ({field: value}, the options given on the
    command line) may change only RESUME_MAY_CHANGE, and any other given option must resolve to
    the stored value. `make_config(**fields)` builds a TrainConfig, `resolve` validates one.
    """
    stored = dict(payload["config"].get("training") or {})
    if not stored:
        raise RunFolderError("the checkpoint does not record its training settings; start "
                             "again with --overwrite")
    try:
        config = make_config(**{**stored, **{k: given[k] for k in RESUME_MAY_CHANGE
                                             if k in given}})
    except TypeError as error:
        raise RunFolderError(f"the checkpoint's training settings do not fit this train.fit "
                             f"({error}); start again with --overwrite") from None
    resolved = resolve(config)[0]
    for name, value in given.items():
        if name in RESUME_MAY_CHANGE:
            continue
        mine = resolve(make_config(**{**stored, name: value}))[0]
        if getattr(mine, name) != getattr(resolved, name):
            flag = "--" + name.replace("_", "-")
            raise RunFolderError(f"--resume continues the run with its own settings: {flag} "
                                 f"{value} differs from the run's {getattr(resolved, name)!r}; "
                                 f"leave it out, or start again with --overwrite")
    return config


def capture(epoch, optimizer, scheduler, generator, epoch_seconds, cpu_seconds, dynamic=None):
    """The training_state after `epoch`: everything `restore` needs to continue exactly
    (`dynamic`: a dynamic run's `DynamicTraining.state_dict()`)."""
    import torch
    return {"epoch": epoch, "dynamic": dynamic, "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "generator": generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "epoch_seconds": list(epoch_seconds), "cpu_seconds": list(cpu_seconds)}


def restore(payload, model, optimizer, scheduler, generator, dynamic=None):
    """Load a resumed run's weights and training state (`dynamic`: the run's DynamicTraining);
    return (first epoch to run, history, epoch_seconds, cpu_seconds)."""
    import torch
    model.load_state_dict(payload["state_dict"], strict=True)
    history = list(payload["metrics"].get("history", []))
    state = payload["training_state"]
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    if dynamic is not None:
        dynamic.load_state_dict(state["dynamic"])
    return state["epoch"] + 1, history, list(state["epoch_seconds"]), list(state["cpu_seconds"])


def after_interrupt(out):
    """What an interrupted run left in `out`, and how to continue it (one sentence)."""
    if out is None:
        return "nothing was written"
    path = os.path.join(out, CHECKPOINT)
    if not os.path.isfile(path):
        return f"no epoch had finished, so {out} holds no checkpoint"
    try:
        from .checkpoint import load_checkpoint
        payload = load_checkpoint(path)
    except ValueError as error:
        return f"{path} cannot be read ({error})"
    metrics = payload["metrics"]
    if metrics.get("complete"):
        return f"the run had finished; {path} holds the trained model"
    done = len(metrics.get("history", []))
    total = payload["config"].get("training", {}).get("epochs", "?")
    stage = ("the final evaluation had not finished" if done == total
             else f"it holds epoch {done} of {total}")
    return (f"{path} is kept and marked incomplete ({stage}); continue with "
            f"`python -m train.fit --out {out} --resume`")
