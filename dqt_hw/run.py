"""python -m dqt_hw.run: classify test images on a board over its USB serial port.

    python -m dqt_hw.run --build build/icebreaker-pkg-digits-dqt --port /dev/ttyUSB1 --images 100
    python -m dqt_hw.run --build DIR --port /dev/ttyUSB1 --program      # flash first

`--build` is the folder `python -m dqt_hw.build --board ...` wrote (board.json names the
board, the package and the accelerator configuration). The host identifies the bridge, checks
the accelerator's ID, VERSION and CONFIG registers against the package (`AcceleratorDriver.
check_identity`) and that the program in the board is this package's (or loads the package
over the link with `--load`), then runs the images one by one and prints accuracy, agreement
with the golden model (logits, predictions, chosen bits), the bits histogram and images/s, with
the accelerator's own time (its cycle counters) beside the link's. docs/boards.md.

`--cascade LOW,HIGH` runs the package as a precision cascade (docs/export-format.md,
§Evaluation): the host loads the package's program pinned to LOW bits and runs every image,
then loads the program pinned to HIGH bits and runs again the images whose logit margin is
below the threshold (`--margin`, or from `--share` of the training images); each image's
answer is compared with the golden cascade.
"""

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

__all__ = ["main", "run_images", "run_cascade_images", "program_board", "check_program",
           "golden_outputs"]


def program_board(board, bitstream):
    """Flash `bitstream` with the board's programmer (iceprog, openFPGALoader)."""
    command, *args = board.programmer
    found = shutil.which(command)
    if found is None:
        package = {"iceprog": "fpga-icestorm", "openFPGALoader": "openfpgaloader"}[command]
        raise OSError(f"{command} not found: install it (Debian: apt-get install {package}) "
                      f"to flash {bitstream}, or flash it another way and leave out --program")
    done = subprocess.run([found, *args, str(bitstream)], capture_output=True, text=True)
    if done.returncode != 0:
        reason = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
        raise OSError(f"{command} failed (exit {done.returncode}): {reason}")


async def check_program(transport, driver):
    """Raise unless the board's program memory holds this model's program."""
    from .accel.driver import AcceleratorError
    words = await transport.read_words(driver.regmap["PROGRAM"].offset,
                                       len(driver.model.program))
    if words != [int(w) for w in driver.model.program]:
        raise AcceleratorError("the board holds another model's program (built from another "
                               "package?); rebuild the bitstream or pass --load")


async def run_images(driver, transport, codes, *, load=False, progress=True):
    """Identify, check, load the model when `load` (a bitstream whose data memory cannot
    hold it, or `--load`), then infer every image; (results, seconds)."""
    from tqdm import tqdm
    await transport.identify()
    await driver.check_identity()
    if load:
        if progress:
            print(f"loading the model over the link ({len(driver.model.data)} data words)",
                  file=sys.stderr)
        await driver.load_model()
    await check_program(transport, driver)
    results = []
    started = time.perf_counter()
    for image in tqdm(codes, desc="images", unit="img", disable=not progress,
                      file=sys.stderr):
        results.append(await driver.infer(image))
    return results, time.perf_counter() - started


async def run_cascade_images(low, high, transport, codes, margin, *, progress=True):
    """The precision cascade on the board: `low` and `high` are drivers of the package's
    programs pinned to the two widths (one transport). Identify, load and check the low
    program, infer every image; load and check the high program, infer again the images whose
    logit margin is below `margin`. (results, run twice (N,) bool, seconds)."""
    from tqdm import tqdm
    from .eval import logit_margin
    await transport.identify()
    await low.check_identity()
    started = time.perf_counter()

    async def run_pass(driver, indices, desc):
        await driver.load_model()
        await check_program(transport, driver)
        return [await driver.infer(codes[i])
                for i in tqdm(indices, desc=desc, unit="img", disable=not progress,
                              file=sys.stderr)]
    results = await run_pass(low, range(len(codes)), "low width")
    again = logit_margin(np.stack([r.logits for r in results])) < margin
    rerun = np.flatnonzero(again)
    if len(rerun):
        for index, result in zip(rerun, await run_pass(high, rerun, "again")):
            results[index] = result
    return results, again, time.perf_counter() - started


def golden_outputs(graph, codes, batch=500):
    """Logits and the chosen bit-widths of every select_bits op in op order (the
    accelerator's slots) from the golden interpreter: {"logits", "bits" or None}."""
    from .golden import run_graph
    selects = [op["output"] for op in graph["ops"] if op["op"] == "select_bits"]
    name = next(iter(graph["inputs"]))
    logits, bits = [], []
    for start in range(0, len(codes), batch):
        env = run_graph(graph, {name: codes[start:start + batch]}, keep_all=True)
        logits.append(env["logits"])
        if selects:
            bits.append(np.concatenate([env[s] for s in selects], axis=1))
    return {"logits": np.concatenate(logits),
            "bits": np.concatenate(bits) if selects else None}


def summarize(results, seconds, golden, labels, clock_hz, model):
    """The run's summary against `golden` ({"logits", "bits" or None}: bits are compared and
    counted only when given)."""
    logits = np.stack([r.logits for r in results])
    bits = (np.array([r.bits for r in results])
            if results[0].bits and golden["bits"] is not None else None)
    cycles = np.array([r.cycles for r in results], dtype=np.float64)
    summary = {
        "images": len(results),
        "accuracy": float(np.mean(logits.argmax(axis=1) == labels)),
        "golden_accuracy": float(np.mean(golden["logits"].argmax(axis=1) == labels)),
        "identical_logits": int(np.sum(np.all(logits == golden["logits"], axis=1))),
        "identical_predictions": int(np.sum(logits.argmax(1) == golden["logits"].argmax(1))),
        "seconds": seconds, "images_per_s": len(results) / seconds,
        "cycles_mean": float(cycles.mean()),
        "accelerator_s_per_image": float(cycles.mean() / clock_hz),
        "link_s_per_image": seconds / len(results) - float(cycles.mean() / clock_hz),
    }
    if bits is not None:
        summary["identical_bits"] = int(np.sum(np.all(bits == golden["bits"], axis=1)))
        summary["bits_histogram"] = {
            slot["layer"]: {str(b): int(np.sum(bits[:, i] == b)) for b in sorted(set(bits[:, i]))}
            for i, slot in enumerate(model.slots)}
    return summary


def format_summary(s):
    n = s["images"]
    lines = [f"{n} images: top-1 {100 * s['accuracy']:.2f} % (golden model "
             f"{100 * s['golden_accuracy']:.2f} %)",
             f"agreement with the golden model: logits {s['identical_logits']}/{n}, "
             f"predictions {s['identical_predictions']}/{n}"
             + (f", bits {s['identical_bits']}/{n}" if "identical_bits" in s else "")]
    for layer, hist in s.get("bits_histogram", {}).items():
        lines.append(f"  {layer}: " + ", ".join(f"{b} bits x{c}" for b, c in hist.items()))
    if "cascade" in s:
        c = s["cascade"]
        lines.append(f"cascade {c['low']} -> {c['high']} bits, margin threshold {c['margin']}: "
                     f"{c['run_twice']} of {n} images run twice (golden cascade: "
                     f"{c['golden_run_twice']})")
    lines.append(f"{s['images_per_s']:.1f} images/s: accelerator "
                 f"{1e3 * s['accelerator_s_per_image']:.3f} ms/image "
                 f"({s['cycles_mean']:.0f} cycles), link "
                 f"{1e3 * s['link_s_per_image']:.3f} ms/image")
    return "\n".join(lines)


def _parser():
    from .eval import add_cascade_arguments
    parser = argparse.ArgumentParser(prog="python -m dqt_hw.run",
                                     description=__doc__.split("\n\n")[2],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", type=Path, required=True,
                        help="board build folder (python -m dqt_hw.build --board ...)")
    parser.add_argument("--port", required=True, help="serial port, e.g. /dev/ttyUSB1")
    parser.add_argument("--dataset", default=None,
                        help="digits or fashion-mnist (default: the package's)")
    parser.add_argument("--images", type=int, default=100, help="test images (100)")
    parser.add_argument("--first", type=int, default=0, help="first test image (0)")
    parser.add_argument("--program", action="store_true",
                        help="flash the build's bitstream first (iceprog / openFPGALoader)")
    parser.add_argument("--load", action="store_true",
                        help="load the package over the link (a bitstream built for another "
                             "package with the same configuration; always done where the "
                             "data memory cannot be initialised, the iCEBreaker's SPRAM)")
    parser.add_argument("--timeout", type=float, default=2.0,
                        help="seconds to wait for each answer, and (x100) for a run (2)")
    parser.add_argument("--json", type=Path, default=None, help="write the summary here")
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    add_cascade_arguments(parser, "run")
    return parser


def main(argv=None):
    args = _parser().parse_args(argv)
    from .accel.compiler import CompileError, compile_graph, compile_package
    from .accel.config import AcceleratorConfig
    from .accel.driver import AcceleratorDriver, AcceleratorError
    from .boards.catalog import check_board
    from .boards.link import BridgeTransport, LinkError, open_serial
    from .eval import (cascade_arguments, cascade_margin, check_cascade_package,
                       load_test_set, run_cascade)
    from .package import PackageError, load_package, pin_bits
    try:
        if args.images < 1:
            raise ValueError(f"`--images` must be a positive integer, not {args.images}")
        cascade = cascade_arguments(args)
        info_path = args.build / "board.json"
        if not info_path.is_file():
            raise ValueError(f"{args.build} is not a board build folder (no board.json); "
                             f"python -m dqt_hw.build --board ... makes one")
        info = json.loads(info_path.read_text())
        board = check_board(info["board"])
        config = AcceleratorConfig(**{k: tuple(v) if isinstance(v, list) else v
                                      for k, v in info["config"].items()})
        graph, manifest = load_package(info["package"])
        if cascade:
            check_cascade_package(graph, info["package"])
        model = compile_package(info["package"], config)
        dataset = args.dataset or manifest.get("metadata", {}).get("dataset")
        if not dataset:
            raise ValueError("the package does not name its dataset; give --dataset")
        codes, labels = load_test_set(dataset, graph["master_bits"],
                                      next(iter(graph["inputs"].values()))["shape"])
        if args.first + args.images > len(codes):
            raise ValueError(f"{dataset} has {len(codes)} test images; --first {args.first} "
                             f"--images {args.images} asks beyond that")
        codes = codes[args.first:args.first + args.images]
        labels = labels[args.first:args.first + args.images]
        if args.program:
            print(f"flashing {args.build / info['bitstream']} ...", file=sys.stderr)
            program_board(board, args.build / info["bitstream"])
            time.sleep(1.0)
        port = open_serial(args.port, info["baud"])
        port.drain()
        transport = BridgeTransport(port, timeout_s=args.timeout)
        poll_s = 1e-3
        driver = AcceleratorDriver(transport, model,
                                   poll_cycles=max(1, int(poll_s * info["clock_hz"])),
                                   max_polls=max(1, int(100 * args.timeout / poll_s)))
        load = args.load or not info.get("data_in_bitstream", True)
        if cascade is None:
            results, seconds = asyncio.run(run_images(driver, transport, codes, load=load,
                                                      progress=args.progress))
            golden = golden_outputs(graph, codes)
        else:
            low, high, share, margin = cascade
            if margin is None:
                margin, _ = cascade_margin(graph, dataset, low, share, progress=args.progress)
            pinned = [AcceleratorDriver(transport, compile_graph(pin_bits(graph, b), config),
                                        poll_cycles=driver.poll_cycles,
                                        max_polls=driver.max_polls) for b in (low, high)]
            results, again, seconds = asyncio.run(run_cascade_images(
                *pinned, transport, codes, margin, progress=args.progress))
            logits, golden_again = run_cascade(graph, codes, low, high, margin,
                                               progress=False)
            golden = {"logits": logits, "bits": None}
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, LinkError, AcceleratorError, CompileError,
            PackageError) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"error: {message}", file=sys.stderr)
        return 2
    summary = summarize(results, seconds, golden, labels, info["clock_hz"], model)
    if cascade is not None:
        summary["cascade"] = {"low": low, "high": high, "margin": margin,
                              "run_twice": int(again.sum()),
                              "golden_run_twice": int(golden_again.sum()),
                              "identical_run_twice": bool(np.array_equal(again, golden_again))}
    summary.update(board=board.name, port=args.port, dataset=dataset, first=args.first,
                   bytes_out=transport.bytes_out, bytes_in=transport.bytes_in)
    print(format_summary(summary))
    if args.json:
        from .atomic import write_atomic
        write_atomic(args.json, json.dumps(summary, indent=1) + "\n")
    same = summary.get("cascade", {}).get("identical_run_twice", True)
    return 0 if summary["identical_logits"] == summary["images"] and same else 1


if __name__ == "__main__":
    sys.exit(main())
