"""The host end of the board link: frames, write gathering, and a clear `LinkError` for a
silent board, garbage, damaged answers and reported link errors (no hardware, no simulator:
a scripted port and pyserial's loopback)."""

import asyncio

import pytest

from dqt_hw.boards import protocol
from dqt_hw.boards.link import BridgeTransport, LinkError, SerialPort


class ScriptedPort:
    """Records what the host sends; answers each read frame from `answer(frame)`."""

    def __init__(self, answer=None):
        self.sent, self.pending, self.paused = [], b"", 0.0
        self.answer = answer or (lambda frame: b"")

    async def send(self, data):
        self.sent.append(bytes(data))
        if data[0] in (protocol.CMD_READ, protocol.CMD_IDENTIFY):
            self.pending += self.answer(bytes(data))

    async def receive(self, count, timeout_s):
        data, self.pending = self.pending[:count], self.pending[count:]
        return data

    async def pause(self, seconds):
        self.paused += seconds


def _reply(kind, body, flags=0):
    frame = bytes([kind]) + bytes(body) + bytes([flags])
    return frame + bytes([protocol.crc8(frame)])


def _words(*values):
    return b"".join(v.to_bytes(4, "little") for v in values)


def test_frames_have_the_documented_bytes():
    frame = protocol.write_frame(0x20004, [0x11223344, 5])
    assert frame[:6] == bytes([ord("W"), 1, 0x04, 0x00, 0x02, 0x00])
    assert frame[6:14] == bytes([0x44, 0x33, 0x22, 0x11, 5, 0, 0, 0])
    assert frame[14] == protocol.crc8(frame[:14]) and len(frame) == 15
    assert protocol.read_frame(0x18) == bytes([ord("R"), 0, 0x18, 0, 0, 0,
                                               protocol.crc8(bytes([ord("R"), 0, 0x18, 0, 0, 0]))])
    with pytest.raises(ValueError, match="multiple of 4"):
        protocol.write_frame(0x2, [1])
    with pytest.raises(ValueError, match="1 to 256 words, not 257"):
        protocol.read_frame(0, 257)


def test_consecutive_writes_go_out_as_bursts_before_a_read():
    port = ScriptedPort(lambda frame: _reply(protocol.REPLY_READ, _words(7)))
    link = BridgeTransport(port)

    async def session():
        for i in range(300):
            await link.write(0x20000 + 4 * i, i)
        await link.write(0x14, 1)                 # not consecutive: a new frame
        assert [f[1] + 1 for f in port.sent] == [256, 44]    # CONTROL still gathered
        return await link.read(0x18)

    assert asyncio.run(session()) == 7
    assert [f[0] for f in port.sent] == [ord("W"), ord("W"), ord("W"), ord("R")]
    assert [f[1] + 1 for f in port.sent[:3]] == [256, 44, 1]
    assert port.sent[1][2:6] == (0x20000 + 4 * 256).to_bytes(4, "little")
    assert link.frames == 4 and link.bytes_in == protocol.read_reply_length(1)


def test_identify_reads_the_clock_and_wait_pauses_that_long():
    body = (protocol.BRIDGE_MAGIC + bytes([protocol.PROTOCOL_VERSION])
            + (12_000_000).to_bytes(4, "little"))
    port = ScriptedPort(lambda frame: _reply(protocol.REPLY_IDENTIFY, body))
    link = BridgeTransport(port)

    async def session():
        info = await link.identify()
        await link.wait(1_200_000)
        return info

    assert asyncio.run(session()) == {"version": protocol.PROTOCOL_VERSION,
                                      "clock_hz": 12_000_000}
    assert port.paused == pytest.approx(0.1)


@pytest.mark.parametrize("answer,message", [
    (lambda f: b"", "no answer from the board within 0.5 s"),
    (lambda f: b"hello world", "answered garbage .*68 65 6c 6c 6f"),
    (lambda f: _reply(protocol.REPLY_READ, _words(1))[:-1] + b"\x00", "wrong CRC"),
    (lambda f: _reply(protocol.REPLY_READ, _words(1))[:3], "stopped after 3 of 7 bytes"),
    (lambda f: _reply(protocol.REPLY_READ, _words(1), protocol.Flags.CRC | protocol.Flags.FRAMING),
     "write frame arrived with a wrong CRC; a UART framing error"),
    (lambda f: _reply(protocol.REPLY_ERROR, b"", protocol.Flags.OVERRUN),
     "refused a read .* damaged"),
])
def test_bad_answers_are_one_line_link_errors(answer, message):
    link = BridgeTransport(ScriptedPort(answer), timeout_s=0.5)
    with pytest.raises(LinkError, match=message) as error:
        asyncio.run(link.read(0x0))
    assert "\n" not in str(error.value)


def test_identify_refuses_another_device_and_another_version():
    other = b"ABCD" + bytes([protocol.PROTOCOL_VERSION]) + bytes(4)
    with pytest.raises(LinkError, match="not a dqt-hw board bridge"):
        asyncio.run(BridgeTransport(ScriptedPort(
            lambda f: _reply(protocol.REPLY_IDENTIFY, other))).identify())
    newer = protocol.BRIDGE_MAGIC + bytes([protocol.PROTOCOL_VERSION + 1]) + bytes(4)
    with pytest.raises(LinkError, match="protocol version 2; this host speaks 1"):
        asyncio.run(BridgeTransport(ScriptedPort(
            lambda f: _reply(protocol.REPLY_IDENTIFY, newer))).identify())


def test_serial_port_loopback_is_garbage_not_a_hang():
    # A port that echoes what it is sent (a wrong device, or TX wired to RX): the echo of a
    # read frame starts with 'R', not 'r'.
    serial = pytest.importorskip("serial")
    link = BridgeTransport(SerialPort(serial.serial_for_url("loop://", timeout=0.2)),
                           timeout_s=0.2)
    with pytest.raises(LinkError, match="answered garbage"):
        asyncio.run(link.read(0x0))


def test_the_board_report_counts_what_the_driver_moves_per_image():
    """`link_per_image` (the build report's link figures) against the bytes and frames the
    driver really sends and receives for one image through the bridge transport: the logits,
    the bits and the per-op cycles each come back in one burst."""
    from dqt_hw.accel.compiler import compile_graph
    from dqt_hw.accel.config import AcceleratorConfig
    from dqt_hw.accel.driver import AcceleratorDriver
    from dqt_hw.accel.regmap import register_map
    from dqt_hw.build.board_report import link_per_image
    from test_export_package import random_graph, random_images

    config = AcceleratorConfig(cols=2, data_words=2048, program_words=256, wide_words=64,
                               table_words=64, slots=8, max_ops=16, max_terms=256)
    model = compile_graph(random_graph(0, dynamic=True), config)
    status = register_map(config)["STATUS"].offset

    def board(frame):                      # STATUS says DONE; every other word reads 0
        address, count = int.from_bytes(frame[2:6], "little"), frame[1] + 1
        return _reply(protocol.REPLY_READ, _words(*(2 if address + 4 * i == status else 0
                                                     for i in range(count))))

    link = BridgeTransport(ScriptedPort(board))
    result = asyncio.run(AcceleratorDriver(link, model).infer(random_images(1)[0]))
    expected = link_per_image(model)
    assert len(result.op_cycles) == len(model.ops) and len(result.bits) == 2
    assert (link.bytes_out, link.bytes_in) == (expected["bytes_to_board"],
                                               expected["bytes_to_host"])
    assert link.frames == expected["write_frames"] + expected["reads"]
    assert expected["reads"] == 5                  # STATUS, logits, BITS, CYCLES, OP_CYCLES
