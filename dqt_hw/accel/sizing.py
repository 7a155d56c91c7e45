"""An accelerator configuration sized to one model: memories no larger than the model needs.

A device's block RAM is small (the iCE40 UP5K has 30 blocks of 4 kbit), so an accelerator built
for one model gets memories rounded up to powers of two from what that model uses, the array
width asked for, and only the bit-widths the model runs. Used by `python -m dqt_hw.build
--model` and the board builds.
"""

import dataclasses

from ..accel.compiler import CompileError, compile_graph
from ..accel.config import AcceleratorConfig, GROUP_CODES

__all__ = ["fitted_config", "family_settings", "model_bits"]

# Generous limits for the first compile, which measures what the model uses.
_ROOMY = dict(data_words=1 << 15, program_words=1 << 14, wide_words=1 << 10,
              table_words=1 << 10, slots=64, max_ops=256)


# What a build for a device family fixes, for area: on iCE40 one pooling lane, the 8-bit
# products on DSP blocks, the short fetch lookahead without bypass, an elementwise engine
# that re-reads its operands lane by lane, a weight loader with 4 nest units, a tensor writer
# that writes each code at once, a write-only DATA window, and the data memory that the
# UP5K's four SPRAMs make (16384 words; nothing else there is large enough, so the model gets
# all of it).
_FAMILY_SETTINGS = {"ice40": dict(pool_lanes=1, dsp_wide=True, fetch_queue=2, fetch_groups=1,
                                  fetch_bypass=False, elementwise_buffered=False,
                                  narrow_loader=True, writer_staged=False, data_readable=False,
                                  data_words=16384)}


def family_settings(family):
    """The `AcceleratorConfig` fields that every build for `family` ("ice40", "ecp5") fixes:
    the same for `python -m dqt_hw.build --model` and the board builds."""
    return dict(_FAMILY_SETTINGS.get(family, {}))


def _power_of_two(value, low=1):
    value = max(value, low)
    return 1 << (value - 1).bit_length()


def model_bits(graph):
    """The bit-widths the graph's conv2d/linear layers run (fixed widths and candidates)."""
    selects = {op["output"]: op for op in graph["ops"] if op["op"] == "select_bits"}
    bits = {graph["master_bits"]}
    for op in graph["ops"]:
        if op["op"] not in ("conv2d", "linear"):
            continue
        if isinstance(op["bits"], dict):
            bits.update(int(b) for b in selects[op["bits"]["select"]]["candidates"])
        else:
            bits.add(int(op["bits"]))
    return tuple(sorted(bits))


def fitted_config(graph, *, cols, **overrides):
    """(config, compiled model) for `graph` with memories sized to it; `overrides` fix fields
    of `AcceleratorConfig` (e.g. data_words). Raises `CompileError` for a model the
    accelerator cannot run at all."""
    base = dict(cols=cols, supported_bits=model_bits(graph), **_ROOMY)
    base.update(overrides)
    # The shortest weight buffer that holds every dot product: a power-of-two multiple of 16.
    terms = overrides.get("max_terms")
    if terms is None:
        for terms in (GROUP_CODES << k for k in range(13)):
            try:
                compile_graph(graph, AcceleratorConfig(**dict(base, max_terms=terms)))
                break
            except CompileError as error:
                if "max_terms" not in str(error):
                    raise
        else:
            raise CompileError("a dot product is longer than the largest weight buffer "
                               f"({terms} codes)")
    roomy = compile_graph(graph, AcceleratorConfig(**dict(base, max_terms=terms)))
    wide = max((t.base + t.words for t in roomy.tensors.values() if t.wide), default=1)
    fitted = dict(
        max_terms=terms,
        data_words=_power_of_two(roomy.data_words_used, 2),
        program_words=_power_of_two(len(roomy.program), 16),
        wide_words=_power_of_two(wide),
        table_words=_power_of_two(len(roomy.table)),
        slots=max(1, len(roomy.slots)),
        max_ops=_power_of_two(len(roomy.ops)),
    )
    fitted.update(overrides)
    config = AcceleratorConfig(**dict(base, **fitted))
    return config, compile_graph(graph, config)


def describe_config(config):
    """A short, readable line of the fields that size the hardware."""
    fields = dataclasses.asdict(config)
    return ", ".join(f"{key}={value}" for key, value in fields.items()
                     if key not in ("master_bits",))
