"""Serve the simulated board (the board top under Icarus or Verilator, ``brf_hw.board.rtl_sim``) on a
localhost TCP socket, so the real host program talks to it through pyserial.

    python sim/board_bridge.py --sim verilator --port 5555      # then, in another shell:
    brf-hw host --port socket://127.0.0.1:5555 --task ecg --sequences 2 --steps 200

The bridge ends when the host closes the port (or after --seconds). The simulated board runs at
``divisor`` clock cycles per bit (default 4, the iCEBreaker's 3 Mbaud from 12 MHz); the host's
--baud is ignored on a socket.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from brf_hw.board.rtl_sim import build, serve, wait_for_port
from brf_hw.cli_util import run_main
from brf_hw.hw.rtl_sim import INSTALL_HINT


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sim", choices=sorted(INSTALL_HINT), default="verilator")
    parser.add_argument("--port", type=int, default=5555)
    parser.add_argument("--artifact", type=Path)
    parser.add_argument("--divisor", type=int, default=4, help="clock cycles per UART bit (default 4)")
    parser.add_argument("--seconds", type=float, default=600, help="wall-clock limit of the bridge")
    parser.add_argument("--build-dir", type=Path, default=Path("build") / "board_sim")
    args = parser.parse_args()
    design = build(args.sim, args.build_dir / args.sim, args.artifact, divisor=args.divisor)
    port_file = args.build_dir / "bridge.port"
    port_file.unlink(missing_ok=True)
    thread = serve(design, args.port, port_file, seconds=args.seconds, accept_seconds=args.seconds)
    port = wait_for_port(port_file, thread)
    print(f"simulated board ({args.sim}) on socket://127.0.0.1:{port}: "
          f"brf-hw host --port socket://127.0.0.1:{port} --task ecg", flush=True)
    thread.join()
    if thread.errors:
        sys.exit(f"bridge: {thread.errors[0]}")


if __name__ == "__main__":
    run_main(main, "sim/board_bridge.py")
