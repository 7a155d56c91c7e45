"""A training run is never silently lost: refused folders, --overwrite, --resume that continues
exactly, checkpoint and metrics.json as one unit, honest interruption messages, and an export
that refuses an unfinished run."""

import hashlib
import json

import pytest
import torch

from dqt_hw.export import main as export_main
from dqt_hw.package import run_cli
from train import fit, run
from train.dynamic import DynamicTraining

TINY = ["--dataset", "digits", "--width", "4", "--train-subset", "128", "--batch-size", "64",
        "--no-progress"]


def _stop_every_loss(monkeypatch, stop):
    """Make the first training step call `stop`, in every mode."""
    monkeypatch.setattr(fit, "_static_loss", stop)
    monkeypatch.setattr(DynamicTraining, "loss", stop)


def _fit(out, *extra, epochs=3):
    return fit.main([*TINY, "--epochs", str(epochs), "--out", str(out), *extra])


def _interrupt_after_epoch(monkeypatch, epoch):
    """Make run.save raise KeyboardInterrupt right after it has saved `epoch`."""
    save = run.save

    def save_then_stop(out, model, config, metrics, training_state=None):
        result = save(out, model, config, metrics, training_state)
        if training_state is not None and training_state["epoch"] == epoch:
            raise KeyboardInterrupt
        return result
    monkeypatch.setattr(run, "save", save_then_stop)


def _state(out):
    return torch.load(out / "checkpoint.pt", weights_only=True)


def test_resume_continues_exactly_where_the_run_stopped(tmp_path, monkeypatch, capsys):
    assert _fit(tmp_path / "straight") == 0
    with monkeypatch.context() as patch:
        _interrupt_after_epoch(patch, 2)
        assert _fit(tmp_path / "cut") == 130
    err = capsys.readouterr().err
    assert err == (f"error: interrupted; {tmp_path}/cut/checkpoint.pt is kept and marked "
                   f"incomplete (it holds epoch 2 of 3); continue with `python -m train.fit "
                   f"--out {tmp_path}/cut --resume`\n")
    metrics = json.loads((tmp_path / "cut" / "metrics.json").read_text())
    assert metrics["complete"] is False and len(metrics["history"]) == 2
    # Without a flag the unfinished run is refused, with a hint; --resume finishes it.
    assert _fit(tmp_path / "cut") == 2
    assert "holds an unfinished run (dqt on digits, epoch 2 of 3 done); give --resume" in \
        capsys.readouterr().err
    assert fit.main(["--out", str(tmp_path / "cut"), "--resume", "--no-progress"]) == 0
    straight, resumed = _state(tmp_path / "straight"), _state(tmp_path / "cut")
    assert resumed["metrics"]["complete"] and "training_state" not in resumed
    for key, value in straight["state_dict"].items():
        assert torch.equal(value, resumed["state_dict"][key]), key
    losses = [[entry["loss"] for entry in state["metrics"]["history"]]
              for state in (straight, resumed)]
    assert losses[0] == losses[1]
    assert resumed["metrics"]["accuracy"] == straight["metrics"]["accuracy"]
    log = (tmp_path / "cut" / "train.log").read_text()
    assert "epoch=1" in log and "resuming after epoch 2 of 3" in log and "epoch=3" in log


def test_resume_keeps_the_run_settings(tmp_path, monkeypatch, capsys):
    with monkeypatch.context() as patch:
        _interrupt_after_epoch(patch, 1)
        assert _fit(tmp_path, epochs=2) == 130
    capsys.readouterr()
    assert _fit(tmp_path, "--resume", epochs=5) == 2
    assert capsys.readouterr().err == (
        "error: --resume continues the run with its own settings: --epochs 5 differs from the "
        "run's 2; leave it out, or start again with --overwrite\n")
    # Settings that do not change what is computed may differ.
    assert fit.main(["--out", str(tmp_path), "--resume", "--threads", "1", "--progress"]) == 0
    assert fit.main(["--out", str(tmp_path), "--resume"]) == 0
    assert "holds a finished run (dqt on digits, 2 epochs, test accuracy" in \
        capsys.readouterr().out


def test_interrupt_in_the_first_epoch_says_no_checkpoint_exists(tmp_path, monkeypatch, capsys):
    def stop(*args, **kwargs):
        raise KeyboardInterrupt
    _stop_every_loss(monkeypatch, stop)
    assert _fit(tmp_path / "run") == 130
    assert capsys.readouterr().err == (f"error: interrupted; no epoch had finished, so "
                                       f"{tmp_path}/run holds no checkpoint\n")
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["train.log"]
    # A folder holding only the log of a run that never finished an epoch may be reused.
    monkeypatch.undo()
    assert _fit(tmp_path / "run", epochs=1) == 0


def test_existing_folders_are_refused_unless_overwrite(tmp_path, capsys):
    other = tmp_path / "notes"
    other.mkdir()
    (other / "todo.txt").write_text("keep me")
    assert _fit(other) == 2
    assert capsys.readouterr().err == (
        f"error: `--out` {other} already holds files that are not a training run (todo.txt); "
        f"give another --out (or --overwrite to write the run's files into it anyway)\n")
    assert _fit(tmp_path / "done", epochs=1) == 0
    before = (tmp_path / "done" / "checkpoint.pt").read_bytes()
    capsys.readouterr()
    assert _fit(tmp_path / "done", epochs=1) == 2
    assert "holds a finished run (dqt on digits, 1 epochs, test accuracy " in \
        capsys.readouterr().err
    assert (tmp_path / "done" / "checkpoint.pt").read_bytes() == before
    assert _fit(tmp_path / "done", "--overwrite", "--seed", "1", epochs=1) == 0
    assert (tmp_path / "done" / "checkpoint.pt").read_bytes() != before
    assert _fit(other, "--overwrite", epochs=1) == 0
    assert (other / "todo.txt").read_text() == "keep me"
    file = tmp_path / "file"
    file.write_text("")
    assert _fit(file) == 2
    assert capsys.readouterr().err == f"error: `--out` {file} is a file, not a folder\n"


def test_overwrite_drops_the_old_results_before_the_first_new_checkpoint(tmp_path, monkeypatch,
                                                                          capsys):
    assert _fit(tmp_path, epochs=1) == 0

    def stop(*args, **kwargs):
        raise KeyboardInterrupt
    _stop_every_loss(monkeypatch, stop)
    assert _fit(tmp_path, "--overwrite", epochs=1) == 130
    # The old run is gone as asked; nothing claims to describe a checkpoint that is not there.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.log"]


def test_metrics_json_is_derived_from_the_checkpoint(tmp_path, monkeypatch):
    for interrupted in (True, False):
        out = tmp_path / str(interrupted)
        with monkeypatch.context() as patch:
            if interrupted:
                _interrupt_after_epoch(patch, 1)
            assert _fit(out, epochs=2) == (130 if interrupted else 0)
        metrics = json.loads((out / "metrics.json").read_text())
        checkpoint = (out / "checkpoint.pt").read_bytes()
        assert metrics.pop("checkpoint_sha256") == hashlib.sha256(checkpoint).hexdigest()
        assert json.loads(json.dumps(_state(out)["metrics"])) == metrics
        assert metrics["complete"] is not interrupted


def test_export_refuses_an_unfinished_run(tmp_path, monkeypatch, capsys):
    with monkeypatch.context() as patch:
        _interrupt_after_epoch(patch, 1)
        assert _fit(tmp_path / "run", epochs=2) == 130
    capsys.readouterr()
    checkpoint = tmp_path / "run" / "checkpoint.pt"
    assert run_cli(export_main, [str(checkpoint), "--out", str(tmp_path / "pkg")]) == 2
    assert capsys.readouterr().err == (
        f"error: {checkpoint} is from an unfinished training run (epoch 1 of 2; interrupted or "
        f"still running): finish it with `python -m train.fit --out {tmp_path}/run --resume`, "
        f"or export it as it is with --allow-incomplete\n")
    assert not (tmp_path / "pkg").exists()
    assert run_cli(export_main, [str(checkpoint), "--out", str(tmp_path / "pkg"),
                                 "--allow-incomplete"]) == 0
    manifest = json.loads((tmp_path / "pkg" / "manifest.json").read_text())
    assert manifest["metadata"]["training_complete"] is False
