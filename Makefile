# dqt-hw entry points. `make demo` and `make test` are the README's two Quickstart commands.
PYTHON ?= python3
SIM ?= verilator

.PHONY: install demo test sim sim-net sim-board rtl rtl-check bench bench-train bench-export bench-hw

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

rtl-check:
	$(PYTHON) -m dqt_hw.hdl --check

# Full cocotb regression on the generated Verilog (SIM=verilator or SIM=icarus).
sim:
	$(MAKE) -C sim SIM=$(SIM)

# Whole-network co-simulation of the accelerator (docs/accelerator.md):
#   make sim-net PKG=build/pkg-digits-dqt IMAGES=100 SIM=verilator
PKG ?=
IMAGES ?= 20
sim-net:
	@test -n "$(PKG)" || { echo "error: give PKG=<package directory>"; exit 2; }
	$(PYTHON) sim/net.py --package $(PKG) --images $(IMAGES) --sim $(SIM) $(SIM_NET_ARGS)

# The simulated board (docs/boards.md): the bitstream's top level driven through its UART pins,
#   make sim-board PKG=build/pkg-digits-dqt BOARD=icebreaker IMAGES=20 BITS=8,4,2
BOARD ?= icebreaker
BITS ?= 8,4,2
sim-board:
	@test -n "$(PKG)" || { echo "error: give PKG=<package directory>"; exit 2; }
	$(PYTHON) sim/board.py --package $(PKG) --board $(BOARD) --images $(IMAGES) --bits $(BITS) \
	  --sim $(SIM) $(SIM_BOARD_ARGS)

bench: bench-train bench-export bench-hw

bench-train:
	$(PYTHON) -m train.bench

# Export the training benchmark's seed-0 checkpoints and compare package and PyTorch emulation.
bench-export:
	for r in static-w4 dqt; do \
	  $(PYTHON) -m dqt_hw.export runs/bench-train/$$r-seed0/checkpoint.pt --out build/pkg-bench-$$r && \
	  $(PYTHON) -m dqt_hw.eval build/pkg-bench-$$r --dataset fashion-mnist \
	    --compare runs/bench-train/$$r-seed0/checkpoint.pt --json build/eval-bench-$$r.json || exit 1; \
	done

bench-hw:
	$(PYTHON) -m dqt_hw.bench $(BENCH_HW_ARGS)
