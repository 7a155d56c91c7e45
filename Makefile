# dqt-hw entry points. `make demo` and `make test` are the README's two Quickstart commands.
PYTHON ?= python3
SIM ?= verilator

.PHONY: install demo test sim rtl bench bench-train bench-hw

# System packages (Icarus Verilog for SIM=icarus, Fashion-MNIST IDX files) and the Python
# package with every extra. Needs root for apt-get, as on a fresh machine or CI.
install:
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iverilog dataset-fashion-mnist
	$(PYTHON) -m pip install -q -e '.[all]'

demo: install
	$(PYTHON) -m dqt_hw.demo

test: install
	$(PYTHON) -m pytest -q

# Regenerate the committed Verilog under rtl/.
rtl:
	$(PYTHON) -m dqt_hw.hdl

# Full cocotb regression on the generated Verilog (SIM=verilator or SIM=icarus).
sim:
	$(MAKE) -C sim SIM=$(SIM)

bench: bench-train bench-hw

bench-train:
	$(PYTHON) -m train.bench

bench-hw:
	$(PYTHON) -m dqt_hw.bench
