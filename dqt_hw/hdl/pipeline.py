"""A stream pipeline whose stages all advance together (shared by the requantizer, the residual
adder and the dequantize/requantize unit)."""

from amaranth.hdl import Signal, Value

__all__ = ["stream_pipeline"]


def stream_pipeline(m, *, sink, source, stages, tag=None):
    """Connect stream `sink` (an input of the block) to stream `source` (its output) through
    `stages`, a list of functions `stage(m, value) -> value`, each result registered.

    The first stage gets `sink.payload`; `source.payload` is the last stage's register. Every
    register advances when the output is empty or being taken, so the pipeline has latency
    `len(stages)` cycles and accepts one item per cycle unless `source` is back-pressured
    (bubbles are not squeezed out while the output is stalled). `sink.ready` does not depend on
    `sink.valid`. Reset clears the valid bits; the data registers inside have no reset.

    With `tag` = (input value, output value) a sideband of each item travels beside it through
    every stage; the last stage's result then goes to `source.payload.value` and the tag to
    the output value (`source.payload.tag` in the blocks that use it).
    """
    advance = Signal()
    m.d.comb += [advance.eq(~source.valid | source.ready), sink.ready.eq(advance)]
    value, valid = sink.payload, sink.valid
    tag_value = tag[0] if tag is not None else None
    for index, stage in enumerate(stages):
        result = stage(m, value)
        if index == len(stages) - 1:
            register = source.payload if tag is None else source.payload.value
            register_valid = source.valid
            tag_register = tag[1] if tag is not None else None
        else:
            # Data registers need no reset (only the valid bits do); without one a register
            # behind a multiplier becomes the DSP block's own output register.
            register = Signal(result.shape(), name=f"stage_{index}", reset_less=True)
            register_valid = Signal(name=f"stage_{index}_valid")
            tag_register = (Signal(Value.cast(tag_value).shape(), name=f"stage_{index}_tag",
                                   reset_less=True) if tag is not None else None)
        with m.If(advance):
            m.d.sync += [register.eq(result), register_valid.eq(valid)]
            if tag is not None:
                m.d.sync += tag_register.eq(tag_value)
        value, valid, tag_value = register, register_valid, tag_register
    return len(stages)
