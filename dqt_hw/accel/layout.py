"""Where tensors and weights sit in the accelerator's data memory, and how to pack them.

The data memory holds 64-bit words. Codes travel in *groups* of 16: a group is two words, the
first holding the high nibbles (bits 7..4) of its 16 codes and the second their low nibbles
(bits 3..0); code j of a group is nibble lane j, bits [4j, 4j + 4) of each word. A layer at
b <= 3 bits only needs bits 7..s-1 with s = 8 - b >= 5, all in the high nibble, so it reads
one word per 16 codes; wider layers read both. (This is the "read only the bits a mode
needs" layout: at b = 2 a beat of 16 codes costs one 64-bit read.) iCE40 SPRAMs have a write
mask per nibble, so a write of some lanes of a group never has to read the group first.

A tensor of shape (C, H, W) is stored pixel-major (HWC): code (c, y, x) is element
e = (y W + x) Cp + c of the tensor, in group e // 16, lane e % 16, where the storage channel
count Cp is C rounded up to a multiple of 16, or for C < 16 to a power of two no smaller than
the widest beat a reading layer takes (`storage_channels`). Lanes of padding channels hold
no defined value: every reader multiplies them by zero weights or ignores them.

Wide tensors (32-bit logits) live in the separate wide memory, one value per 32-bit word.
"""

import numpy as np

from .config import GROUP_CODES

__all__ = ["NIBBLE", "storage_channels", "TensorPlacement", "pack_groups", "unpack_groups",
           "group_words", "conv_weight_rows"]

NIBBLE = 4


def storage_channels(channels, min_lanes=1):
    """Cp: channels rounded up to a multiple of 16, or (below 16) to a power of two that is at
    least `min_lanes` (the products per beat of the narrowest mode a reading layer uses)."""
    if channels >= GROUP_CODES:
        return -(-channels // GROUP_CODES) * GROUP_CODES
    padded = 1 << (channels - 1).bit_length()
    return max(padded, min_lanes)


def group_words(elements):
    """Data-memory words of `elements` codes: two per started group of 16."""
    return 2 * -(-elements // GROUP_CODES)


class TensorPlacement:
    """A tensor's place: `base` word in the data memory (or index in the wide memory), its
    shape (C, H, W), storage channels Cp, signedness, and `wide` for 32-bit tensors."""

    def __init__(self, name, shape, *, channels_stored, signed, wide=False, base=None):
        self.name = name
        self.shape = tuple(int(v) for v in shape)
        self.channels_stored = int(channels_stored)
        self.signed = bool(signed)
        self.wide = bool(wide)
        self.base = base

    @property
    def channels(self):
        return self.shape[0]

    @property
    def pixels(self):
        return int(np.prod(self.shape[1:])) if len(self.shape) > 1 else 1

    @property
    def elements(self):
        """Stored elements: pixels x Cp (narrow) or the values (wide)."""
        return self.pixels * (self.channels if self.wide else self.channels_stored)

    @property
    def words(self):
        """Words it takes in its memory."""
        return self.elements if self.wide else group_words(self.elements)

    def to_elements(self, codes):
        """(C, H, W) or (C,) codes -> the stored element vector (HWC, padded lanes 0)."""
        codes = np.asarray(codes, dtype=np.int64).reshape(self.channels, self.pixels)
        if self.wide:
            return codes.T.reshape(-1)
        out = np.zeros((self.pixels, self.channels_stored), dtype=np.int64)
        out[:, :self.channels] = codes.T
        return out.reshape(-1)

    def from_elements(self, elements):
        """The inverse of `to_elements`: stored elements -> codes of the tensor's shape."""
        elements = np.asarray(elements, dtype=np.int64)
        if self.wide:
            return elements[:self.elements].reshape(self.pixels, self.channels).T.reshape(
                self.shape)
        table = elements[:self.elements].reshape(self.pixels, self.channels_stored)
        return table[:, :self.channels].T.reshape(self.shape)

    def describe(self):
        where = "wide" if self.wide else "data"
        return {"name": self.name, "memory": where, "base": self.base, "shape": list(self.shape),
                "channels_stored": self.channels_stored, "signed": self.signed,
                "words": self.words}


def pack_groups(elements, *, signed):
    """Codes (a flat vector, 8-bit, signed or unsigned) -> data-memory words (uint64 array),
    two per group: high nibbles, then low nibbles. The last group is padded with code 0."""
    codes = np.asarray(elements, dtype=np.int64).reshape(-1)
    low, high = (-128, 127) if signed else (0, 255)
    if codes.size and (codes.min() < low or codes.max() > high):
        raise ValueError(f"codes must lie in [{low}, {high}] to be packed")
    count = -(-codes.size // GROUP_CODES) * GROUP_CODES
    padded = np.zeros(count, dtype=np.uint64)
    padded[:codes.size] = (codes & 0xFF).astype(np.uint64)
    lanes = padded.reshape(-1, GROUP_CODES)
    shifts = (np.arange(GROUP_CODES, dtype=np.uint64) * np.uint64(NIBBLE))
    high_words = ((lanes >> np.uint64(4)) << shifts).sum(axis=1, dtype=np.uint64)
    low_words = ((lanes & np.uint64(0xF)) << shifts).sum(axis=1, dtype=np.uint64)
    return np.stack([high_words, low_words], axis=1).reshape(-1)


def unpack_groups(words, count, *, signed):
    """The inverse of `pack_groups`: the first `count` codes held by `words`."""
    words = np.asarray(words, dtype=np.uint64).reshape(-1, 2)
    shifts = (np.arange(GROUP_CODES, dtype=np.uint64) * np.uint64(NIBBLE))
    high = (words[:, :1] >> shifts) & np.uint64(0xF)
    low = (words[:, 1:] >> shifts) & np.uint64(0xF)
    codes = ((high << np.uint64(4)) | low).astype(np.int64).reshape(-1)[:count]
    if signed:
        codes = np.where(codes >= 128, codes - 256, codes)
    return codes


def conv_weight_rows(weight, channels_stored, column_order=None):
    """The weight of a conv2d (O, C, kh, kw) or linear (O, C) op as the rows the accelerator
    reads: one row per output channel, in the order the beats visit the products (tap by tap,
    the Cp storage channels of each tap; zero for padding channels), each padded to whole
    groups. `column_order` (linear only) maps each input position of the stored input vector
    to a column of `weight`, or -1 for none (a flattened (C, H, W) input stored HWC)."""
    weight = np.asarray(weight, dtype=np.int64)
    outputs = weight.shape[0]
    if weight.ndim == 2:
        if column_order is None:
            rows = np.zeros((outputs, channels_stored), dtype=np.int64)
            rows[:, :weight.shape[1]] = weight
        else:
            order = np.asarray(column_order)
            rows = np.where(order >= 0, weight[:, np.maximum(order, 0)], 0)
    else:
        _, channels, kh, kw = weight.shape
        taps = np.zeros((outputs, kh, kw, channels_stored), dtype=np.int64)
        taps[..., :channels] = weight.transpose(0, 2, 3, 1)
        rows = taps.reshape(outputs, -1)
    width = -(-rows.shape[1] // GROUP_CODES) * GROUP_CODES
    padded = np.zeros((outputs, width), dtype=np.int64)
    padded[:, :rows.shape[1]] = rows
    return padded
