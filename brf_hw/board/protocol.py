"""The board link protocol, version 2: one definition for the RTL framing and the host.
(docs/concepts/board-protocol.md is the user's copy of this specification.)

Byte-level specification
========================

The link is a UART, 8 data bits, no parity, 1 stop bit (8N1), at the baud rate fixed in the
bitstream (``brf-hw build --baud``; the default is 3,000,000; ``divisor`` clock cycles
per bit). Every byte in either direction is one of two kinds:

    header byte   1 T T T P P P P    bit 7 set: starts a frame of type TTT; PPPP = payload bits 0..3
    data byte     0 D D D D D D D    bit 7 clear: the next 7 bits of the open frame

A frame is one header byte, a fixed number of payload data bytes and two check bytes:

    header | N payload data bytes | C0 = 0 c6 .. c0 | C1 = 0 0 0 0 0 0 0 c7

A payload of B bits takes N = ceil(max(0, B - 4) / 7) data bytes, least significant bits first
(bits 0-3 in the header, 4-10 in the first data byte, 11-17 in the second, ...); unused bits are
0. N is known from the frame type and the network's shape (which the IDENTITY frame gives), so no
length byte is sent. c7..c0 is the CRC-8 of the header and the N payload data bytes, each taken as
an 8-bit value, most significant bit first: polynomial x^8 + x^2 + x + 1 (0x07), initial value 0,
no reflection, no final XOR (CRC-8/SMBUS; crc8(b"123456789") = 0xF4). Its factor x + 1 catches
every odd number of flipped bits, and it catches any 1 to 3 flipped bits in a frame of up to 119
bits, 14 bytes (every frame but IDENTITY, RESULT_FULL and steps of more than 95 payload bits;
beyond, every odd number of bits, any 2 closer than 127 bits, every burst of up to 8). A frame whose check
bytes differ (C1's bits 1-6 included) is dropped whole and reported: a flipped bit never becomes a
wrong input or a wrong result. Only headers have bit 7 set: whoever loses its place finds the next
frame at the next header. Multi-bit fields inside a payload are laid out least significant field
first (the field lists below, in order); signed fields are two's complement.

Host -> board (``Cmd``)
  0 STEP        payload: the step's inputs, input i at bits i*b .. i*b+b-1 where b is the input
                format's width (1 for spikes: bit i = input i; ECG: B = 4, S-MNIST: one u8 pixel,
                B = 8). The board answers with one RESULT (or RESULT_FULL).
  1 STEP_FIRST  as STEP, and the step starts a sequence: the network state is cleared first
                (the accelerator's ``first``). Send it mid-sequence to restart from a zero state.
  2 IDENTIFY    payload 0 (B = 4). Answer: IDENTITY.
  3 SYNC        payload: 0 (4 bits), 'B' (7), 'R' (7), a host-chosen nonce (7); B = 25, 3 data
                bytes. Resets the link: drops nothing already accepted, but clears the error
                counters and pending error reports, sets the result mode to LABEL, and the next
                step is a sequence start whatever its type. Answer: SYNC_ACK with the nonce.
  4 STATUS      payload 0 (B = 4). Answer: STATUS.
  5 MODE        payload: the result mode for the steps that follow (B = 4): 0 LABEL (RESULT,
                label only), 1 FULL (RESULT_FULL, the whole output beat). No answer.
  6, 7          reserved: BAD_FRAME.

Board -> host (``Reply``)
  0 RESULT      payload: the step's label, the argmax of the output potentials (label_bits: 3 for
                6 classes); for a network with a ``mean`` readout also, above it, ``sum_label``,
                the argmax of the running sums (B = result_bits = 2 * label_bits). A ``last``
                readout's class is the label of the sequence's last step, a ``mean`` readout's the
                sum_label of its last step (``fixed.spec.Readout.classes``).
  1 RESULT_FULL payload: the accelerator's whole output beat, B = full_bits: potentials, label,
                hidden spikes, cycles (and sum_label), at the offsets of ``ports.out.payload`` in
                brf_rsnn.json (``BRFAccelerator.output_layout``; ECG: 151 bits, 22 data bytes).
  2 IDENTITY    payload: ``IDENTITY_FIELDS`` (464 bits, 66 data bytes). ``version`` sits in the
                header bits, so a host of any version can read it before it trusts the rest.
  3 SYNC_ACK    payload: version (4 bits), the SYNC's nonce (7 bits); 1 data byte.
  4 STATUS      payload: ``STATUS_FIELDS`` (76 bits, 11 data bytes).
  7 ERROR       payload: an error code (``Error``); no data bytes.

Ordering. The board executes frames in arrival order and answers in that order: a step's RESULT
comes before the answer to any later IDENTIFY / SYNC / STATUS. An ERROR frame goes out as soon as
the frame being sent is done, ahead of waiting results and answers, so every RESULT the host
received before an ERROR belongs to a step sent before the bytes in error (the host restarts from
there). An error of a code whose report is still waiting is counted (STATUS) but not sent twice.

Errors (code, when, what the board does). A dropped partial or corrupted frame is never executed.
  1 FRAMING    a byte's stop bit was 0 (or a break): the byte and any partial frame are dropped,
               and so are data bytes up to the next header; the receiver waits for the line to be
               idle (high) before it looks for a start bit, so a break costs one report.
  2 GARBAGE    data bytes outside any frame: dropped; one report per run of them.
  3 TRUNCATED  a header arrived before the open frame had all its bytes (the new header starts
               its frame), or no byte came for ``timeout_cycles`` while a frame was open (its
               late data bytes are dropped without another report): the partial frame is dropped.
  4 BAD_FRAME  a reserved type (6, 7): dropped with the data bytes after it up to the next header;
               or a SYNC without 'B' 'R', an IDENTIFY / STATUS with a nonzero payload, a MODE
               other than 0 or 1 (each with a good CRC): dropped.
  5 OVERRUN    a byte arrived while the receive FIFO (``fifo_depth`` bytes) was full: dropped.
  6 CRC        a complete frame whose check bytes do not match its header and data bytes: dropped
               (with any data bytes after it up to the next header, in case a flipped type bit
               made it look shorter than it was).
The host checks every board frame the same way: a frame with a bad CRC, a data byte outside a
frame or a frame cut short is a link error (resynchronise, restart the sequence concerned).

Flow control. There is none in hardware (the boards wire only RX and TX): the host keeps at most
``fifo_depth // step_frame_bytes - 8`` steps outstanding (at least 1; sent, no result yet), so the
FIFO never overruns whatever the latency of the USB bridge.

Reset (power-up, or the board's reset button): the board starts as after a SYNC (mode LABEL, the
next step starts a sequence, counters zero); a step being computed is lost, so a host that sees
no answer resynchronises.

Never hanging: every wait in the board ends by itself. A partial frame times out, a break or a
stuck-low line costs one FRAMING report, the transmitter never waits for the host.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum

PROTOCOL_VERSION = 2
HEADER = 0x80
HEADER_PAYLOAD_BITS = 4
DATA_BITS = 7
CHECK_BYTES = 2  # C0 = CRC bits 0-6, C1 = CRC bit 7 (a data byte carries 7 bits)
CRC_POLY = 0x07  # x^8 + x^2 + x + 1, CRC-8/SMBUS


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = ((crc << 1) ^ CRC_POLY if crc & 0x80 else crc << 1) & 0xFF
        table.append(crc)
    return tuple(table)


CRC_TABLE = _crc_table()


def crc8(data: bytes, crc: int = 0) -> int:
    """CRC-8 (poly 0x07, init 0, MSB first) of ``data``: the one the RTL computes byte by byte."""
    for byte in data:
        crc = CRC_TABLE[crc ^ byte]
    return crc


def check_bytes(crc: int) -> bytes:
    return bytes([crc & 0x7F, crc >> 7])
SYNC_MAGIC = (ord("B"), ord("R"))
SYNC_BITS = HEADER_PAYLOAD_BITS + 3 * DATA_BITS  # 0, 'B', 'R', nonce
SYNC_ACK_BITS = HEADER_PAYLOAD_BITS + DATA_BITS  # version, nonce


class Cmd(IntEnum):
    """Host -> board frame types."""
    STEP = 0
    STEP_FIRST = 1
    IDENTIFY = 2
    SYNC = 3
    STATUS = 4
    MODE = 5


class Reply(IntEnum):
    """Board -> host frame types."""
    RESULT = 0
    RESULT_FULL = 1
    IDENTITY = 2
    SYNC_ACK = 3
    STATUS = 4
    ERROR = 7


class Error(IntEnum):
    FRAMING = 1
    GARBAGE = 2
    TRUNCATED = 3
    BAD_FRAME = 4
    OVERRUN = 5
    CRC = 6


class Mode(IntEnum):
    LABEL = 0
    FULL = 1


ERROR_TEXT = {
    Error.FRAMING: "framing error (a stop bit was 0): the byte and its frame were dropped",
    Error.GARBAGE: "data bytes outside a frame were dropped",
    Error.TRUNCATED: "a frame was cut short (a header or a timeout came before its data bytes)",
    Error.BAD_FRAME: "a frame of a reserved type or with a bad payload was dropped",
    Error.OVERRUN: "the board's receive FIFO overran: bytes were dropped",
    Error.CRC: "a frame failed its CRC check (a corrupted byte) and was dropped",
}


@dataclass(frozen=True)
class Field:
    name: str
    bits: int
    signed: bool = False


# IDENTITY: what the board holds and how it talks. Formats and constants are listed explicitly:
# the artifact's SHA-256 covers its arrays only.
FORMAT_FIELDS = ("weight", "rec_weight", "out_weight", "coef", "state", "output")  # = fixed.spec.FORMAT_NAMES
IDENTITY_FIELDS = (
    Field("version", 4),
    Field("sha256", 64),  # the first 16 hex digits of the artifact's manifest sha256, as an integer
    Field("inputs", 16), Field("hidden", 16), Field("outputs", 16),
    Field("lanes", 8), Field("segments", 8),
    *(f for name in FORMAT_FIELDS for f in (Field(f"{name}_bits", 8), Field(f"{name}_frac", 8, True))),
    Field("dtq", 32, True), Field("gamma", 32, True), Field("theta", 32, True),
    Field("label_bits", 8), Field("full_bits", 16),  # the label's width, RESULT_FULL's payload width
    Field("input_bits", 8),  # the input format's width: a step's payload is inputs * input_bits bits
    Field("readout", 4),  # READOUT_CODES: how the host reads a sequence's class
    Field("result_bits", 8),  # RESULT's payload width (label, and sum_label for a mean readout)
    Field("clock_hz", 32), Field("divisor", 16),  # baud = clock_hz / divisor
    Field("fifo_depth", 16), Field("timeout_cycles", 32),
)
STATUS_FIELDS = (
    Field("mode", 4),
    Field("steps", 24),  # steps accepted since the last SYNC (or reset), modulo 2**24
    *(Field(e.name.lower(), 8) for e in Error),  # error events since the last SYNC, saturating at 255
)


def payload_bits(fields) -> int:
    return sum(f.bits for f in fields)


IDENTITY_BITS = payload_bits(IDENTITY_FIELDS)
STATUS_BITS = payload_bits(STATUS_FIELDS)
assert IDENTITY_FIELDS[0].name == "version" and IDENTITY_FIELDS[0].bits == HEADER_PAYLOAD_BITS


def data_bytes(bits: int) -> int:
    """Payload data bytes after the header for a payload of ``bits`` bits (check bytes not counted)."""
    return math.ceil(max(0, bits - HEADER_PAYLOAD_BITS) / DATA_BITS)


def frame_bytes(bits: int) -> int:
    """The whole frame: header, payload data bytes, check bytes."""
    return 1 + data_bytes(bits) + CHECK_BYTES


def encode(ftype: int, payload: int = 0, bits: int = HEADER_PAYLOAD_BITS) -> bytes:
    """One frame: header, data bytes for ``payload`` (an integer of at most ``bits`` bits), CRC."""
    if payload < 0 or payload >> max(bits, HEADER_PAYLOAD_BITS):
        raise ValueError(f"payload {payload:#x} does not fit in {bits} bits")
    out = [HEADER | (int(ftype) & 7) << 4 | (payload & 0xF)]
    payload >>= HEADER_PAYLOAD_BITS
    for _ in range(data_bytes(bits)):
        out.append(payload & 0x7F)
        payload >>= DATA_BITS
    return bytes(out) + check_bytes(crc8(out))


def pack(fields, values: dict) -> int:
    word, offset = 0, 0
    for f in fields:
        value = int(values[f.name])
        lo, hi = (-(1 << (f.bits - 1)), (1 << (f.bits - 1)) - 1) if f.signed else (0, (1 << f.bits) - 1)
        if not lo <= value <= hi:
            raise ValueError(f"{f.name} = {value} does not fit in {f.bits} {'signed ' if f.signed else ''}bits")
        word |= (value & ((1 << f.bits) - 1)) << offset
        offset += f.bits
    return word


def unpack(fields, word: int) -> dict:
    values, offset = {}, 0
    for f in fields:
        value = (word >> offset) & ((1 << f.bits) - 1)
        if f.signed and value >> (f.bits - 1):
            value -= 1 << f.bits
        values[f.name] = value
        offset += f.bits
    return values


# --- what a network and a board configuration put into the protocol -------------------------------

def label_bits(outputs: int) -> int:
    """Width of the accelerator's label field (as ``BRFAccelerator.output_layout``)."""
    return max(1, (outputs - 1).bit_length())


READOUT_CODES = ("per_step", "last", "mean")  # IDENTITY's readout field (= fixed.spec.READOUT_RULES)


def result_bits(net) -> int:
    """RESULT's payload: the label, and the running sums' argmax above it for a mean readout."""
    return label_bits(net.shape[2]) * (2 if net.readout.keeps_sums else 1)


def identity_values(net, sha256: str, *, lanes: int, segments: int, full_bits: int, clock_hz: int,
                    divisor: int, fifo_depth: int, timeout_cycles: int) -> dict:
    """IDENTITY field values for an ``IntNetwork`` (``net.shape``, ``net.spec``, scalars)."""
    n_in, n_hid, n_out = net.shape
    values = {"version": PROTOCOL_VERSION, "sha256": int(sha256[:16], 16), "inputs": n_in, "hidden": n_hid,
              "outputs": n_out, "lanes": lanes, "segments": segments,
              # the resonators' scalars; 0 for kinds without them (ALIF, LIF: the sha256 tells them apart)
              **{k: int(getattr(net, k) or 0) for k in ("dtq", "gamma", "theta")}, "label_bits": label_bits(n_out),
              "full_bits": full_bits, "input_bits": net.spec.input.bits,
              "readout": READOUT_CODES.index(net.readout.rule.value), "result_bits": result_bits(net),
              "clock_hz": int(clock_hz), "divisor": divisor, "fifo_depth": fifo_depth,
              "timeout_cycles": timeout_cycles}
    for name in FORMAT_FIELDS:
        fmt = getattr(net.spec, name)
        values[f"{name}_bits"], values[f"{name}_frac"] = fmt.bits, fmt.frac
    return values


def identity_frame(values: dict) -> bytes:
    return encode(Reply.IDENTITY, pack(IDENTITY_FIELDS, values), IDENTITY_BITS)


def network_mismatches(identity: dict, expected: dict) -> list[str]:
    """Fields in which a board's IDENTITY differs from the one expected of a network (the fields
    that decide the computation: SHA-256 prefix, shape, formats, constants)."""
    keys = ["sha256", "inputs", "hidden", "outputs", "input_bits", "readout", "dtq", "gamma", "theta",
            *(f"{name}_{part}" for name in FORMAT_FIELDS for part in ("bits", "frac"))]
    return [f"{k}: board {_show(k, identity[k])}, expected {_show(k, expected[k])}"
            for k in keys if identity[k] != expected[k]]


def _show(key, value):
    if key == "readout":
        return READOUT_CODES[value] if value < len(READOUT_CODES) else value
    return f"{value:016x}" if key == "sha256" else value


@dataclass(frozen=True)
class Frame:
    type: int  # a Reply (board -> host) or Cmd (host -> board) value
    payload: int
    raw: bytes


class FrameReader:
    """Incremental frame parser (sans I/O) for one direction of the link: ``feed`` bytes, get the
    frames they complete, each checked against its CRC. ``lengths`` maps frame types to their
    payload data-byte count. Link problems come out as pseudo-frames of type ``"garbage"`` (data
    bytes outside a frame), ``"truncated"`` (a header before the open frame was complete),
    ``"unknown"`` (a header of a type not in ``lengths``) or ``"corrupt"`` (a frame whose check
    bytes do not match; the data bytes after it up to the next header are dropped), with the bytes
    concerned, so the caller decides."""

    def __init__(self, lengths: dict[int, int]):
        self.lengths = dict(lengths)
        self._open: bytearray | None = None
        self._skipping = False

    def set_length(self, ftype: int, n: int) -> None:
        self.lengths[int(ftype)] = n

    @property
    def partial(self) -> bool:
        return self._open is not None

    def feed(self, data: bytes) -> list:
        frames = []
        for byte in data:
            if byte & HEADER:
                if self._open is not None:
                    frames.append(Frame("truncated", 0, bytes(self._open)))
                self._open, self._skipping = None, False
                ftype = (byte >> 4) & 7
                if ftype not in self.lengths:
                    frames.append(Frame("unknown", 0, bytes([byte])))
                    self._skipping = True
                    continue
                self._open = bytearray([byte])
            elif self._open is not None:
                self._open.append(byte)
            else:
                if not self._skipping:
                    frames.append(Frame("garbage", 0, bytes([byte])))
                self._skipping = True
                continue
            frame = self._open
            ftype = (frame[0] >> 4) & 7
            n = self.lengths[ftype]
            if len(frame) == 1 + n + CHECK_BYTES:
                self._open = None
                if bytes(frame[1 + n:]) != check_bytes(crc8(frame[:1 + n])):
                    frames.append(Frame("corrupt", 0, bytes(frame)))
                    self._skipping = True
                    continue
                payload = frame[0] & 0xF
                for k, b in enumerate(frame[1:1 + n]):
                    payload |= b << (HEADER_PAYLOAD_BITS + DATA_BITS * k)
                frames.append(Frame(ftype, payload, bytes(frame)))
        return frames


def board_lengths(result_bits_: int | None = None, full_bits: int | None = None) -> dict[int, int]:
    """Payload data bytes of each board -> host frame; RESULT and RESULT_FULL once the IDENTITY is
    known (its result_bits and full_bits)."""
    lengths = {Reply.IDENTITY: data_bytes(IDENTITY_BITS), Reply.SYNC_ACK: data_bytes(SYNC_ACK_BITS),
               Reply.STATUS: data_bytes(STATUS_BITS), Reply.ERROR: 0}
    if result_bits_ is not None:
        lengths[Reply.RESULT] = data_bytes(result_bits_)
    if full_bits is not None:
        lengths[Reply.RESULT_FULL] = data_bytes(full_bits)
    return {int(k): v for k, v in lengths.items()}


def command_lengths(step_bits: int) -> dict[int, int]:
    """Payload data bytes of each host -> board frame, for steps of ``step_bits`` bits."""
    n = data_bytes(step_bits)
    return {int(Cmd.STEP): n, int(Cmd.STEP_FIRST): n, int(Cmd.IDENTIFY): 0, int(Cmd.SYNC): data_bytes(SYNC_BITS),
            int(Cmd.STATUS): 0, int(Cmd.MODE): 0}


def step_frames(x, first, input_bits: int = 1) -> bytes:
    """STEP / STEP_FIRST frames for a stream x [T, inputs] of unsigned ``input_bits``-bit inputs
    (0/1 spikes by default), ``first`` [T] the sequence starts: the bytes the host sends. Built
    column by column in numpy (the CRC too), so a test set of millions of steps takes seconds."""
    import numpy as np

    x = np.asarray(x, dtype=np.int64)
    first = np.asarray(first, dtype=bool)
    steps, n_in = x.shape
    if x.size and (x.min() < 0 or x.max() >> input_bits):
        raise ValueError(f"inputs must be unsigned {input_bits}-bit integers")
    bits = n_in * input_bits
    # the payload's bits [T, B], input i at bits i*b .. i*b+b-1, least significant first
    payload = ((x[:, :, None] >> np.arange(input_bits)) & 1).reshape(steps, bits).astype(np.uint8)
    n = data_bytes(bits)
    padded = np.zeros((steps, HEADER_PAYLOAD_BITS + DATA_BITS * n), np.uint8)
    padded[:, :bits] = payload
    head = (padded[:, :HEADER_PAYLOAD_BITS].astype(np.int64) << np.arange(HEADER_PAYLOAD_BITS)).sum(1)
    columns = [HEADER | (first.astype(np.int64) << 4) | head]
    for k in range(n):
        chunk = padded[:, HEADER_PAYLOAD_BITS + DATA_BITS * k:HEADER_PAYLOAD_BITS + DATA_BITS * (k + 1)]
        columns.append((chunk.astype(np.int64) << np.arange(DATA_BITS)).sum(1))
    table = np.array(CRC_TABLE, np.int64)
    crc = np.zeros(steps, np.int64)
    for col in columns:
        crc = table[crc ^ col]
    columns += [crc & 0x7F, crc >> 7]
    return np.stack(columns, 1).astype(np.uint8).tobytes()


def sync_frame(nonce: int) -> bytes:
    b, r = SYNC_MAGIC
    return encode(Cmd.SYNC, (b << 4) | (r << 11) | ((nonce & 0x7F) << 18), SYNC_BITS)
