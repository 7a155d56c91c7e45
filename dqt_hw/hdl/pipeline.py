"""A stream pipeline whose stages all advance together (shared by the requantizer, the residual
adder and the dequantize/requantize unit)."""

from amaranth.hdl import Signal

__all__ = ["stream_pipeline"]


def stream_pipeline(m, *, sink, source, stages):
    """Connect stream `sink` (an input of the block) to stream `source` (its output) through
    `stages`, a list of functions `stage(m, value) -> value`, each result registered.

    The first stage gets `sink.payload`; `source.payload` is the last stage's register. Every
    register advances when the output is empty or being taken, so the pipeline has latency
    `len(stages)` cycles and accepts one item per cycle unless `source` is back-pressured
    (bubbles are not squeezed out while the output is stalled). `sink.ready` does not depend on
    `sink.valid`. Reset clears the valid bits; the data registers inside have no reset.
    """
    advance = Signal()
    m.d.comb += [advance.eq(~source.valid | source.ready), sink.ready.eq(advance)]
    value, valid = sink.payload, sink.valid
    for index, stage in enumerate(stages):
        result = stage(m, value)
        if index == len(stages) - 1:
            register, register_valid = source.payload, source.valid
        else:
            # Data registers need no reset (only the valid bits do); without one a register
            # behind a multiplier becomes the DSP block's own output register.
            register = Signal(result.shape(), name=f"stage_{index}", reset_less=True)
            register_valid = Signal(name=f"stage_{index}_valid")
        with m.If(advance):
            m.d.sync += [register.eq(result), register_valid.eq(valid)]
        value, valid = register, register_valid
    return len(stages)
