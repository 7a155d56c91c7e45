"""Datasets and the one input quantizer."""

import gzip
from fractions import Fraction
from math import floor

import numpy as np
import pytest
import torch

from train.data import DatasetError, load_dataset, to_master_codes


def test_master_codes_for_n8_are_the_pixels():
    pixels = np.arange(256, dtype=np.uint8).reshape(1, 1, 16, 16)
    assert np.array_equal(to_master_codes(pixels, 8), pixels.astype(np.int64))
    codes = to_master_codes(torch.from_numpy(pixels), 8)
    assert codes.dtype == torch.int64 and torch.equal(codes, torch.from_numpy(pixels).long())


@pytest.mark.parametrize("master_bits", [2, 4, 6, 7, 10, 16])
def test_master_codes_round_half_up(master_bits):
    pixels = np.arange(256, dtype=np.uint8)
    top = (1 << master_bits) - 1
    want = [floor(Fraction(p * top, 255) + Fraction(1, 2)) for p in range(256)]
    assert to_master_codes(pixels, master_bits).tolist() == want


def test_master_codes_refuse_other_dtypes():
    with pytest.raises(TypeError, match="`images_uint8` must have dtype uint8, not float32"):
        to_master_codes(np.zeros(3, np.float32), 8)
    with pytest.raises(TypeError, match="must have dtype uint8, not torch.int64"):
        to_master_codes(torch.zeros(3, dtype=torch.int64), 8)
    with pytest.raises(ValueError, match="`master_bits` must be between 2 and 16, not 17"):
        to_master_codes(np.zeros(3, np.uint8), 17)


def test_digits_mapping_and_split():
    train_images, train_labels = load_dataset("digits", "train")
    test_images, test_labels = load_dataset("digits", "test")
    assert train_images.shape == (1437, 1, 8, 8) and test_images.shape == (360, 1, 8, 8)
    assert train_images.dtype == np.uint8 and train_labels.dtype == np.int64
    from sklearn.datasets import load_digits
    values = set(np.unique(load_digits().images).astype(int))
    mapped = {(v * 255 + 8) // 16 for v in values}
    assert set(np.unique(np.concatenate([train_images, test_images]))) <= mapped
    assert 0 in mapped and 255 in mapped
    assert sorted(set(train_labels)) == list(range(10))
    again, _ = load_dataset("digits", "train")
    assert np.array_equal(again, train_images)               # a fixed split


def test_fashion_mnist_from_the_package_or_a_clear_error():
    try:
        images, labels = load_dataset("fashion-mnist", "test")
    except DatasetError as error:
        assert "apt-get install dataset-fashion-mnist" in str(error)
        return
    assert images.shape == (10000, 1, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and sorted(set(labels.tolist())) == list(range(10))


def test_bad_names_and_files(tmp_path, monkeypatch):
    with pytest.raises(DatasetError, match="`dataset` must be one of digits, fashion-mnist, "
                                           "not 'mnist'"):
        load_dataset("mnist", "train")
    with pytest.raises(DatasetError, match="`split` must be one of train, test, not 'val'"):
        load_dataset("digits", "val")
    monkeypatch.setenv("DQT_FASHION_MNIST_DIR", str(tmp_path))
    with pytest.raises(DatasetError, match="install it with `apt-get install "
                                           "dataset-fashion-mnist`"):
        load_dataset("fashion-mnist", "test")
    header = (0x803).to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in (2, 28, 28))
    with gzip.open(tmp_path / "t10k-images-idx3-ubyte.gz", "wb") as file:
        file.write(header + bytes(100))
    with gzip.open(tmp_path / "t10k-labels-idx1-ubyte.gz", "wb") as file:
        file.write((0x801).to_bytes(4, "big") + (2).to_bytes(4, "big") + bytes(2))
    with pytest.raises(DatasetError, match="is truncated"):
        load_dataset("fashion-mnist", "test")
