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
     "metrics": {<the run's metrics.json content>}}

``config`` is JSON-serialisable (lists, not tuples). ``save_checkpoint`` writes a temporary
file in the destination folder and renames it, so an interrupted run never leaves a
half-written checkpoint.

``load_model(path) -> (model, config)`` returns the QResNet in eval mode and the config dict.
It raises ``CheckpointError`` (a ValueError) with a one-line message for a missing, truncated
or corrupt file, a plain state dict or any other object, another format or version, or a config
whose architecture does not match the state dict.
"""

import dataclasses
import os

import torch

from dqt_hw.atomic import atomic_file

from .model import build_model

__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "CheckpointError", "save_checkpoint",
           "load_checkpoint", "load_model", "checkpoint_config"]

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


def save_checkpoint(path, model, config, metrics=None):
    """Write the checkpoint atomically (temporary file in the same folder, then rename)."""
    payload = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION,
               "config": _plain(config),
               "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
               "metrics": _plain(metrics or {})}
    with atomic_file(path, "wb") as file:
        torch.save(payload, file)


def load_checkpoint(path):
    """The checkpoint dict, checked for format and version (weights-only loading)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:                 # torch raises many kinds for a damaged file
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt ({reason[:120]})") \
            from None
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
    payload = load_checkpoint(path)
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
    return model, config
