"""Whole-network co-simulation: the accelerator's Verilog runs a compiled package image by
image, loaded and driven over its bus exactly as a host would (`dqt_hw.accel.driver`).

The job (env `DQT_NET_JOB`, a JSON file written by sim/net.py) names the package, the
accelerator configuration, an .npz with the images and the expected integers (the golden
interpreter on the package and the PyTorch integer emulation of the checkpoint), and where to
write the per-image report. Every image's logits, prediction and per-layer bit choices must
equal both references exactly.
"""

import json
import os
import time
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles

from dqt_hw.accel.compiler import compile_package
from dqt_hw.accel.config import AcceleratorConfig
from dqt_hw.accel.driver import AcceleratorDriver
from dqt_tb.wishbone import WishboneMaster


def _job():
    path = os.environ.get("DQT_NET_JOB")
    if not path:
        raise RuntimeError("DQT_NET_JOB is not set: run this bench through sim/net.py")
    job = json.loads(Path(path).read_text())
    arrays = np.load(job["arrays"])
    return job, {key: arrays[key] for key in arrays.files}


@cocotb.test()
async def network(dut):
    job, arrays = _job()
    config = AcceleratorConfig(**{k: tuple(v) if isinstance(v, list) else v
                                  for k, v in job["config"].items()})
    model = compile_package(job["package"], config)
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    await ClockCycles(dut.clk, 2)        # no reset input: registers start at their inits
    bus = WishboneMaster(dut)
    driver = AcceleratorDriver(bus, model, poll_cycles=job["poll_cycles"])
    await driver.check_identity()
    started = time.perf_counter()
    await driver.load_model()
    load_s = time.perf_counter() - started
    images = arrays["images"]
    records = []
    report_path = Path(job["report"])
    started = time.perf_counter()
    for index, codes in enumerate(images):
        result = await driver.infer(codes)
        record = {"image": int(job["first"] + index), "prediction": result.prediction,
                  "bits": [int(b) for b in result.bits], "cycles": result.cycles,
                  "op_cycles": result.op_cycles}
        for ref in ("golden", "torch"):
            if f"{ref}_logits" not in arrays:
                continue
            logits, bits = arrays[f"{ref}_logits"][index], arrays.get(f"{ref}_bits")
            record[f"logits_match_{ref}"] = bool(np.array_equal(result.logits, logits))
            record[f"prediction_match_{ref}"] = result.prediction == int(np.argmax(logits))
            record[f"bits_match_{ref}"] = (bits is None or
                                           [int(b) for b in bits[index]] == record["bits"])
        if "labels" in arrays:
            record["label"] = int(arrays["labels"][index])
        records.append(record)
        if not all(v for k, v in record.items() if "_match_" in k):
            dut._log.error(f"image {record['image']}: mismatch: accelerator logits "
                           f"{result.logits.tolist()} bits {record['bits']}; golden "
                           f"{arrays['golden_logits'][index].tolist()}")
    run_s = time.perf_counter() - started
    report = {"images": records, "load_s": load_s, "run_s": run_s,
              "bus_accesses": bus.accesses}
    report_path.write_text(json.dumps(report))
    mismatches = sum(not all(v for k, v in r.items() if "_match_" in k) for r in records)
    assert mismatches == 0, f"{mismatches} of {len(records)} images differ from the references"
