"""The host link's byte protocol: frames between a host and the board's UART-to-Wishbone bridge.

One source for the gateware (`dqt_hw.boards.bridge`), the host transport
(`dqt_hw.boards.link`) and docs/boards.md ("The protocol on the wire"). Version 1:

Host to board (every frame ends with the CRC-8 of all its bytes before the CRC):

    'W' n-1 A0 A1 A2 A3  D0 D1 D2 D3 (x n)  CRC    write n words from byte address A (posted)
    'R' n-1 A0 A1 A2 A3                     CRC    read n words from byte address A
    'I'                                     CRC    identify the bridge

Multi-byte fields are little-endian; A is a byte address on the 32-bit bus (a multiple of 4),
and the n (1..256) words go to A, A + 4, ... Board to host:

    'r' D0 D1 D2 D3 (x n) FLAGS CRC               answer to a good 'R'
    'i' "DQTB" VERSION CLK0 CLK1 CLK2 CLK3 FLAGS CRC   answer to 'I' (CLK: design clock, Hz)
    'e' FLAGS CRC                                 answer to an 'R' or 'I' whose CRC is wrong

A write is not answered, so a stream of writes runs at the line rate; the bridge finishes each
bus write long before the next word's bytes arrive (one bus access per word, a few cycles,
against 40 bit times). FLAGS reports, and clears, what went wrong since the last answer: a
write frame that arrived with a wrong CRC (its words were already written), a byte that is not
a command, a UART framing error, a frame left unfinished for TIMEOUT_BYTES byte times (dropped;
the bridge waits for a command again), a byte that arrived before the previous one was taken,
and a bus access that was not acknowledged within BUS_TIMEOUT_CYCLES. So any lost or damaged
write shows at the next read, which the driver makes at least once per image.

CRC-8: polynomial x^8 + x^2 + x + 1 (0x07), initial value 0, no reflection, no final XOR.
"""

__all__ = ["PROTOCOL_VERSION", "BRIDGE_MAGIC", "CMD_WRITE", "CMD_READ", "CMD_IDENTIFY",
           "REPLY_READ", "REPLY_IDENTIFY", "REPLY_ERROR", "MAX_BURST", "TIMEOUT_BYTES",
           "BUS_TIMEOUT_CYCLES", "Flags", "crc8", "write_frame", "read_frame",
           "identify_frame", "read_reply_length", "IDENTIFY_REPLY_LENGTH", "describe_flags",
           "wire_bytes"]

PROTOCOL_VERSION = 1
BRIDGE_MAGIC = b"DQTB"
CMD_WRITE, CMD_READ, CMD_IDENTIFY = ord("W"), ord("R"), ord("I")
REPLY_READ, REPLY_IDENTIFY, REPLY_ERROR = ord("r"), ord("i"), ord("e")
#: Words one frame moves (the count byte holds n - 1).
MAX_BURST = 256
#: Byte times of silence after which the bridge drops an unfinished frame.
TIMEOUT_BYTES = 64
#: Cycles the bridge waits for a bus acknowledge before it gives up on the access.
BUS_TIMEOUT_CYCLES = 1024
#: Bit times of one UART byte (8N1: start, 8 data, stop).
BITS_PER_BYTE = 10


class Flags:
    """Bits of the FLAGS byte."""
    CRC = 1 << 0            # a write frame arrived with a wrong CRC (its words were written)
    COMMAND = 1 << 1        # a byte that is not a command arrived between frames (ignored)
    FRAMING = 1 << 2        # a UART byte without its stop bit (dropped)
    TIMEOUT = 1 << 3        # a frame stopped arriving half-way (dropped)
    OVERRUN = 1 << 4        # a byte arrived before the bridge took the previous one (lost)
    BUS = 1 << 5            # a bus access got no acknowledge (reads 0)

    NAMES = {CRC: "a write frame arrived with a wrong CRC",
             COMMAND: "a byte that is not a command arrived between frames",
             FRAMING: "a UART framing error (wrong baud rate or noise)",
             TIMEOUT: "a frame was left unfinished and dropped",
             OVERRUN: "a byte arrived before the previous one was taken",
             BUS: "a bus access was not acknowledged"}


def describe_flags(flags):
    return "; ".join(text for bit, text in Flags.NAMES.items() if flags & bit)


def crc8(data, crc=0):
    """CRC-8 (poly 0x07, init 0) of `data` (bytes), continuing from `crc`."""
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def _with_crc(body):
    body = bytes(body)
    return body + bytes([crc8(body)])


def _header(command, address, count):
    if address % 4 or not 0 <= address < 1 << 32:
        raise ValueError(f"`address` must be a 32-bit byte address and a multiple of 4, "
                         f"not {address:#x}")
    if not 1 <= count <= MAX_BURST:
        raise ValueError(f"a frame moves 1 to {MAX_BURST} words, not {count}")
    return bytes([command, count - 1]) + address.to_bytes(4, "little")


def write_frame(address, words):
    """The bytes of a write of `words` (32-bit values) from byte address `address`."""
    words = list(words)
    data = b"".join((int(w) & 0xFFFFFFFF).to_bytes(4, "little") for w in words)
    return _with_crc(_header(CMD_WRITE, address, len(words)) + data)


def read_frame(address, count=1):
    return _with_crc(_header(CMD_READ, address, count))


def identify_frame():
    return _with_crc([CMD_IDENTIFY])


def read_reply_length(count):
    """Bytes of the answer to a good read of `count` words."""
    return 1 + 4 * count + 2


IDENTIFY_REPLY_LENGTH = 1 + len(BRIDGE_MAGIC) + 1 + 4 + 2
ERROR_REPLY_LENGTH = 3


def wire_bytes(writes=0, reads=0, write_frames=None, read_frames=None):
    """Bytes on the wire (host to board, board to host) for `writes` words written in
    `write_frames` frames and `reads` words read in `read_frames` frames (one frame per word,
    by default)."""
    write_frames = -(-writes // MAX_BURST) if write_frames is None else write_frames
    read_frames = reads if read_frames is None else read_frames
    to_board = write_frames * 7 + 4 * writes + read_frames * 7
    to_host = read_frames * 3 + 4 * reads
    return to_board, to_host
