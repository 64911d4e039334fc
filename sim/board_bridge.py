"""Build the board top (brf_hw.board.top.BoardLink) as Verilog and run it under Icarus or
Verilator with cocotb (sim/board_tb.py): the board-level tests, or a bridge that serves the
simulated board on a localhost TCP socket, so the real host program talks to it through pyserial.

    python sim/board_bridge.py --sim verilator --port 5555      # then, in another shell:
    python -m brf_hw.host --port socket://127.0.0.1:5555 --task ecg --sequences 2 --steps 200

The bridge ends when the host closes the port (or after --seconds). The simulated board runs at
``divisor`` clock cycles per bit (default 4, the iCEBreaker's 3 Mbaud from 12 MHz); the host's
--baud is ignored on a socket.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SIM_DIR = Path(__file__).resolve().parent
REPO = SIM_DIR.parent
sys.path[:0] = [str(SIM_DIR), str(REPO)]

import run as simrun  # noqa: E402  (sim/run.py: simulator checks, results XML, Verilator flags)

from brf_hw.artifact import load_artifact  # noqa: E402
from brf_hw.board.top import BoardLink  # noqa: E402
from brf_hw.generate import default_artifact  # noqa: E402

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
    from cocotb_tools.runner import get_runner

    simrun.require(simulator)
    artifact = Path(artifact or default_artifact()).resolve()
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
    runner = get_runner(simulator)
    runner.build(sources=[source], hdl_toplevel=TOP, build_dir=build_dir / simulator,
                 build_args=simrun.build_args(simulator), always=True,
                 timescale=("1ns", "1ps"), log_file=build_dir / f"{simulator}_build.log")
    return BoardDesign(simulator, build_dir, runner, artifact, config)


def run_tests(design: BoardDesign, case: dict, name: str = "tests", testcase=None, extra_env=None) -> dict:
    """Run sim/board_tb.py's tests on ``case`` (ECG streams); raises simrun.Mismatch naming the
    first failure; returns what the testbench measured."""
    work = design.build_dir / design.simulator / name
    work.mkdir(parents=True, exist_ok=True)
    case_file, result = work / "case.npz", work / "result.json"
    np.savez(case_file, config=np.array(json.dumps(design.config)), **case)
    result.unlink(missing_ok=True)
    results_xml = work / "results.xml"
    results_xml.unlink(missing_ok=True)
    try:
        design.runner.test(test_module="board_tb", hdl_toplevel=TOP, hdl_toplevel_lang="verilog",
                           build_dir=design.build_dir / design.simulator, test_dir=work, testcase=testcase,
                           extra_env={"BRF_BOARD_CASE": str(case_file), "BRF_BOARD_RESULT": str(result),
                                      # assertion rewriting for the testbench only: by default cocotb
                                      # rewrites every module imported after it (numba, amaranth, ...),
                                      # which cost 10 s per run here
                                      "COCOTB_REWRITE_ASSERTION_FILES": "board_tb.py",
                                      **(extra_env or {})},
                           results_xml=str(results_xml), log_file=work / "sim.log")
    except SystemExit:  # under pytest the runner exits on a failed test; the XML says which
        pass
    if not results_xml.exists():
        raise simrun.Mismatch(f"{design.simulator} {name}: the simulation wrote no results (log {work / 'sim.log'})")
    failure = simrun._first_failure(results_xml)
    if failure is not None:
        raise simrun.Mismatch(f"{design.simulator} {name}: {failure} (log {work / 'sim.log'})")
    return json.loads(result.read_text()) if result.exists() else {}


def ecg_case(inputs: np.ndarray, labels: np.ndarray, label_seqs=(0, 1), label_steps: int = 300, full_seq: int = 2,
             full_steps: int = 40, error_seq: int = 3) -> dict:
    """Input streams for board_tb: label-mode sequences, a full-mode one, one for the error test."""
    x, first = simrun.ecg_stream(inputs, list(label_seqs), label_steps)
    xf, ff = simrun.ecg_stream(inputs, [full_seq], full_steps)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sim", choices=sorted(simrun.INSTALL_HINT), default="verilator")
    parser.add_argument("--port", type=int, default=5555)
    parser.add_argument("--artifact", type=Path)
    parser.add_argument("--divisor", type=int, default=4, help="clock cycles per UART bit (default 4)")
    parser.add_argument("--seconds", type=float, default=600, help="wall-clock limit of the bridge")
    parser.add_argument("--build-dir", type=Path, default=REPO / "build" / "board_sim")
    args = parser.parse_args()
    design = build(args.sim, args.build_dir / args.sim, args.artifact, divisor=args.divisor)
    port_file = args.build_dir / "bridge.port"
    port_file.unlink(missing_ok=True)
    thread = serve(design, args.port, port_file, seconds=args.seconds, accept_seconds=args.seconds)
    port = wait_for_port(port_file, thread)
    print(f"simulated board ({args.sim}) on socket://127.0.0.1:{port}: "
          f"python -m brf_hw.host --port socket://127.0.0.1:{port} --task ecg", flush=True)
    thread.join()
    if thread.errors:
        sys.exit(f"bridge: {thread.errors[0]}")


if __name__ == "__main__":
    main()
