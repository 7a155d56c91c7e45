# amaranth: UnusedElaboratable=no
# (A build that stops early, on a too-large array or a tool error, leaves blocks unelaborated.)
"""The blocks a build synthesizes, each made from the build configuration.

The components themselves live in `dqt_hw.hdl` (the RTL issue); this table only says which
ones a build covers, with which parameters, and which facts of each (latency, products per
cycle) the report quotes.
"""

import dataclasses

from ..hdl.dequant_requant import DequantRequant
from ..hdl.mac_array import MacArray
from ..hdl.nest_unit import NestUnit
from ..hdl.pe import ProcessingElement
from ..hdl.requantizer import Requantizer
from ..hdl.residual_adder import ResidualAdder

__all__ = ["BlockSpec", "BLOCKS", "ARRAY_BLOCK", "build_blocks"]

#: The name of the whole-array build (synthesized last, after the capacity estimate).
ARRAY_BLOCK = "mac_array"


@dataclasses.dataclass(frozen=True)
class BlockSpec:
    name: str
    description: str
    make: object                          # BuildConfig -> wiring.Component
    facts: object = lambda component: {}  # component -> dict of facts quoted in the report


def _latency(component):
    return {"latency_cycles": int(component.latency)}


def _pe_facts(config):
    def facts(component):
        return {"latency_cycles": int(component.latency),
                "products_per_cycle": {str(b): component.products_per_cycle(b)
                                       for b in config.candidates}}
    return facts


def _pe(config, scalable):
    return ProcessingElement(master_bits=config.master_bits, scalable=scalable,
                                 supported_bits=config.candidates,
                                 acc_width=config.accumulator_width)


def _array_facts(config):
    def facts(component):
        return {"latency_cycles": int(component.latency),
                "products_per_cycle": {str(b): component.macs_per_cycle(b)
                                       for b in config.candidates}}
    return facts


BLOCKS = (
    BlockSpec("nest_unit_unsigned", "nest unit, activations (unsigned master code -> b bits)",
              lambda config: NestUnit(master_bits=config.master_bits, signed=False),
              _latency),
    BlockSpec("nest_unit_signed", "nest unit, weights (signed master code -> b bits)",
              lambda config: NestUnit(master_bits=config.master_bits, signed=True),
              _latency),
    BlockSpec("dequant_requant_unsigned", "dequantize/requantize unit, activations: int -> "
              "float32 -> x scale -> round -> b-bit code", lambda config: DequantRequant(
                  master_bits=config.master_bits, signed=False), _latency),
    BlockSpec("dequant_requant_signed", "dequantize/requantize unit, weights",
              lambda config: DequantRequant(master_bits=config.master_bits, signed=True),
              _latency),
    BlockSpec("pe_scalable", "precision-scalable PE (Bit Fusion bricks), accumulator included",
              lambda config: _pe(config, True), None),
    BlockSpec("pe_fixed", "fixed n x n MAC from the same generator (the baseline)",
              lambda config: _pe(config, False), None),
    BlockSpec("requantizer", "requantizer: per-channel M, r, bias; shift follows b",
              lambda config: Requantizer(master_bits=config.master_bits,
                                         max_terms=config.terms),
              _latency),
    BlockSpec("residual_adder", "residual adder with k-constants (unsigned codes)",
              lambda config: ResidualAdder(master_bits=config.master_bits, signed=False),
              _latency),
    BlockSpec(ARRAY_BLOCK, "rows x cols scalable PEs with nest units and stream ports",
              lambda config: MacArray(rows=config.rows, cols=config.cols,
                                          master_bits=config.master_bits,
                                          max_terms=config.terms, acc_width=config.acc_bits,
                                          scalable=True, supported_bits=config.candidates),
              None),
)

#: Blocks whose facts depend on the configuration (products per cycle per candidate b).
_CONFIG_FACTS = {"pe_scalable": _pe_facts, "pe_fixed": _pe_facts, ARRAY_BLOCK: _array_facts}


def build_blocks(config):
    """[(BlockSpec, component)] for `config`, the array last; ValueError on bad parameters."""
    known = {spec.name: spec for spec in BLOCKS}
    names = config.blocks if config.blocks is not None else tuple(known)
    # The whole accelerator is built by the flow itself, for --model (build/accelerator.py).
    names = tuple(name for name in names if name != "accelerator")
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"`--blocks` must name blocks among {', '.join(known)}, "
                         f"not {', '.join(unknown)}")
    if ARRAY_BLOCK in names and "pe_scalable" not in names:
        # The array's capacity check scales up the PE's synthesized size (flow.py).
        names = tuple(names) + ("pe_scalable",)
    chosen = [known[name] for name in known if name in names]
    built = []
    for spec in chosen:
        if spec.name in _CONFIG_FACTS:
            spec = dataclasses.replace(spec, facts=_CONFIG_FACTS[spec.name](config))
        built.append((spec, spec.make(config)))
    return built
