"""The board link protocol, version 1: one definition for the RTL framing and the host.

Byte-level specification
========================

The link is a UART, 8 data bits, no parity, 1 stop bit (8N1), at the baud rate fixed in the
bitstream (``brf-hw build --baud``; the default is 3,000,000; ``divisor`` clock cycles
per bit). Every byte in either direction is one of two kinds:

    header byte   1 T T T P P P P    bit 7 set: starts a frame of type TTT; PPPP = payload bits 0..3
    data byte     0 D D D D D D D    bit 7 clear: the next 7 payload bits of the open frame

A frame is one header byte and a fixed number of data bytes: a payload of B bits takes
N = ceil(max(0, B - 4) / 7) data bytes, least significant bits first (bits 0-3 in the header,
4-10 in the first data byte, 11-17 in the second, ...); unused bits are 0. N is known from the
frame type and the network's shape (which the IDENTITY frame gives), so no length byte is sent.
Only headers have bit 7 set: whoever loses its place finds the next frame at the next header.
Multi-bit fields inside a payload are laid out least significant field first (the field lists
below, in order); signed fields are two's complement.

Host -> board (``Cmd``)
  0 STEP        payload: the step's input spikes, bit i = input i (B = inputs: one byte for the
                4-input ECG network). The board answers with one RESULT (or RESULT_FULL).
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
  0 RESULT      payload: the step's label, the argmax of the output potentials
                (B = label_bits: 3 for 6 classes, one byte).
  1 RESULT_FULL payload: the accelerator's whole output beat, B = full_bits: potentials, label,
                hidden spikes, cycles, at the offsets of ``ports.out.payload`` in brf_rsnn.json
                (``BRFAccelerator.output_layout``; ECG: 151 bits, 22 bytes).
  2 IDENTITY    payload: ``IDENTITY_FIELDS`` (444 bits, 64 bytes). ``version`` sits in the header
                bits, so a host of any version can read it before it trusts the rest.
  3 SYNC_ACK    payload: version (4 bits), the SYNC's nonce (7 bits); 2 bytes.
  4 STATUS      payload: ``STATUS_FIELDS`` (68 bits, 10 data bytes).
  7 ERROR       payload: an error code (``Error``); header only.

Ordering. The board executes frames in arrival order and answers in that order: a step's RESULT
comes before the answer to any later IDENTIFY / SYNC / STATUS. An ERROR frame goes out as soon as
the frame being sent is done, ahead of waiting results and answers, so every RESULT the host
received before an ERROR belongs to a step sent before the bytes in error (the host restarts from
there). An error of a code whose report is still waiting is counted (STATUS) but not sent twice.

Errors (code, when, what the board does). A dropped partial frame is never executed.
  1 FRAMING    a byte's stop bit was 0 (or a break): the byte and any partial frame are dropped,
               and so are data bytes up to the next header; the receiver waits for the line to be
               idle (high) before it looks for a start bit, so a break costs one report.
  2 GARBAGE    data bytes outside any frame: dropped; one report per run of them.
  3 TRUNCATED  a header arrived before the open frame had all its data bytes (the new header
               starts its frame), or no byte came for ``timeout_cycles`` while a frame was open
               (its late data bytes are dropped without another report): the partial frame is
               dropped.
  4 BAD_FRAME  a reserved type (6, 7): dropped with the data bytes after it up to the next header;
               or a SYNC without 'B' 'R', an IDENTIFY / STATUS with a nonzero payload, a MODE
               other than 0 or 1: dropped.
  5 OVERRUN    a byte arrived while the receive FIFO (``fifo_depth`` bytes) was full: dropped.
A corrupted byte that is itself a valid frame (e.g. a STEP header with other spikes) cannot be
seen by the link; the host catches it by comparing every label with the golden model.

Flow control. There is none in hardware (the boards wire only RX and TX): the host keeps at most
``fifo_depth // step_frame_bytes - 8`` steps outstanding (sent, no result yet), so the FIFO never
overruns whatever the latency of the USB bridge.

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

PROTOCOL_VERSION = 1
HEADER = 0x80
HEADER_PAYLOAD_BITS = 4
DATA_BITS = 7
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


class Mode(IntEnum):
    LABEL = 0
    FULL = 1


ERROR_TEXT = {
    Error.FRAMING: "framing error (a stop bit was 0): the byte and its frame were dropped",
    Error.GARBAGE: "data bytes outside a frame were dropped",
    Error.TRUNCATED: "a frame was cut short (a header or a timeout came before its data bytes)",
    Error.BAD_FRAME: "a frame of a reserved type or with a bad payload was dropped",
    Error.OVERRUN: "the board's receive FIFO overran: bytes were dropped",
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
    Field("label_bits", 8), Field("full_bits", 16),  # payload widths of RESULT and RESULT_FULL
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
    """Data bytes after the header for a payload of ``bits`` bits."""
    return math.ceil(max(0, bits - HEADER_PAYLOAD_BITS) / DATA_BITS)


def frame_bytes(bits: int) -> int:
    return 1 + data_bytes(bits)


def encode(ftype: int, payload: int = 0, bits: int = HEADER_PAYLOAD_BITS) -> bytes:
    """One frame: header and data bytes for ``payload`` (an integer of at most ``bits`` bits)."""
    if payload < 0 or payload >> max(bits, HEADER_PAYLOAD_BITS):
        raise ValueError(f"payload {payload:#x} does not fit in {bits} bits")
    out = [HEADER | (int(ftype) & 7) << 4 | (payload & 0xF)]
    payload >>= HEADER_PAYLOAD_BITS
    for _ in range(data_bytes(bits)):
        out.append(payload & 0x7F)
        payload >>= DATA_BITS
    return bytes(out)


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


def identity_values(net, sha256: str, *, lanes: int, segments: int, full_bits: int, clock_hz: int,
                    divisor: int, fifo_depth: int, timeout_cycles: int) -> dict:
    """IDENTITY field values for an ``IntNetwork`` (``net.shape``, ``net.spec``, scalars)."""
    n_in, n_hid, n_out = net.shape
    values = {"version": PROTOCOL_VERSION, "sha256": int(sha256[:16], 16), "inputs": n_in, "hidden": n_hid,
              "outputs": n_out, "lanes": lanes, "segments": segments, "dtq": int(net.dtq),
              "gamma": int(net.gamma), "theta": int(net.theta), "label_bits": label_bits(n_out),
              "full_bits": full_bits, "clock_hz": int(clock_hz), "divisor": divisor, "fifo_depth": fifo_depth,
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
    keys = ["sha256", "inputs", "hidden", "outputs", "dtq", "gamma", "theta",
            *(f"{name}_{part}" for name in FORMAT_FIELDS for part in ("bits", "frac"))]
    return [f"{k}: board {_show(k, identity[k])}, expected {_show(k, expected[k])}"
            for k in keys if identity[k] != expected[k]]


def _show(key, value):
    return f"{value:016x}" if key == "sha256" else value


@dataclass(frozen=True)
class Frame:
    type: int  # a Reply (board -> host) or Cmd (host -> board) value
    payload: int
    raw: bytes


class FrameReader:
    """Incremental frame parser (sans I/O) for one direction of the link: ``feed`` bytes, get the
    frames they complete. ``lengths`` maps frame types to their data-byte count. Link problems
    come out as pseudo-frames of type ``"garbage"`` (data bytes outside a frame),
    ``"truncated"`` (a header before the open frame was complete) or ``"unknown"`` (a header of
    a type not in ``lengths``), with the bytes concerned, so the caller decides."""

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
            if len(frame) == 1 + self.lengths[ftype]:
                payload = frame[0] & 0xF
                for k, b in enumerate(frame[1:]):
                    payload |= b << (HEADER_PAYLOAD_BITS + DATA_BITS * k)
                frames.append(Frame(ftype, payload, bytes(frame)))
                self._open = None
        return frames


def board_lengths(label_bits_: int | None = None, full_bits: int | None = None) -> dict[int, int]:
    """Data bytes of each board -> host frame; RESULT and RESULT_FULL once the IDENTITY is known."""
    lengths = {Reply.IDENTITY: data_bytes(IDENTITY_BITS), Reply.SYNC_ACK: data_bytes(SYNC_ACK_BITS),
               Reply.STATUS: data_bytes(STATUS_BITS), Reply.ERROR: 0}
    if label_bits_ is not None:
        lengths[Reply.RESULT] = data_bytes(label_bits_)
    if full_bits is not None:
        lengths[Reply.RESULT_FULL] = data_bytes(full_bits)
    return {int(k): v for k, v in lengths.items()}


def step_frames(x, first) -> bytes:
    """STEP / STEP_FIRST frames for a stream x [T, inputs] of 0/1 spikes, ``first`` [T] the
    sequence starts: the bytes the host sends."""
    import numpy as np

    x = np.asarray(x, dtype=np.int64)
    first = np.asarray(first, dtype=bool)
    steps, n_in = x.shape
    if n_in <= HEADER_PAYLOAD_BITS:  # the common case (ECG): one header byte per step, vectorised
        bits = (x << np.arange(n_in)).sum(1)
        return (HEADER | (first.astype(np.int64) << 4) | bits).astype(np.uint8).tobytes()
    weights = [1 << i for i in range(n_in)]
    return b"".join(encode(Cmd.STEP_FIRST if f else Cmd.STEP, int(np.dot(row, weights)), n_in)
                    for row, f in zip(x, first))


def sync_frame(nonce: int) -> bytes:
    b, r = SYNC_MAGIC
    return encode(Cmd.SYNC, (b << 4) | (r << 11) | ((nonce & 0x7F) << 18), SYNC_BITS)
