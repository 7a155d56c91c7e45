"""The PyTorch side of `python -m dqt_hw.eval --compare`: a checkpoint's own outputs.

Runs the checkpoint's model (loaded weights-only by `train.checkpoint.load_model`) on master
codes in two ways:
- integer emulation (`model.integer_forward`): int64 logits and per-image bit choices, which
  must equal the package run by the golden interpreter exactly;
- the float fake-quant forward pass used in training (`model(codes)` in eval mode): float
  logits and the controller's argmax choices, for the integer-versus-float top-1 difference.
"""

import sys

import numpy as np
from tqdm import tqdm

__all__ = ["run_checkpoint"]


def run_checkpoint(path, codes, *, batch_size=500, progress=True):
    """{"logits": int64 (N, C), "bits": int64 (N, L) or None, "float_logits": float64 (N, C),
    "float_bits": int64 (N, L) or None} of checkpoint `path` on master codes (N, *shape)."""
    import torch
    from .export import load_checkpoint
    model, config = load_checkpoint(path)
    model.eval()
    candidates = np.asarray(getattr(model.config, "candidates", ()), dtype=np.int64)
    parts = {"logits": [], "bits": [], "float_logits": [], "float_bits": []}
    with torch.no_grad(), tqdm(total=len(codes), desc="pytorch", unit="img",
                               disable=not progress, file=sys.stderr) as bar:
        for start in range(0, len(codes), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(codes[start:start + batch_size]))
            integer = model.integer_forward(batch)
            parts["logits"].append(np.asarray(integer["logits"], dtype=np.int64))
            if integer.get("bits") is not None:
                parts["bits"].append(np.asarray(integer["bits"], dtype=np.int64))
            floating = model(batch)
            parts["float_logits"].append(floating["logits"].double().numpy())
            if floating.get("choice") is not None:
                parts["float_bits"].append(candidates[floating["choice"].argmax(-1).numpy()])
            bar.update(len(batch))
    return {key: (np.concatenate(value) if value else None) for key, value in parts.items()}
