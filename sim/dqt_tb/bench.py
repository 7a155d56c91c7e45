"""The stream-in, stream-out test flow shared by the pipelined blocks and the MAC array."""

import cocotb
from cocotb.triggers import Event, ReadOnly, RisingEdge, SimTimeoutError, with_timeout

from .env import CLOCK_PERIOD_NS
from .streams import StallPolicy, StreamSink, StreamSource

__all__ = ["stream_exchange"]


async def stream_exchange(env, *, source, sink, words, sidebands=None, sideband_ports=(),
                          junk_sideband=True, expected_outputs, settle_cycles=16,
                          stalls=True):
    """Offer `words` (packed ints) on input stream `source` with random valid gaps, accept
    output stream `sink` with random back-pressure, and return the output words (ints).

    With `stalls=False` both sides run at full rate (for long runs whose point is not the
    handshake). `sidebands[i]` holds the sideband port values that go with `words[i]` (see
    `StreamSource`). Waits for `expected_outputs` words, then keeps accepting for
    `settle_cycles` more cycles, so a block that emits extra words is caught by the
    scoreboard's shape check, and fails if the block still offers a word after that.
    """
    received = []
    complete = Event()

    def collect(word):
        received.append(word)
        if len(received) == expected_outputs:
            complete.set()

    policy = env.stall_policy if stalls else (lambda: StallPolicy.never(env.random))
    driver = StreamSource(env.clock, env.dut, source, stall=policy(),
                          random=env.random, sideband=sideband_ports,
                          junk_sideband=junk_sideband)
    monitor = StreamSink(env.clock, env.dut, sink, stall=policy(),
                         callback=collect)
    for index, word in enumerate(words):
        driver.send(word, sidebands[index] if sidebands is not None else ())
    tasks = [cocotb.start_soon(driver.run()), cocotb.start_soon(monitor.run())]
    # Both sides stall up to 80 % of the time in some phases: allow ~50 cycles per word.
    timeout_cycles = 50 * max(len(words), expected_outputs) + 1000
    if expected_outputs:
        try:
            await with_timeout(complete.wait(), timeout_cycles * CLOCK_PERIOD_NS, "ns")
        except SimTimeoutError:
            raise AssertionError(f"{env.block}.{env.test}: timed out after {timeout_cycles} "
                                 f"cycles waiting for {expected_outputs} words on `{sink}` "
                                 f"(got {len(received)})") from None
    for _ in range(settle_cycles):
        await RisingEdge(env.clock)
    await ReadOnly()
    extra = bool(monitor.valid.value)
    for task in tasks:
        task.cancel()
    await RisingEdge(env.clock)                # leave the read-only phase: callers drive next
    if extra:
        raise AssertionError(f"`{sink}` offers a word after all {expected_outputs} expected "
                             f"ones (and {len(received) - expected_outputs} extra were taken)")
    return received
