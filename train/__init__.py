"""Quantization-aware training for dqt-hw: static, DQT dynamic and baseline modes.

Modules: `data` (datasets, the input quantizer `to_master_codes`), `quant` (fake-quantizers
with straight-through gradients), `model` (the QResNet family and its modes), `integerize`
(`to_graph`: the golden integer description; `emulate`: its PyTorch integer interpreter),
`checkpoint` (atomic save, weights-only `load_model`), `fit` (the `python -m train.fit` CLI)
and `bench` (`python -m train.bench`). docs/training.md describes the modes and contracts.
"""
