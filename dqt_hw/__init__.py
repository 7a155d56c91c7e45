"""dqt-hw: FPGA co-design toolkit for dynamically quantized (DQT) neural networks."""

__version__ = "0.1.0"
