"""Export a trained checkpoint to an integer model package.

    python -m dqt_hw.export CHECKPOINT --out DIR [--word-bits 32]

The checkpoint is loaded weights-only (no pickled code runs) by the training code
(`train.checkpoint.load_model`), batch norm folded and every scale turned into integer
constants by `train.integerize.to_graph`, and the resulting golden description written as a
package (`dqt_hw.package.write_package`, format in docs/export-format.md). DIR is replaced
atomically; on any error nothing is written.
"""

import argparse
import hashlib
import json
import sys
from pathlib import Path

from . import __version__
from .package import DEFAULT_WORD_BITS, write_package, run_cli

__all__ = ["load_checkpoint", "load_checkpoint_graph", "export_checkpoint", "main"]


def _first_line(error):
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def load_checkpoint(path):
    """(model, config) of a dqt-hw checkpoint; any failure is a one-line `ValueError`."""
    from train.checkpoint import CheckpointError, load_model
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such checkpoint file")
    try:
        return load_model(path)
    except CheckpointError:
        raise
    except Exception as error:          # torch/pickle errors of a truncated or foreign file
        raise ValueError(f"{path}: not a readable dqt-hw checkpoint "
                         f"({type(error).__name__}: {_first_line(error)})") from None


def load_checkpoint_graph(path):
    """(golden graph, config) of a checkpoint: its model as an integer network description."""
    from train.integerize import to_graph
    model, config = load_checkpoint(path)
    return to_graph(model), config


def _json_safe(value):
    return json.loads(json.dumps(value, default=str))


def export_checkpoint(checkpoint, out_dir, *, word_bits=DEFAULT_WORD_BITS):
    """Export `checkpoint` to a package in `out_dir`; return the manifest."""
    graph, config = load_checkpoint_graph(checkpoint)
    metadata = {
        "exporter": f"dqt_hw {__version__}",
        "checkpoint": str(checkpoint),
        "checkpoint_sha256": hashlib.sha256(Path(checkpoint).read_bytes()).hexdigest(),
        "config": _json_safe(config),
    }
    if isinstance(config, dict) and "dataset" in config:
        metadata["dataset"] = config["dataset"]
    controlled = config.get("layer_names") if isinstance(config, dict) else None
    return write_package(graph, out_dir, word_bits=word_bits, metadata=metadata,
                         controlled_layers=controlled)


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
    args = parser.parse_args(argv)
    manifest = export_checkpoint(args.checkpoint, args.out, word_bits=args.word_bits)
    layers = sum(1 for op in manifest["ops"] if "weight" in op)
    kind = "dynamic" if manifest["dynamic"] else "static"
    print(f"wrote {args.out}: {kind} model, {len(manifest['ops'])} ops ({layers} weight "
          f"layers), master width {manifest['master_bits']}, candidates "
          f"{manifest['candidates']}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
