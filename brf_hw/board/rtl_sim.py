"""The board top (``board.top.BoardLink``) as Verilog under Icarus or Verilator with cocotb
(``board.testbench``): the board-level tests, or a bridge that serves the simulated board on a
localhost TCP socket, so the real host program talks to it through pyserial
(``python sim/board_bridge.py``)."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..artifact import load_artifact, shipped_artifact
from ..hw.rtl_sim import build_verilog, require, run_cocotb
from ..stream import to_stream
from .top import BoardLink

TESTBENCH = "brf_hw.board.testbench"
TOP = "brf_board"
SIM_CLOCK_HZ = 12e6  # the clock the IDENTITY reports (timing in the simulator is in cycles)


@dataclass
class BoardDesign:
    simulator: str
    build_dir: Path
    runner: object
    artifact: Path
    config: dict  # divisor, timeout_cycles, fifo_depth, lanes, segments, identity


def build(simulator: str, build_dir: Path, artifact: Path | None = None, *, divisor: int = 4,
          timeout_cycles: int = 2000, fifo_depth: int = 512, lanes: int = 1, segments: int | None = None) -> BoardDesign:
    from amaranth.back import verilog

    require(simulator)
    artifact = Path(artifact or shipped_artifact()).resolve()
    build_dir = Path(build_dir).resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    net, manifest = load_artifact(artifact)
    link = BoardLink(net, manifest["sha256"], clock_hz=SIM_CLOCK_HZ, divisor=divisor, lanes=lanes, segments=segments,
                     fifo_depth=fifo_depth, timeout_cycles=timeout_cycles, led_cycles=64)
    source = build_dir / f"{TOP}.v"
    source.write_text(verilog.convert(link, name=TOP, emit_src=False))
    config = {"artifact": str(artifact), "divisor": divisor, "timeout_cycles": timeout_cycles,
              "fifo_depth": fifo_depth, "lanes": link.core.lanes, "segments": link.core.segments,
              "identity": link.identity_values}
    runner = build_verilog(simulator, [source], TOP, build_dir)
    return BoardDesign(simulator, build_dir, runner, artifact, config)


def run_tests(design: BoardDesign, case: dict, name: str = "tests", testcase=None, extra_env=None) -> dict:
    """Run the board testbench (``board.testbench``) on ``case`` (ECG streams); raises Mismatch
    naming the first failure; returns what the testbench measured."""
    work = design.build_dir / design.simulator / name
    work.mkdir(parents=True, exist_ok=True)
    case_file, result = work / "case.npz", work / "result.json"
    np.savez(case_file, config=np.array(json.dumps(design.config)), **case)
    result.unlink(missing_ok=True)
    run_cocotb(design.runner, design.simulator, design.build_dir, TESTBENCH, TOP, work, name,
               {"BRF_BOARD_CASE": str(case_file), "BRF_BOARD_RESULT": str(result), **(extra_env or {})},
               testcase=testcase)
    return json.loads(result.read_text()) if result.exists() else {}


def ecg_case(inputs: np.ndarray, labels: np.ndarray, label_seqs=(0, 1), label_steps: int = 300, full_seq: int = 2,
             full_steps: int = 40, error_seq: int = 3) -> dict:
    """Input streams for the board testbench: label-mode sequences, a full-mode one, one for the
    error test. ``inputs`` [N, T, I]."""
    x, first = to_stream(inputs[list(label_seqs), :label_steps].swapaxes(0, 1))
    xf, ff = to_stream(inputs[[full_seq], :full_steps].swapaxes(0, 1))
    return {"x_label": x, "first_label": first, "labels_label": np.concatenate([labels[s, :label_steps]
                                                                                for s in label_seqs]),
            "x_full": xf, "first_full": ff, "x_errors": inputs[error_seq, :160].astype(np.int64)}


def serve(design: BoardDesign, port: int = 0, port_file: Path | None = None, seconds: float = 300,
          accept_seconds: float = 60, name: str = "bridge") -> threading.Thread:
    """Start the bridge in a thread (the simulator is a child process); returns the thread. The
    port is written to ``port_file`` once the socket listens."""
    bridge = {"divisor": design.config["divisor"], "port": port,
              "port_file": str(Path(port_file).resolve()) if port_file else "",
              "seconds": seconds, "accept_seconds": accept_seconds}
    errors = []

    def target():
        try:
            run_tests(design, {}, name=name, testcase="bridge", extra_env={"BRF_BOARD_BRIDGE": json.dumps(bridge)})
        except Exception as exc:  # reported by the caller through thread.errors
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.errors = errors
    thread.start()
    return thread


def wait_for_port(port_file: Path, thread: threading.Thread, seconds: float = 120) -> int:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if port_file.exists():
            return int(port_file.read_text())
        if not thread.is_alive():
            raise RuntimeError(f"the bridge ended before it listened: {thread.errors}")
        time.sleep(0.05)
    raise RuntimeError("the bridge did not start listening in time")
