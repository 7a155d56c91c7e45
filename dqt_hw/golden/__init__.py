"""The NumPy integer golden model: the oracle every other part of dqt-hw is checked against.

Integers only on the inference path; the normative description is docs/arithmetic.md.
"""

from .codes import (MIN_MASTER_BITS, MAX_MASTER_BITS, MIN_BITS, code_range, check_master_bits,
                    check_bits, check_codes, as_codes, nest)
from .constants import MULTIPLIER_BITS, quantize_multiplier, accumulator_bits, requantizer_bits
from .ops import (round_shift, requantize, conv2d, linear, nested_conv2d, nested_linear, add,
                  multiply, sum_pool2d, global_sum_pool, avg_pool2d, global_avg_pool, clip)
from .graph import (GRAPH_FORMAT, GRAPH_VERSION, OP_FIELDS, GraphError, validate_graph,
                    run_graph, layer_terms)

__all__ = [
    "MIN_MASTER_BITS", "MAX_MASTER_BITS", "MIN_BITS", "code_range", "check_master_bits",
    "check_bits", "check_codes", "as_codes", "nest",
    "MULTIPLIER_BITS", "quantize_multiplier", "accumulator_bits", "requantizer_bits",
    "round_shift", "requantize", "conv2d", "linear", "nested_conv2d", "nested_linear", "add",
    "multiply", "sum_pool2d", "global_sum_pool", "avg_pool2d", "global_avg_pool", "clip",
    "GRAPH_FORMAT", "GRAPH_VERSION", "OP_FIELDS", "GraphError", "validate_graph", "run_graph",
    "layer_terms",
]
