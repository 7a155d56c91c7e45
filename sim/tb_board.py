"""The simulated board (sim/board.py): the host link's driver on the UART pins of the
bitstream's top level.

The job (env `DQT_BOARD_JOB`) names the package, the accelerator configuration, the design
clock, the baud rate, the top level's pins, the images with their golden results and the
pinned programs to measure. The bench drives the oscillator pin at the design clock (the PLL
model passes it through), then does what `python -m dqt_hw.run` does on a board: identify the
bridge, check the accelerator's identity and program, infer each image; every image's logits,
prediction and bits must equal the golden model's, and the done/error/busy LEDs must show the
accelerator's state.
"""

import json
import os
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import Timer
from cocotb.utils import get_sim_time

from dqt_hw.accel.compiler import compile_package
from dqt_hw.accel.config import AcceleratorConfig
from dqt_hw.accel.driver import AcceleratorDriver
from dqt_hw.boards.link import BridgeTransport
from dqt_hw.run import check_program, run_cascade_images, run_images
from dqt_tb.uart import UARTPort


def _job():
    path = os.environ.get("DQT_BOARD_JOB")
    if not path:
        raise RuntimeError("DQT_BOARD_JOB is not set: run this bench through sim/board.py")
    job = json.loads(Path(path).read_text())
    arrays = np.load(job["arrays"])
    return job, {key: arrays[key] for key in arrays.files}


def _led(dut, pins, role):
    name, inverted = pins["leds"][role]
    return int(getattr(dut, name).value) ^ int(inverted)


@cocotb.test()
async def board(dut):
    job, arrays = _job()
    config = AcceleratorConfig(**{k: tuple(v) if isinstance(v, list) else v
                                  for k, v in job["config"].items()})
    model = compile_package(job["package"], config)
    pins = job["pins"]
    period_ps = 2 * round(0.5e12 / job["clock_hz"])       # even: equal high and low halves
    cocotb.start_soon(Clock(getattr(dut, pins["clock"]), period_ps, unit="ps").start())
    port = UARTPort(getattr(dut, pins["rx"]), getattr(dut, pins["tx"]), job["baud"])
    await Timer(50, unit="us")                  # PLL lock and the 15 us power-on reset
    transport = BridgeTransport(port, timeout_s=0.01)
    driver = AcceleratorDriver(transport, model, poll_cycles=2000, max_polls=10000)
    # What `python -m dqt_hw.run` does before the images: identify the bridge, check the
    # accelerator's identity, load the model where the bitstream cannot hold it (the iCE40
    # SPRAM), check the program.
    started = get_sim_time(unit="ps")
    await run_images(driver, transport, [], load=not job["data_in_bitstream"], progress=False)
    load_s = (get_sim_time(unit="ps") - started) * 1e-12
    assert transport.clock_hz == round(job["clock_hz"]), transport.clock_hz
    leds_ok = _led(dut, pins, "done") == 0 and _led(dut, pins, "error") == 0

    records = []
    start_ps, start_out, start_in, start_frames = (get_sim_time(unit="ps"), transport.bytes_out,
                                                   transport.bytes_in, transport.frames)
    for index, codes in enumerate(arrays["images"]):
        result = await driver.infer(codes)
        logits = arrays["golden_logits"][index]
        bits = arrays.get("golden_bits")
        match = (np.array_equal(result.logits, logits)
                 and result.prediction == int(np.argmax(logits))
                 and (bits is None or [int(b) for b in bits[index]] == result.bits))
        records.append({"image": job["first"] + index, "prediction": result.prediction,
                        "label": int(arrays["labels"][index]), "bits": result.bits,
                        "cycles": result.cycles, "op_cycles": result.op_cycles,
                        "match": bool(match)})
        if not match:
            dut._log.error(f"image {job['first'] + index}: logits {result.logits.tolist()} "
                           f"bits {result.bits}; golden {logits.tolist()}")
        leds_ok &= _led(dut, pins, "done") == 1 and _led(dut, pins, "error") == 0 \
            and _led(dut, pins, "busy") == 0
    count = len(records)
    seconds = (get_sim_time(unit="ps") - start_ps) * 1e-12
    link = {"bytes_out_per_image": (transport.bytes_out - start_out) / count,
            "bytes_in_per_image": (transport.bytes_in - start_in) / count,
            "frames_per_image": (transport.frames - start_frames) / count,
            "seconds_per_image": seconds / count,
            "accelerator_seconds_per_image": float(np.mean([r["cycles"] for r in records]))
            / job["clock_hz"], "model_load_seconds": load_s}

    pinned_cycles, pinned_mismatches = {}, 0
    for bits, pin in job["pinned"].items():
        pinned = AcceleratorDriver(transport, compile_package(pin["package"], config),
                                   poll_cycles=2000, max_polls=10000)
        await pinned.load_model()
        await check_program(transport, pinned)
        result = await pinned.infer(arrays["images"][0])
        pinned_cycles[bits] = result.cycles
        if result.logits.tolist() != pin["golden_logits"]:
            pinned_mismatches += 1
            dut._log.error(f"pinned to {bits} bits: logits {result.logits.tolist()}; golden "
                           f"{pin['golden_logits']}")

    cascade = {}
    if job["cascade"]:
        # The precision cascade exactly as `python -m dqt_hw.run --cascade` runs it.
        spec = job["cascade"]
        low, high = (AcceleratorDriver(transport, compile_package(spec[f"{name}_package"],
                                                                  config),
                                       poll_cycles=2000, max_polls=10000)
                     for name in ("low", "high"))
        results, again, _ = await run_cascade_images(low, high, transport, arrays["images"],
                                                     spec["margin"], progress=False)
        wrong = [index for index, result in enumerate(results)
                 if not np.array_equal(result.logits, arrays["cascade_logits"][index])]
        wrong += [] if np.array_equal(again, arrays["cascade_again"]) else ["run twice"]
        for index in wrong:
            dut._log.error(f"cascade: {index} differs from the golden cascade")
        cascade = {"run_twice": int(again.sum()), "mismatches": len(wrong)}

    Path(job["report"]).write_text(json.dumps({
        "images": records, "leds_ok": bool(leds_ok), "link": link,
        "pinned_cycles": pinned_cycles, "pinned_mismatches": pinned_mismatches,
        **({"cascade": cascade} if cascade else {})}))
    mismatches = sum(not r["match"] for r in records)
    assert mismatches == 0, f"{mismatches} of {count} images differ from the golden model"
    assert pinned_mismatches == 0, "a pinned run differs from the golden model"
    assert not cascade.get("mismatches"), "the cascade differs from the golden cascade"
    assert leds_ok, "the status LEDs do not show the accelerator's state"
