"""Datasets and the one input quantizer (contract used by training, emulation and export/eval).

Contract
--------
``to_master_codes(images_uint8, master_bits) -> int64 codes``
    The only input quantizer in dqt-hw. A pixel p in 0..255 stands for the real value p / 255;
    the input tensor's master scale is Delta_in = 1 / (2^n - 1), so the unsigned n-bit master
    code is ``floor(p * (2^n - 1) / 255 + 1/2)``, computed in integers as
    ``(2 * p * (2^n - 1) + 255) // 510``. For n = 8 the code is the pixel itself. Accepts a NumPy
    array or a torch tensor of dtype uint8 and returns the same kind with dtype int64.

``load_dataset(name, split) -> (images, labels)``
    ``images``: uint8 NumPy array (N, 1, H, W), pixel values 0..255; ``labels``: int64 (N,).
    ``name`` is "digits" (scikit-learn's 8x8 digits, 1797 images) or "fashion-mnist" (the IDX
    files of the Debian package ``dataset-fashion-mnist`` under
    /usr/share/datasets/fashion-mnist/, or the folder named by $DQT_FASHION_MNIST_DIR);
    ``split`` is "train" or "test".

    digits: scikit-learn's pixel values are 0..16; they map to 0..255 by the integer rule
    ``(v * 255 + 8) // 16`` (v * 255 / 16 rounded half up; 0 -> 0, 16 -> 255). The split is a
    fixed permutation (NumPy seed 0) of the 1797 images: the first 1437 train, the last 360 test.

``describe_test_set(name)``
    How the test split is made, precisely enough to rebuild it without this code (the rows
    of the digits split are listed, not only the generator call); the exporter writes it into
    the package manifest, with ``CLASSES``.
"""

import functools
import gzip
import os
import struct

import numpy as np

__all__ = ["DATASETS", "CLASSES", "FASHION_MNIST_DIR", "DatasetError", "load_dataset",
           "to_master_codes", "dataset_info", "describe_test_set"]

DATASETS = ("digits", "fashion-mnist")
SPLITS = ("train", "test")
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
_FASHION_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
                  "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
_DIGITS_TRAIN = 1437
#: Class names, in label order (label i is logit column i).
CLASSES = {"digits": [str(d) for d in range(10)],
           "fashion-mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                             "Shirt", "Sneaker", "Bag", "Ankle boot"]}


class DatasetError(ValueError):
    """A dataset that is unknown, missing or malformed."""


def dataset_info(name):
    """(channels, image size, classes) of a dataset, without loading it."""
    _check_name(name)
    return (1, 8, 10) if name == "digits" else (1, 28, 10)


def _check_name(name):
    if name not in DATASETS:
        raise DatasetError(f"`dataset` must be one of {', '.join(DATASETS)}, not {name!r}")


def to_master_codes(images_uint8, master_bits):
    """Unsigned n-bit master codes of uint8 pixels: (2 p (2^n - 1) + 255) // 510 (module doc)."""
    from dqt_hw.golden import check_master_bits
    master_bits = check_master_bits(master_bits)
    top = (1 << master_bits) - 1
    try:
        import torch
    except ImportError:                                  # pragma: no cover - torch is a train dep
        torch = None
    if torch is not None and isinstance(images_uint8, torch.Tensor):
        if images_uint8.dtype != torch.uint8:
            raise TypeError(f"`images_uint8` must have dtype uint8, not {images_uint8.dtype}")
        pixels = images_uint8.to(torch.int64)
    else:
        array = np.asarray(images_uint8)
        if array.dtype != np.uint8:
            raise TypeError(f"`images_uint8` must have dtype uint8, not {array.dtype}")
        pixels = array.astype(np.int64)
    return (2 * pixels * top + 255) // 510


def _read_idx(path, magic, dims):
    try:
        with gzip.open(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError) as error:
        raise DatasetError(f"cannot read {path}: {error}; reinstall it with "
                           f"`apt-get install --reinstall dataset-fashion-mnist`") from None
    header = 4 + 4 * dims
    if len(data) < header or struct.unpack(">I", data[:4])[0] != magic:
        raise DatasetError(f"{path} is not an IDX file of the expected kind (magic {magic:#x})")
    shape = struct.unpack(">" + "I" * dims, data[4:header])
    if len(data) - header != int(np.prod(shape)):
        raise DatasetError(f"{path} is truncated: header says shape {shape}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _load_fashion(split):
    folder = os.environ.get("DQT_FASHION_MNIST_DIR", FASHION_MNIST_DIR)
    image_file, label_file = (os.path.join(folder, f) for f in _FASHION_FILES[split])
    for path in (image_file, label_file):
        if not os.path.exists(path):
            raise DatasetError(f"Fashion-MNIST is missing ({path} not found); install it with "
                               f"`apt-get install dataset-fashion-mnist`")
    images = _read_idx(image_file, 0x803, 3)
    labels = _read_idx(label_file, 0x801, 1)
    if len(images) != len(labels):
        raise DatasetError(f"{image_file} holds {len(images)} images but {label_file} "
                           f"{len(labels)} labels")
    return images[:, None].copy(), labels.astype(np.int64)


@functools.lru_cache(maxsize=1)
def _digits():
    from sklearn.datasets import load_digits
    return load_digits()


def _digits_rows(split, count):
    """Rows of load_digits() in the split, in order."""
    order = np.random.default_rng(0).permutation(count)
    return order[:_DIGITS_TRAIN] if split == "train" else order[_DIGITS_TRAIN:]


def _load_digits(split):
    digits = _digits()
    values = digits.images.astype(np.int64)                      # 0..16
    images = ((values * 255 + 8) // 16).astype(np.uint8)[:, None]
    rows = _digits_rows(split, len(images))
    return images[rows].copy(), digits.target.astype(np.int64)[rows]


def describe_test_set(name):
    """{"name", "images", "source", "pixels", "order", ...}: how `name`'s test split is made."""
    _check_name(name)
    if name == "digits":
        rows = _digits_rows("test", len(_digits().images))
        return {"name": name, "images": len(rows),
                "source": "sklearn.datasets.load_digits(): 1797 images of 8x8 values v in "
                          "0..16, labels in .target",
                "pixels": "p = (255 v + 8) // 16",
                "order": "image i of the test set is row rows[i] of load_digits(); rows is "
                         "numpy.random.default_rng(0).permutation(1797)[1437:] (listed here "
                         "because NumPy does not promise that stream across versions)",
                "rows": [int(row) for row in rows]}
    return {"name": name, "images": 10000,
            "source": "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz of "
                      "Fashion-MNIST (Debian package dataset-fashion-mnist, "
                      "/usr/share/datasets/fashion-mnist/)",
            "pixels": "p = the IDX byte", "order": "all 10000 images in file order"}


def load_dataset(name, split):
    """Return (uint8 images (N, 1, H, W), int64 labels (N,)) of `name`'s `split`."""
    _check_name(name)
    if split not in SPLITS:
        raise DatasetError(f"`split` must be one of {', '.join(SPLITS)}, not {split!r}")
    return _load_digits(split) if name == "digits" else _load_fashion(split)
