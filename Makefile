# dqt-hw entry points. `make demo` and `make test` are the README's two Quickstart commands.
#
# Every target runs in the project's own virtual environment $(VENV), which `make install`
# creates from $(SYSTEM_PYTHON) without --system-site-packages: the machine's Python packages
# are neither used nor changed (Debian 12's python3 refuses `pip install` outside a venv,
# PEP 668). Use another interpreter with `make install SYSTEM_PYTHON=/usr/bin/python3.12`.
SYSTEM_PYTHON ?= python3
VENV ?= .venv
PYTHON := $(VENV)/bin/python
SIM ?= verilator
# pytest-xdist workers for `make test` (CI has two cores). Each test file runs on one worker
# (--dist loadfile), so its progress line times that file alone and its fixtures run once.
TEST_JOBS ?= 2
# Icarus Verilog (SIM=icarus), the Fashion-MNIST IDX files, and the RISC-V GCC and picolibc
# of the firmware; python3-venv only where $(SYSTEM_PYTHON) lacks ensurepip (Debian's own
# python3).
APT_PACKAGES := iverilog dataset-fashion-mnist gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf

.PHONY: install system-packages check-venv demo test sim sim-net sim-board sim-soc firmware rtl \
	rtl-check bench bench-train bench-export bench-hw bench-soc

install: $(VENV)/.installed check-venv

# apt-get runs only for what is missing, so a warm `make test` needs neither root nor network.
system-packages:
	@need="$(APT_PACKAGES)"; \
	$(SYSTEM_PYTHON) -c 'import ensurepip' 2>/dev/null || need="$$need python3-venv"; \
	missing=""; \
	for p in $$need; do \
	  dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q ' installed$$' || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if ! command -v apt-get >/dev/null; then \
	  echo "error: missing$$missing and no apt-get here; install them by hand (README)" >&2; exit 1; \
	fi; \
	echo "apt-get install$$missing"; \
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing

# Re-run when pyproject.toml changes; the editable install follows source edits by itself.
$(VENV)/.installed: pyproject.toml | system-packages
	@$(SYSTEM_PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { \
	  echo "error: $(SYSTEM_PYTHON) is Python $$($(SYSTEM_PYTHON) -V 2>&1); dqt-hw needs 3.11 or newer (make install SYSTEM_PYTHON=...)" >&2; exit 1; }
	$(SYSTEM_PYTHON) -m venv $(VENV)
	$(PYTHON) -m pip install -q -e '.[all]'
	@touch $@

# Fails when the venv could pick up packages from outside itself (see .ci/check_venv.py).
check-venv:
	@$(PYTHON) .ci/check_venv.py $(VENV)

demo: install
	$(PYTHON) -m dqt_hw.demo

test: install
	$(PYTHON) -m pytest -n $(TEST_JOBS) --dist loadfile

# Regenerate the committed Verilog under rtl/.
rtl: install
	$(PYTHON) -m dqt_hw.hdl

rtl-check: install
	$(PYTHON) -m dqt_hw.hdl --check

# Full cocotb regression on the generated Verilog (SIM=verilator or SIM=icarus).
sim: install
	$(MAKE) -C sim SIM=$(SIM) PYTHON=$(abspath $(PYTHON))

# Whole-network co-simulation of the accelerator (docs/accelerator.md):
#   make sim-net PKG=build/pkg-digits-dqt IMAGES=100 SIM=verilator
PKG ?=
IMAGES ?= 20
sim-net: install
	@test -n "$(PKG)" || { echo "error: give PKG=<package directory>"; exit 2; }
	$(PYTHON) sim/net.py --package $(PKG) --images $(IMAGES) --sim $(SIM) $(SIM_NET_ARGS)

# Firmware (docs/firmware.md): the runtime library, and with PKG=... the SoC's classify
# firmware for that package (FIRMWARE_ARGS: accelerator options of python -m dqt_hw.firmware).
FIRMWARE_ARGS ?=
firmware: install
	$(MAKE) -C firmware lib BUILD=$(CURDIR)/build/firmware
	@if [ -n "$(PKG)" ]; then \
	  $(PYTHON) -m dqt_hw.firmware $(PKG) --out build/firmware/model --images $(IMAGES) $(FIRMWARE_ARGS) && \
	  $(MAKE) -C firmware MODEL=$(CURDIR)/build/firmware/model BUILD=$(CURDIR)/build/firmware; fi

# The whole SoC on Verilator, firmware in ROM, compared with the golden model:
#   make sim-soc PKG=build/pkg-digits-dqt IMAGES=100 SIM_SOC_ARGS="--preset digits"
SIM_SOC_ARGS ?=
sim-soc: install
	@test -n "$(PKG)" || { echo "error: give PKG=<package directory>"; exit 2; }
	$(PYTHON) sim/soc.py --package $(PKG) --images $(IMAGES) $(SIM_SOC_ARGS)

# The simulated board (docs/boards.md): the bitstream's top level driven through its UART pins,
#   make sim-board PKG=build/pkg-digits-dqt BOARD=icebreaker IMAGES=20 BITS=8,4,2
BOARD ?= icebreaker
BITS ?= 8,4,2
sim-board: install
	@test -n "$(PKG)" || { echo "error: give PKG=<package directory>"; exit 2; }
	$(PYTHON) sim/board.py --package $(PKG) --board $(BOARD) --images $(IMAGES) --bits $(BITS) \
	  --sim $(SIM) $(SIM_BOARD_ARGS)

bench: bench-train bench-export bench-hw

bench-train: install
	$(PYTHON) -m train.bench

# Export the training benchmark's seed-0 checkpoints and compare package and PyTorch emulation.
bench-export: install
	for r in static-w4 dqt; do \
	  $(PYTHON) -m dqt_hw.export runs/bench-train/$$r-seed0/checkpoint.pt --out build/pkg-bench-$$r && \
	  $(PYTHON) -m dqt_hw.eval build/pkg-bench-$$r --dataset fashion-mnist \
	    --compare runs/bench-train/$$r-seed0/checkpoint.pt --json build/eval-bench-$$r.json || exit 1; \
	done

bench-hw: install
	$(PYTHON) -m dqt_hw.bench $(BENCH_HW_ARGS)

# Area of the soft CPUs (and with BENCH_SOC_ARGS="--soc FIRMWARE.bin" of the SoC).
BENCH_SOC_ARGS ?=
bench-soc: install
	$(PYTHON) -m dqt_hw.soc.bench $(BENCH_SOC_ARGS)
