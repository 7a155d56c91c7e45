"""Checkpoint files: atomic saving and weights-only loading (a public contract).

Contract
--------
A checkpoint is one ``torch.save`` file holding only tensors and plain Python containers, so it
loads with ``torch.load(path, weights_only=True)`` and never executes pickled code::

    {"format": "dqt-hw-checkpoint", "version": 1,
     "config": {"model": {<ModelConfig fields: in_channels, image_size, num_classes, width,
                          blocks, stem_stride, mode, master_bits, candidates, static_bits,
                          controller_hidden>},
                "mode": ..., "dataset": ..., "master_bits": ..., "candidates": [...],
                "static_bits": [...] or None, "layer_names": [...],
                "training": {<the train.fit.TrainConfig fields>}},
     "state_dict": <QResNet.state_dict()>,
     "metrics": {<the run's metrics; "complete": true only once training and the final
                 evaluation have finished>},
     "training_state": {<optional: what `train.fit --resume` needs to continue the run
                        exactly: epoch, optimizer, scheduler and random-generator states>}}

``config`` is JSON-serialisable (lists, not tuples). ``save_checkpoint`` writes a temporary
file in the destination folder and renames it, so an interrupted run never leaves a
half-written checkpoint. The metrics travel inside the checkpoint, so the two always describe
the same model; a run folder's metrics.json is derived from them (train.run).

``load_model(path) -> (model, config)`` returns the QResNet in eval mode and the config dict.
It raises ``CheckpointError`` (a ValueError) with a one-line message for a missing file, a file
that is not a PyTorch checkpoint at all (text, empty, another kind of zip), a truncated or
corrupt one, one holding Python objects that weights-only loading refuses, a plain state dict
or any other object, another format or version, or a config whose architecture does not match
the state dict.
"""

import dataclasses
import os
import pickle
import warnings
import zipfile

from dqt_hw.atomic import atomic_file

# torch and train.model are imported where used: a file that is plainly not a checkpoint (a
# typo, a text file) is reported before torch loads, which takes seconds on a cold start.

__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "CheckpointError", "save_checkpoint",
           "load_checkpoint", "load_model", "load_run", "checkpoint_config"]

CHECKPOINT_FORMAT = "dqt-hw-checkpoint"
CHECKPOINT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded; the message says why in one line."""


def _plain(value):
    """Tuples to lists, recursively (a JSON-shaped config)."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def checkpoint_config(model, dataset, training=None):
    """The JSON-serialisable config dict of `model` (see the module docstring)."""
    model_config = _plain(dataclasses.asdict(model.config))
    return {"model": model_config, "mode": model_config["mode"], "dataset": dataset,
            "master_bits": model_config["master_bits"],
            "candidates": model_config["candidates"],
            "static_bits": (model.static_layer_bits() if not model.dynamic else None),
            "layer_names": list(model.layer_names),
            "training": _plain(training or {})}


def save_checkpoint(path, model, config, metrics=None, training_state=None):
    """Write the checkpoint atomically (temporary file in the same folder, then rename)."""
    import torch
    payload = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION,
               "config": _plain(config),
               "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
               "metrics": _plain(metrics or {})}
    if training_state is not None:
        payload["training_state"] = training_state
    with atomic_file(path, "wb") as file:
        torch.save(payload, file)


#: torch.save has written zip archives since PyTorch 1.6; older files are pickles (0x80 ...).
_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_MAGIC = b"\x80"


def _what_it_is(head):
    """A few words on what a file that is not a PyTorch checkpoint holds, from its first bytes."""
    if not head:
        return "an empty file"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "binary data of another kind"
    if all(c.isprintable() or c in "\t\r\n" for c in text):
        first = text.strip().splitlines()[0][:40] if text.strip() else ""
        return f"a text file (it begins {first!r})" if first else "a text file of white space"
    return "binary data of another kind"


def _first_sentence(text):
    """The first sentence of a library's message, whole (never cut mid-word), on one line."""
    text = " ".join(str(text).split())
    end = text.find(". ")
    return text[:end] if end > 0 else text.rstrip(".")


def _load_payload(path):
    """torch.load(weights_only=True) of `path`, or CheckpointError saying what the file is."""
    with open(path, "rb") as file:
        head = file.read(512)
    if not head.startswith((_ZIP_MAGIC, _PICKLE_MAGIC)):
        raise CheckpointError(f"{path} is not a PyTorch checkpoint: it is {_what_it_is(head)}")
    if head.startswith(_ZIP_MAGIC):
        try:
            with zipfile.ZipFile(path) as archive:
                names, damaged = archive.namelist(), archive.testzip()
        except (zipfile.BadZipFile, OSError, EOFError) as error:
            raise CheckpointError(f"checkpoint {path} is truncated or corrupt (its zip archive "
                                  f"cannot be read: {_first_sentence(error)})") from None
        if not any(name.endswith("/data.pkl") for name in names):
            raise CheckpointError(f"{path} is a zip file but not a PyTorch checkpoint (it has "
                                  f"no data.pkl)")
        if damaged:
            raise CheckpointError(f"checkpoint {path} is corrupt: {damaged} in it fails its "
                                  f"CRC check")
    import torch
    try:
        with warnings.catch_warnings():            # e.g. a pickle protocol torch did not write
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "Unsupported global" in str(error):
            raise CheckpointError(f"{path} holds Python objects that weights-only loading "
                                  f"refuses; a dqt-hw checkpoint holds only tensors, numbers, "
                                  f"strings, lists and dicts") from None
        raise CheckpointError(f"{path} is not a PyTorch checkpoint: it is a pickle that "
                              f"weights-only loading cannot read") from None
    except Exception as error:                 # torch raises many kinds for a damaged file
        reason = _first_sentence(str(error).split("zip archive: ", 1)[-1]) or \
            type(error).__name__
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt ({reason})") from None


def load_checkpoint(path):
    """The checkpoint dict, checked for format and version (weights-only loading)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path} does not exist")
    payload = _load_payload(path)
    if not isinstance(payload, dict) or "format" not in payload:
        kind = "a plain state dict" if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(f"{path} is {kind}, not a dqt-hw checkpoint "
                              f"(write one with python -m train.fit)")
    if payload["format"] != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} has format {payload['format']!r}, "
                              f"not {CHECKPOINT_FORMAT!r}")
    if payload.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"{path} has checkpoint version {payload.get('version')!r}; this "
                              f"code reads version {CHECKPOINT_VERSION} (retrain with train.fit)")
    for key in ("config", "state_dict"):
        if not isinstance(payload.get(key), dict):
            raise CheckpointError(f"{path} has no {key!r} dict")
    return payload


def load_model(path):
    """(QResNet in eval mode, config dict) of a checkpoint; raises CheckpointError."""
    return load_run(path)[:2]


def load_run(path):
    """(QResNet in eval mode, config dict, metrics dict) of a checkpoint; see `load_model`."""
    payload = load_checkpoint(path)
    from .model import build_model
    config = payload["config"]
    if not isinstance(config.get("model"), dict):
        raise CheckpointError(f"{path}: config has no 'model' architecture dict")
    try:
        model = build_model(config["model"])
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: invalid model config ({error})") from None
    try:
        model.load_state_dict(payload["state_dict"], strict=True)
    except RuntimeError as error:
        first = " ".join(str(error).split())[:200]
        raise CheckpointError(f"{path}: the state dict does not match the config's "
                              f"architecture ({first})") from None
    model.eval()
    return model, config, payload["metrics"]
