"""Pack and unpack many port words at once, driven by the blocks' `amaranth.lib.data` layouts.

The bit positions come from the layout objects of `dqt_hw.hdl.layouts` (via the component's
signature), never from numbers written here: `leaves` walks a layout and yields each scalar
field's offset and shape. Packing one beat with `layout.const(...)` costs about 1 ms for the
MAC array's 513-bit operand word; these vectorized versions do thousands of words in that time
and are checked against `layout.const` / `layout.from_bits` in tests/test_sim_cocotb.py.

Values are nested like the layout: a `StructLayout` takes a dict of its fields, an
`ArrayLayout` an array whose axis 1 indexes its elements, a scalar field an int array; axis 0
is the word index in every case.
"""

import numpy as np
from amaranth.hdl import Shape
from amaranth.lib import data

__all__ = ["leaves", "pack", "unpack", "port_shape"]


def port_shape(component, *path):
    """The shape (layout) of a port member: `port_shape(array, "operands", "payload")`."""
    member = component.signature.members[path[0]]
    for name in path[1:]:
        member = member.signature.members[name]
    return member.shape


def leaves(layout, offset=0, path=()):
    """Yield (path, offset, Shape) of every scalar field of `layout`, in bit order."""
    if isinstance(layout, data.StructLayout):
        for name, field in sorted(layout, key=lambda item: item[1].offset):
            yield from leaves(field.shape, offset + field.offset, path + (name,))
    elif isinstance(layout, data.ArrayLayout):
        element = _width(layout.elem_shape)
        for index in range(layout.length):
            yield from leaves(layout.elem_shape, offset + index * element, path + (index,))
    elif isinstance(layout, data.Layout):
        raise TypeError(f"unsupported layout {layout!r}")
    else:
        yield path, offset, Shape.cast(layout)


def _width(layout):
    return layout.size if isinstance(layout, data.Layout) else Shape.cast(layout).width


def _select(values, path):
    for key in path:
        values = values[key] if isinstance(key, str) else np.asarray(values)[:, key]
    return np.asarray(values, dtype=np.int64)


def pack(layout, values):
    """Pack N words: `values` nested as the layout (axis 0 = word); returns a list of ints."""
    width = _width(layout)
    count = None
    bits = None
    for path, offset, shape in leaves(layout):
        field = _select(values, path)
        if bits is None:
            count = field.shape[0]
            bits = np.zeros((count, width), dtype=np.uint8)
        if field.shape != (count,):
            raise ValueError(f"field {path} has shape {field.shape}, expected ({count},)")
        low, high = (-(1 << (shape.width - 1)), (1 << (shape.width - 1)) - 1) if shape.signed \
            else (0, (1 << shape.width) - 1)
        if field.size and (field.min() < low or field.max() > high):
            raise ValueError(f"field {path} holds values outside {shape}: "
                             f"[{field.min()}, {field.max()}]")
        for bit in range(shape.width):
            bits[:, offset + bit] = (field >> bit) & 1
    packed = np.packbits(bits, axis=1, bitorder="little")
    return [int.from_bytes(row.tobytes(), "little") for row in packed]


def unpack(layout, words):
    """Unpack N words (ints) into the nested structure `pack` takes, int64 leaves."""
    width = _width(layout)
    size = (width + 7) // 8
    raw = np.frombuffer(b"".join(int(word).to_bytes(size, "little") for word in words),
                        dtype=np.uint8).reshape(len(words), size)
    bits = np.unpackbits(raw, axis=1, bitorder="little")[:, :width].astype(np.int64)
    result = {}
    for path, offset, shape in leaves(layout):
        weights = np.left_shift(np.int64(1), np.arange(shape.width, dtype=np.int64))
        field = bits[:, offset:offset + shape.width] @ weights
        if shape.signed:
            field = field - (bits[:, offset + shape.width - 1] << shape.width)
        result[path] = field
    return _nest(layout, result, (), len(words))


def _nest(layout, flat, path, count):
    if isinstance(layout, data.StructLayout):
        return {name: _nest(field.shape, flat, path + (name,), count) for name, field in layout}
    if isinstance(layout, data.ArrayLayout):
        elements = [_nest(layout.elem_shape, flat, path + (index,), count)
                    for index in range(layout.length)]
        if elements and isinstance(elements[0], dict):
            raise TypeError("arrays of structs are not supported")
        return np.stack(elements, axis=1) if elements else np.zeros((count, 0), np.int64)
    return flat[path]
