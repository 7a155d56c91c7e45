"""The accelerator: a whole exported network in hardware (docs/accelerator.md).

The parts sit side by side, from the package down to the bus:

- `config`: `AcceleratorConfig`, the hardware parameters (array columns, memory sizes);
- `layout`: how tensors and weights sit in the data memory (nibble-split code groups);
- `program`: the instruction format the sequencer executes;
- `compiler`: package -> program and memory images (`python -m dqt_hw.accel.compile`);
- `regmap`: the register map of the host bus, with its generated docs table, C header, JSON;
- `driver`: a host-side driver that loads a compiled model and runs images over the bus.

The gateware is `dqt_hw.hdl.accelerator.Accelerator` and the blocks it instantiates.
"""
