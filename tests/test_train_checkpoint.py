"""Checkpoints: weights-only round trip, atomic writes, one-line errors for bad files."""

import fractions
import random
import zipfile

import pytest
import torch

from train.checkpoint import (CHECKPOINT_FORMAT, CheckpointError, checkpoint_config,
                              load_model, save_checkpoint)
from train.model import build_model


def _model(mode="dqt", width=4):
    torch.manual_seed(0)
    model = build_model(dict(image_size=8, stem_stride=1, width=width, mode=mode))
    model.train()
    model(torch.randint(0, 256, (8, 1, 8, 8)))          # move the running statistics
    return model


def _save(tmp_path, model, name="model.pt", metrics=None):
    path = tmp_path / name
    save_checkpoint(path, model, checkpoint_config(model, "digits", {"epochs": 1}),
                    metrics or {"accuracy": 0.5})
    return path


@pytest.mark.parametrize("mode", ["static", "dqt", "fp32", "lsq", "dqnet"])
def test_round_trip_is_weights_only_and_exact(tmp_path, mode):
    model = _model(mode)
    path = _save(tmp_path, model)
    payload = torch.load(path, weights_only=True)
    assert payload["format"] == CHECKPOINT_FORMAT and payload["version"] == 1
    assert payload["config"]["mode"] == mode and payload["config"]["dataset"] == "digits"
    assert payload["config"]["master_bits"] == 8
    assert payload["config"]["layer_names"] == model.layer_names
    assert payload["metrics"] == {"accuracy": 0.5}
    loaded, config = load_model(path)
    assert not loaded.training and config == payload["config"]
    codes = torch.randint(0, 256, (5, 1, 8, 8))
    model.eval()
    with torch.no_grad():
        assert torch.equal(loaded(codes)["logits"], model(codes)["logits"])
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]     # no temporary files left


def test_interrupted_write_leaves_the_old_file(tmp_path, monkeypatch):
    model = _model()
    path = _save(tmp_path, model)
    before = path.read_bytes()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _save(tmp_path, model)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def _error(path):
    with pytest.raises(CheckpointError) as info:
        load_model(path)
    message = str(info.value)
    assert "\n" not in message
    return message


def _zip(path, name):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(name, "hello")


def _flip_a_byte(good):
    data = bytearray(good)
    data[len(data) // 2] ^= 0xFF
    return bytes(data)


@pytest.mark.parametrize("name, make, message", [
    ("missing.pt", None, "missing.pt does not exist"),
    ("cut.pt", lambda path, good: path.write_bytes(good[: len(good) // 2]),
     "cut.pt is truncated or corrupt (its zip archive cannot be read: File is not a zip file)"),
    ("flipped.pt", lambda path, good: path.write_bytes(_flip_a_byte(good)),
     "in it fails its CRC check"),
    ("notes.pt", lambda path, good: path.write_text("epoch 1: loss 0.3\n"),
     "notes.pt is not a PyTorch checkpoint: it is a text file (it begins 'epoch 1: loss 0.3')"),
    ("empty.pt", lambda path, good: path.write_bytes(b""),
     "empty.pt is not a PyTorch checkpoint: it is an empty file"),
    ("noise.pt", lambda path, good: path.write_bytes(b"\x00\xff" + random.Random(0).randbytes(
        4094)), "noise.pt is not a PyTorch checkpoint: it is binary data of another kind"),
    ("archive.pt", lambda path, good: _zip(path, "docs/readme.txt"),
     "archive.pt is a zip file but not a PyTorch checkpoint (it has no data.pkl)"),
    ("objects.pt", lambda path, good: torch.save({"lr": fractions.Fraction(1, 3)}, path),
     "objects.pt holds Python objects that weights-only loading refuses"),
    ("plain.pt", lambda path, good: torch.save(_model().state_dict(), path),
     "plain.pt is a plain state dict, not a dqt-hw checkpoint"),
    ("list.pt", lambda path, good: torch.save([1, 2], path), "list, not a dqt-hw checkpoint"),
])
def test_bad_files_say_what_they_are(tmp_path, name, make, message):
    good = _save(tmp_path, _model()).read_bytes()
    if make is not None:
        make(tmp_path / name, good)
    text = _error(tmp_path / name)
    assert message in text, text
    assert "..." not in text and len(text.replace(str(tmp_path), "")) < 160


def test_other_format_version_or_architecture(tmp_path):
    model = _model()
    payload = torch.load(_save(tmp_path, model), weights_only=True)
    torch.save(dict(payload, format="something-else"), tmp_path / "format.pt")
    assert "format 'something-else'" in _error(tmp_path / "format.pt")
    torch.save(dict(payload, version=2), tmp_path / "version.pt")
    assert "checkpoint version 2" in _error(tmp_path / "version.pt")
    config = dict(payload["config"], model=dict(payload["config"]["model"], width=8))
    torch.save(dict(payload, config=config), tmp_path / "arch.pt")
    assert "does not match the config's architecture" in _error(tmp_path / "arch.pt")
    config = dict(payload["config"], model=dict(payload["config"]["model"], mode="static"))
    torch.save(dict(payload, config=config), tmp_path / "mode.pt")
    assert "does not match the config's architecture" in _error(tmp_path / "mode.pt")
    config = dict(payload["config"], model=dict(payload["config"]["model"], colour="red"))
    torch.save(dict(payload, config=config), tmp_path / "field.pt")
    assert "unknown model config field(s) colour" in _error(tmp_path / "field.pt")
