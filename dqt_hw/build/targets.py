"""FPGA targets: how to synthesize for them, how to place and route, and what they hold.

Capacities are from the vendor data sheets (Lattice iCE40 UltraPlus DS1056, ECP5 DS1044) and
agree with nextpnr's utilisation report for the same devices.
"""

import dataclasses

__all__ = ["Target", "TARGETS", "CELL_CLASSES", "classify_cells", "check_target", "capacity_use"]


@dataclasses.dataclass(frozen=True)
class Target:
    """One device: Yosys synthesis command, nextpnr family and flags, capacity by resource."""
    name: str
    family: str                 # "ice40" or "ecp5": picks synth_<family> and nextpnr-<family>
    nextpnr_device: tuple       # device and package flags of nextpnr-<family>
    capacity: dict              # resource -> count on the device (see CELL_CLASSES)
    #: nextpnr --freq: the timing-driven placer aims here; timing failure is allowed, the
    #: report gives the achieved Fmax.
    target_mhz: float

    def lut_sites(self, resources):
        """LUT4 sites a design occupies: on ECP5 each CCU2C carry cell holds two LUT4s of its
        own; an iCE40 SB_CARRY sits in the logic cell of a LUT4 already counted."""
        if self.family == "ecp5":
            return resources["LUT4"] + 2 * resources["carry"]
        return resources["LUT4"]

    def synth_command(self, top, *, dsp, flatten=True):
        """The Yosys synthesis command (flattened by default, so one `stat` covers the whole
        design), after `RELAX_COLLISIONS`."""
        hierarchy = "" if flatten else " -noflatten"
        if self.family == "ice40":
            synth = f"synth_ice40 -top {top}" + (" -dsp" if dsp else "") + hierarchy
        else:
            synth = f"synth_ecp5 -top {top}" + ("" if dsp else " -nodsp") + hierarchy
        return f"{RELAX_COLLISIONS}; {synth}"


#: Amaranth's memory read ports return the old word when they read an address in the cycle it
#: is written; the iCE40 block RAM does not, and Yosys emulates it with a write-data register
#: and a bypass per port (about 500 iCE40 logic cells in the accelerator). No design here uses
#: such a read (the accelerator's ports are checked in simulation, docs/accelerator.md
#: "Memories"), so synthesis is told that its result is undefined. Every memory here has one
#: write port (the mask has one bit per write port).
RELAX_COLLISIONS = "setparam -set COLLISION_X_MASK 1'1 t:$memrd_v2"

TARGETS = {target.name: target for target in (
    Target("ice40-up5k", "ice40", ("--up5k", "--package", "sg48"),
           {"LUT4": 5280, "FF": 5280, "DSP": 8, "BRAM": 30, "SPRAM": 4, "LC": 5280}, 48.0),
    Target("ecp5-25f", "ecp5", ("--25k", "--package", "CABGA381"),
           {"LUT4": 24288, "FF": 24288, "DSP": 28, "BRAM": 56, "SPRAM": 0}, 150.0),
    Target("ecp5-85f", "ecp5", ("--85k", "--package", "CABGA381"),
           {"LUT4": 83640, "FF": 83640, "DSP": 156, "BRAM": 208, "SPRAM": 0}, 150.0),
)}

#: Mapped cell types of both families, by the resource they use. Carry cells are counted as
#: cells (SB_CARRY: one bit; CCU2C: two bits and their two LUT4s, so on ECP5 a CCU2C also
#: counts as two LUT4 against the device capacity). "other" collects muxes, I/O and the rest.
CELL_CLASSES = {
    "LUT4": ("SB_LUT4", "LUT4"),
    "carry": ("SB_CARRY", "CCU2C"),
    "FF": ("SB_DFF", "SB_DFFE", "SB_DFFSR", "SB_DFFR", "SB_DFFS", "SB_DFFESR", "SB_DFFER",
           "SB_DFFES", "SB_DFFSS", "SB_DFFESS", "SB_DFFN", "SB_DFFNE", "SB_DFFNSR",
           "SB_DFFNR", "SB_DFFNS", "SB_DFFNESR", "SB_DFFNER", "SB_DFFNES", "SB_DFFNSS",
           "SB_DFFNESS", "TRELLIS_FF"),
    "DSP": ("SB_MAC16", "MULT18X18D", "ALU54B"),
    "BRAM": ("SB_RAM40_4K", "DP16KD"),
    "SPRAM": ("SB_SPRAM256KA",),
    "LUTRAM": ("TRELLIS_DPR16X4",),
}


def classify_cells(cells):
    """{resource: count} from Yosys's cell counts by type (`toolchain.read_yosys_stat`)."""
    counts = {resource: 0 for resource in CELL_CLASSES}
    counts["other"] = 0
    for cell, count in cells.items():
        for resource, names in CELL_CLASSES.items():
            if cell in names:
                counts[resource] += count
                break
        else:
            counts["other"] += count
    return counts


def check_target(name):
    """The `Target` called `name`, or a ValueError listing the known ones."""
    if name not in TARGETS:
        raise ValueError(f"`--target` must be one of {', '.join(TARGETS)}, not {name!r}")
    return TARGETS[name]


def capacity_use(target, resources):
    """{resource: (needed, available)} for the resources that count against the device.

    "LC" (iCE40 logic cells: a LUT4, a carry and a flip-flop each) counts where the
    resources carry the cells predicted from the netlist (`dqt_hw.build.cells`): an iCE40
    design can fit by LUT4 and flip-flops and still need more cells than the device has.
    """
    use = {"LUT4": (target.lut_sites(resources), target.capacity["LUT4"]),
           "FF": (resources["FF"], target.capacity["FF"]),
           "DSP": (resources["DSP"], target.capacity["DSP"]),
           "BRAM": (resources["BRAM"], target.capacity["BRAM"]),
           "SPRAM": (resources["SPRAM"], target.capacity["SPRAM"])}
    if "LC" in resources and "LC" in target.capacity:
        use["LC"] = (resources["LC"], target.capacity["LC"])
    return use
