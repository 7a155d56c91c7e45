"""Export a trained checkpoint to an integer model package.

    python -m dqt_hw.export CHECKPOINT --out DIR [--word-bits 32] [--allow-incomplete]

The checkpoint is loaded weights-only (no pickled code runs) by the training code
(`train.checkpoint.load_model`), batch norm folded and every scale turned into integer
constants by `train.integerize.to_graph`, and the resulting golden description written as a
package (`dqt_hw.package.write_package`, format in docs/export-format.md). DIR is replaced
atomically; on any error nothing is written.

A checkpoint of an unfinished run (its metrics say "complete": false: train.fit was
interrupted, or is still running) is refused unless `--allow-incomplete` is given; the
manifest's metadata records `"training_complete"` either way. Paths are checked before
torch is imported, so a mistyped one is reported at once.
"""

import argparse
import hashlib
import json
import sys
from pathlib import Path

from . import __version__
from .package import DEFAULT_WORD_BITS, check_out_dir, write_package, run_cli

__all__ = ["IncompleteRunError", "load_checkpoint", "load_checkpoint_graph",
           "export_checkpoint", "main"]


class IncompleteRunError(ValueError):
    """A checkpoint whose training run has not finished."""


def _first_line(error):
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def load_checkpoint(path, *, metrics=False):
    """(model, config) of a dqt-hw checkpoint, plus its metrics dict when `metrics`; any
    failure is a one-line `ValueError`."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such checkpoint file")
    from train.checkpoint import CheckpointError, load_run     # torch: only for a real file
    try:
        loaded = load_run(path)
        return loaded if metrics else loaded[:2]
    except CheckpointError:
        raise
    except Exception as error:          # torch/pickle errors of a truncated or foreign file
        raise ValueError(f"{path}: not a readable dqt-hw checkpoint "
                         f"({type(error).__name__}: {_first_line(error)})") from None


def load_checkpoint_graph(path, *, allow_incomplete=False):
    """(golden graph, config) of a checkpoint: its model as an integer network description.
    Raises IncompleteRunError for an unfinished run unless `allow_incomplete`."""
    return _load_finished(path, allow_incomplete)[:2]


def _load_finished(path, allow_incomplete):
    """(golden graph, config, metrics); see `load_checkpoint_graph`."""
    model, config, metrics = load_checkpoint(path, metrics=True)
    from train.integerize import to_graph
    if metrics.get("complete") is False and not allow_incomplete:
        done = len(metrics.get("history", []))
        total = config.get("training", {}).get("epochs", "?")
        folder = Path(path).parent
        raise IncompleteRunError(
            f"{path} is from an unfinished training run (epoch {done} of {total}; interrupted "
            f"or still running): finish it with `python -m train.fit --out {folder} --resume`, "
            f"or export it as it is with --allow-incomplete")
    return to_graph(model), config, metrics


def _json_safe(value):
    return json.loads(json.dumps(value, default=str))


def export_checkpoint(checkpoint, out_dir, *, word_bits=DEFAULT_WORD_BITS,
                      allow_incomplete=False):
    """Export `checkpoint` to a package in `out_dir`; return the manifest."""
    check_out_dir(out_dir)
    graph, config, metrics = _load_finished(checkpoint, allow_incomplete)
    metadata = {
        "exporter": f"dqt_hw {__version__}",
        "checkpoint": str(checkpoint),
        "checkpoint_sha256": hashlib.sha256(Path(checkpoint).read_bytes()).hexdigest(),
        # true: a finished train.fit run; false: exported with --allow-incomplete; null: the
        # checkpoint carries no training record (written by save_checkpoint directly).
        "training_complete": metrics.get("complete"),
        "config": _json_safe(config),
    }
    from train.data import CLASSES, DATASETS, describe_test_set
    from train.integerize import LOGIT_FRAC_BITS
    name = config.get("dataset") if isinstance(config, dict) else None
    if name is not None:
        metadata["dataset"] = name
    controlled = config.get("layer_names") if isinstance(config, dict) else None
    known = name in DATASETS
    logits = {"tensor": "logits", "frac_bits": LOGIT_FRAC_BITS,
              "classes": CLASSES[name] if known else None}
    return write_package(graph, out_dir, word_bits=word_bits, metadata=metadata,
                         controlled_layers=controlled, logits=logits,
                         dataset=describe_test_set(name) if known else None)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m dqt_hw.export",
        description="Export a dqt-hw training checkpoint to an integer model package "
                    "(manifest.json, weight master codes as .npy, memory-init .hex files, "
                    "controller tables). See docs/export-format.md.")
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="checkpoint from train.fit")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="package directory (replaced atomically if it holds a package)")
    parser.add_argument("--word-bits", type=int, default=DEFAULT_WORD_BITS,
                        help="width of a weight memory word in the .hex files "
                             f"(default {DEFAULT_WORD_BITS})")
    parser.add_argument("--allow-incomplete", action="store_true",
                        help="export the checkpoint of an unfinished training run (refused "
                             "otherwise)")
    args = parser.parse_args(argv)
    manifest = export_checkpoint(args.checkpoint, args.out, word_bits=args.word_bits,
                                 allow_incomplete=args.allow_incomplete)
    layers = sum(1 for op in manifest["ops"] if "weight" in op)
    kind = "dynamic" if manifest["dynamic"] else "static"
    print(f"wrote {args.out}: {kind} model, {len(manifest['ops'])} ops ({layers} weight "
          f"layers), master width {manifest['master_bits']}, candidates "
          f"{manifest['candidates']}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
