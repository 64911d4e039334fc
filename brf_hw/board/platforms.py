"""The boards: iCEBreaker (iCE40 UP5K) and ULX3S (ECP5), on amaranth-boards' platform files.

amaranth-boards 0.0.21 (PyPI) works with Amaranth 0.5: its ICEBreakerPlatform and
ULX3S_*_Platform elaborate, and their build plans run with the YoWASP tools named through the
YOSYS / NEXTPNR_* / ICEPACK / ECPPACK variables (``brf_hw.build``). What this module adds per
board is only what a design of its own needs: the clock domain (the iCEBreaker's 12 MHz oscillator
as it comes, with Amaranth's power-on reset that the iCE40 block RAMs need, and the user button
as reset; on the ULX3S a PLL from its 25 MHz oscillator), which LEDs show what, and the flash
command.

Why the ULX3S for ECP5: its FT231X USB-UART bridge is wired to FPGA pins (3 Mbaud) and the same
FTDI chip programs the FPGA with openFPGALoader, so one USB cable does everything, as on the
iCEBreaker. The OrangeCrab has no USB-UART bridge: its USB goes straight to the FPGA, so a serial
port would need a USB device core in the FPGA or a separate adapter on its header pins.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from amaranth.build import Attrs, Pins, Resource
from amaranth.hdl import ClockSignal, Instance, Module, Signal
from amaranth.lib import io
from amaranth.lib.cdc import ResetSynchronizer


@dataclass
class Board:
    name: str
    description: str
    device: str
    clock_hz: float  # the clock the design runs at
    uart_port: str  # where the board's serial port usually appears on Linux
    flash: list[str]  # command lines, {bitstream} for the file
    _pll: dict = field(default_factory=dict)

    own_clock = False  # True: clock_domain() drives "sync", which the top defines; False: the platform's

    def platform(self):
        raise NotImplementedError

    def clock_domain(self, platform) -> Module:
        raise NotImplementedError

    def leds(self, platform) -> dict:
        """{"activity": port, "error": port}: raw ports (``dir="-"``); the top buffers them."""
        raise NotImplementedError

    def tie_high(self, platform) -> list:
        """Output ports to hold high."""
        return []

    def prepare(self, work: Path, tool) -> None:
        """Anything the design needs computed before elaboration (a PLL's parameters)."""

    @property
    def bitstream_name(self) -> str:
        raise NotImplementedError


class ICEBreaker(Board):
    def __init__(self):
        super().__init__(
            name="icebreaker", description="1BitSquared iCEBreaker, iCE40 UP5K-SG48, 12 MHz oscillator, FT2232H",
            device="iCE40UP5K-SG48", clock_hz=12e6, uart_port="/dev/ttyUSB1",  # FT2232H channel B
            flash=["iceprog {bitstream}"])

    def platform(self):
        from amaranth_boards.icebreaker import ICEBreakerPlatform

        class Platform(ICEBreakerPlatform):
            default_rst = "button"  # the user button (BTN_N, next to the USB connector) resets the design

        return Platform()

    def clock_domain(self, platform):
        return Module()  # "sync" comes from the platform: 12 MHz, power-on reset | button

    def leds(self, platform):
        return {"activity": platform.request("led_g", 0, dir="-"), "error": platform.request("led_r", 0, dir="-")}

    @property
    def bitstream_name(self):
        return "brf_board.bin"


class ULX3S(Board):
    own_clock = True
    SIZES = {"12f": "ULX3S_12F_Platform", "25f": "ULX3S_25F_Platform", "45f": "ULX3S_45F_Platform",
             "85f": "ULX3S_85F_Platform"}

    def __init__(self, size: str = "85f", clock_mhz: float = 75.0):
        self.size = size
        super().__init__(
            name=f"ulx3s-{size}", description=f"Radiona ULX3S, ECP5 LFE5U-{size.upper()} CABGA381, 25 MHz oscillator, "
                                              f"FT231X; design clock {clock_mhz:g} MHz from the PLL",
            device=f"LFE5U-{size.upper()}-6BG381C", clock_hz=clock_mhz * 1e6, uart_port="/dev/ttyUSB0",
            flash=["openFPGALoader -b ulx3s {bitstream}", "openFPGALoader -b ulx3s -f {bitstream}"])

    def platform(self):
        import amaranth_boards.ulx3s as ulx3s

        platform = getattr(ulx3s, self.SIZES[self.size])()
        # ESP32 GPIO0: held high, so the ESP32 (if programmed) does not restart the board
        platform.add_resources([Resource("wifi_gpio0", 0, Pins("L2", dir="o"), Attrs(IO_TYPE="LVCMOS33"))])
        return platform

    def prepare(self, work: Path, tool) -> None:
        """PLL parameters from ecppll (prjtrellis) for 25 MHz -> clock_hz."""
        target = self.clock_hz / 1e6
        out = work / "pll.v"  # written from inside work: YoWASP tools see their working directory only
        proc = subprocess.run([tool("ecppll"), "-i", "25", "-o", f"{target:g}", "-f", "pll.v"], capture_output=True,
                              text=True, cwd=work)
        if proc.returncode or not out.exists():
            raise RuntimeError(f"ecppll failed for 25 -> {target:g} MHz: {proc.stdout}{proc.stderr}")
        text = out.read_text()
        achieved = float(re.search(r"clkout0 frequency: ([\d.]+) MHz", proc.stdout).group(1))
        if abs(achieved - target) > 1e-6 * target:
            raise RuntimeError(f"the ECP5 PLL cannot make {target:g} MHz from 25 MHz exactly (nearest "
                               f"{achieved:g} MHz); choose --clock-mhz {achieved:g}")
        block = re.search(r"EHXPLLL\s*#\((.*?)\)\s*\w+\s*\(", text, re.S).group(1)
        self._pll = {name: int(value) if value.isdigit() else value.strip('"')
                     for name, value in re.findall(r'\.(\w+)\(("[^"]*"|\d+)\)', block)}
        self._pll_attrs = dict(re.findall(r'\(\* ([A-Z_]+)="([^"]*)" \*\)', text))

    def clock_domain(self, platform):
        m = Module()
        m.submodules.clk25 = clk25 = io.Buffer("i", platform.request("clk25", 0, dir="-"))
        m.submodules.button = button = io.Buffer("i", platform.request("button_fire", 0, dir="-"))  # FIRE1: reset
        clk, locked = Signal(name="clk_pll"), Signal(name="pll_locked")
        if not self._pll:
            raise RuntimeError("ULX3S.prepare() computes the PLL parameters; call it first")
        params = {f"p_{k}": v for k, v in self._pll.items()}
        attrs = {f"a_{k}": v for k, v in self._pll_attrs.items()}
        m.submodules.pll = Instance(
            "EHXPLLL", **params, **attrs,
            i_RST=0, i_STDBY=0, i_CLKI=clk25.i, i_CLKFB=clk, i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=1,
            i_PHASESTEP=1, i_PHASELOADREG=1, i_PLLWAKESYNC=0, i_ENCLKOP=0, o_CLKOP=clk, o_LOCK=locked)
        m.d.comb += ClockSignal("sync").eq(clk)  # the domain itself is defined in the top (BoardTop)
        m.submodules.reset = ResetSynchronizer(~locked | button.i, domain="sync")
        # no constraint of our own on clk_pll: nextpnr derives the PLL output's (75 MHz) from the 25 MHz
        # input constraint and the divider parameters; brf_hw.build checks it timed the board clock
        return m

    def leds(self, platform):
        return {"activity": platform.request("led", 0, dir="-"), "error": platform.request("led", 7, dir="-")}

    def tie_high(self, platform):
        return [platform.request("wifi_gpio0", 0, dir="-")]

    @property
    def bitstream_name(self):
        return "brf_board.bit"


BOARD_NAMES = ("icebreaker", "ulx3s", *(f"ulx3s-{size}" for size in ULX3S.SIZES))


def get_board(name: str, clock_mhz: float | None = None) -> Board:
    """``icebreaker``, ``ulx3s`` (the 85F) or ``ulx3s-12f`` / ``-25f`` / ``-45f`` / ``-85f``."""
    if name == "icebreaker":
        if clock_mhz not in (None, 12, 12.0):
            raise ValueError("the iCEBreaker design runs at its 12 MHz oscillator (no PLL): leave out --clock-mhz")
        return ICEBreaker()
    size = "85f" if name == "ulx3s" else name.removeprefix("ulx3s-")
    if not name.startswith("ulx3s") or size not in ULX3S.SIZES:
        raise ValueError(f"unknown board {name!r}; choose one of {', '.join(BOARD_NAMES)}")
    return ULX3S(size, **({} if clock_mhz is None else {"clock_mhz": clock_mhz}))
