"""A Wishbone classic master for cocotb: the transport `dqt_hw.accel.driver` drives.

The accelerator's bus port flattens to `bus__cyc`, `bus__stb`, `bus__we`, `bus__sel`,
`bus__adr` (word address), `bus__dat_w`, `bus__dat_r`, `bus__ack` in the Verilog Amaranth
writes. One transfer at a time; every access waits for `ack` (the accelerator acknowledges
every address, so this never hangs; `timeout_cycles` guards against a broken design).
"""

from cocotb.triggers import ReadOnly, RisingEdge, Timer

__all__ = ["WishboneMaster"]


class WishboneMaster:
    def __init__(self, dut, *, clock="clk", period_ns=10, prefix="bus__", timeout_cycles=64):
        self.dut = dut
        self.period_ns = period_ns
        self.clock = getattr(dut, clock)
        self.signals = {name: getattr(dut, prefix + name)
                        for name in ("cyc", "stb", "we", "sel", "adr", "dat_w", "dat_r", "ack")}
        self.timeout_cycles = timeout_cycles
        self.accesses = 0
        for name in ("cyc", "stb", "we"):
            self.signals[name].value = 0
        self.signals["sel"].value = 0xF

    async def _transfer(self, address, value=None):
        s = self.signals
        if address % 4:
            raise ValueError(f"bus addresses are 32-bit aligned, not {address:#x}")
        s["adr"].value = address >> 2
        s["we"].value = int(value is not None)
        if value is not None:
            s["dat_w"].value = value & 0xFFFFFFFF
        s["cyc"].value = 1
        s["stb"].value = 1
        for _ in range(self.timeout_cycles):
            await RisingEdge(self.clock)
            await ReadOnly()
            if s["ack"].value:
                data = int(s["dat_r"].value)
                break
        else:
            raise TimeoutError(f"no Wishbone ack within {self.timeout_cycles} cycles "
                               f"(address {address:#x})")
        await RisingEdge(self.clock)        # leave the read-only phase before driving
        s["cyc"].value = 0
        s["stb"].value = 0
        s["we"].value = 0
        self.accesses += 1
        return data

    async def read(self, address):
        return await self._transfer(address)

    async def write(self, address, value):
        await self._transfer(address, value)

    async def wait(self, cycles):
        """Let `cycles` clock cycles pass (the driver's pause between STATUS polls): one timer,
        not a wake-up per edge, so the simulator runs freely meanwhile."""
        await Timer(cycles * self.period_ns, unit="ns")
        await RisingEdge(self.clock)
