"""Evaluation of a trained QResNet: accuracy, bits and BitOPs, and what its paths are worth.

* `evaluate`: top-1 and bit statistics of the fake-quant (or float) model, or of the integer
  emulation, on a test set;
* `fixed_width_report` (dynamic models): accuracy with every controlled layer forced to each
  candidate width, with the shared batch norm and with batch norm recalibrated at that width
  (`recalibrated_bn`: the fair comparison, because the shared statistics were gathered on the
  mix of widths the controller picked), and the per-image oracle that routes each image to the
  cheapest width that classifies it correctly;
* `choice_report` (dynamic models): how much the bit choices vary across images.
"""

import contextlib
from collections import Counter

import numpy as np
import torch

from .data import to_master_codes

__all__ = ["CALIBRATION_IMAGES", "batches", "bitops", "w8a8_bitops", "predict", "evaluate",
           "integer_metrics", "recalibrated_bn", "fixed_width_report", "choice_report"]

#: Training images whose statistics recalibrate batch norm for a fixed-width evaluation.
CALIBRATION_IMAGES = 2000
#: Most common bit vectors listed in choice_report.
TOP_VECTORS = 10


def bitops(model, layer_bits):
    """Mean BitOPs per image (MACs * b_a * b_w, b_a = b_w) for an (N, L) bit matrix."""
    fixed_bits = 32 if model.mode == "fp32" else model.master_bits
    fixed = sum(layer.macs for layer in model.fixed_layers()) * fixed_bits ** 2
    macs = torch.tensor([layer.macs for layer in model.controlled], dtype=torch.float64)
    return fixed + float((layer_bits.double() ** 2 * macs).sum(dim=1).mean())


def w8a8_bitops(model):
    """BitOPs of the same backbone (no controller) with every layer at 8 bits."""
    layers = [model.stem, model.fc] + list(model.controlled)
    return sum(layer.macs for layer in layers) * 64


def batches(count, size):
    """Slices of consecutive batches of `size` over `count` items."""
    for start in range(0, count, size):
        yield slice(start, min(start + size, count))


@torch.no_grad()
def predict(model, images, *, bits=None, integer=False, batch_size=500):
    """(predicted classes (N,), bit-widths (N, L)) of uint8 images, both int64 tensors.

    integer=True runs the integer emulation (train.integerize); otherwise the fake-quant (or
    float) forward pass with `bits` as in QResNet.forward.
    """
    from .integerize import emulate, to_graph
    model.eval()
    graph = to_graph(model) if integer else None
    predictions, all_bits = [], []
    for rows in batches(len(images), batch_size):
        codes = to_master_codes(torch.from_numpy(images[rows]), model.master_bits)
        if integer:
            result = emulate(graph, codes)
            layer_bits = (result["bits"] if "bits" in result else
                          torch.tensor(model.static_layer_bits()).expand(len(codes), -1))
        else:
            result = model(codes, bits=bits)
            layer_bits = result["bits"]
        predictions.append(result["logits"].argmax(dim=1))
        all_bits.append(layer_bits)
    return torch.cat(predictions), torch.cat(all_bits)


def _summary(model, correct, layer_bits):
    histogram = {name: {str(b): int((layer_bits[:, i] == b).sum())
                        for b in torch.unique(layer_bits[:, i]).tolist()}
                 for i, name in enumerate(model.layer_names)}
    macs = torch.tensor([layer.macs for layer in model.controlled], dtype=torch.float64)
    return {"accuracy": float(correct.double().mean()),
            "average_bits": float(layer_bits.double().mean()),
            "average_bits_mac_weighted": float((layer_bits.double() * macs).sum(dim=1).mean()
                                               / macs.sum()),
            "bitops": bitops(model, layer_bits),
            "bitops_relative_w8a8": bitops(model, layer_bits) / w8a8_bitops(model),
            "layer_bits_histogram": histogram}


def evaluate(model, images, labels, *, bits=None, batch_size=500, integer=False):
    """Top-1 accuracy and bit statistics on uint8 images (see `predict`)."""
    predictions, layer_bits = predict(model, images, bits=bits, integer=integer,
                                      batch_size=batch_size)
    return _summary(model, predictions == torch.from_numpy(labels), layer_bits)


def integer_metrics(model, images, labels):
    """metrics.json's integer_* fields: the integer emulation (train.integerize) on a test set."""
    integer = evaluate(model, images, labels, integer=True)
    return {"integer_accuracy": integer["accuracy"],
            "integer_average_bits": integer["average_bits"],
            "integer_layer_bits_histogram": integer["layer_bits_histogram"]}


@contextlib.contextmanager
def recalibrated_bn(model, images, bits):
    """Within the block, every batch norm holds the statistics of uint8 `images` run with
    every controlled layer at `bits` (one batch, in order, so each layer sees inputs normalized
    by the recalibrated layers before it); the trained statistics come back afterwards."""
    saved = {name: buffer.clone() for name, buffer in model.named_buffers()
             if name.endswith(("running_mean", "running_var"))}
    model.eval()
    codes = to_master_codes(torch.from_numpy(images), model.master_bits)
    try:
        with torch.no_grad(), model.calibrating_bn():
            model(codes, bits=bits)
        yield
    finally:
        buffers = dict(model.named_buffers())
        with torch.no_grad():
            for name, value in saved.items():
                buffers[name].copy_(value)


def fixed_width_report(model, images, labels, calibration_images):
    """Fixed-width accuracies (shared and recalibrated BN) and the oracle of a dynamic model.

    The oracle routes each image to the smallest candidate width whose (recalibrated)
    fixed-width network classifies it correctly, or to the smallest width when none does.
    """
    labels = torch.from_numpy(labels)
    candidates = list(model.config.candidates)
    shared, fair = {}, {}
    for b in candidates:
        shared[str(b)] = float((predict(model, images, bits=b)[0] == labels).double().mean())
        with recalibrated_bn(model, calibration_images, b):
            fair[b] = predict(model, images, bits=b)[0] == labels
    right = torch.stack([fair[b] for b in candidates], dim=1)              # (N, K)
    first_right = torch.where(right.any(dim=1), right.double().argmax(dim=1),
                              torch.zeros(len(labels), dtype=torch.int64))
    oracle_bits = torch.tensor(candidates)[first_right].view(-1, 1).expand(
        -1, len(model.controlled))
    oracle = _summary(model, right.any(dim=1), oracle_bits)
    del oracle["layer_bits_histogram"]
    return {"fixed_bits_accuracy": {str(b): float(fair[b].double().mean()) for b in candidates},
            "fixed_bits_accuracy_shared_bn": shared,
            "fixed_bits_right_only": {str(b): float((fair[b] & (right.sum(dim=1) == 1))
                                                    .double().mean()) for b in candidates},
            "oracle": oracle}


def choice_report(layer_bits, labels):
    """How the per-image bit vectors (N, L) vary: the share of images off the most common
    vector, the most common vectors, a histogram of per-image mean bits and the mean bits of
    each class."""
    vectors = Counter(",".join(map(str, row)) for row in layer_bits.tolist())
    modal, modal_count = vectors.most_common(1)[0]
    per_image = layer_bits.double().mean(dim=1)
    labels = np.asarray(labels)
    return {"distinct_bit_vectors": len(vectors),
            "modal_bit_vector": [int(b) for b in modal.split(",")],
            "off_modal_share": 1.0 - modal_count / len(layer_bits),
            "top_bit_vectors": [[vector, count] for vector, count
                                in vectors.most_common(TOP_VECTORS)],
            "image_bits_histogram": {f"{value:g}": int(count) for value, count
                                     in zip(*np.unique(per_image.numpy(), return_counts=True))},
            "class_average_bits": [float(per_image[torch.from_numpy(labels == c)].mean())
                                   for c in sorted(set(labels.tolist()))]}
