"""K source events per cycle (``events``): the sources dealt over K memory banks, each with its own
queue and adder row. Against the golden model bit for bit and the cycle model exactly, for every K
(real ECG sequences, random networks, multi-bit inputs, more sources than the flat encoder)."""

import json

import numpy as np
import pytest

from brf_hw.artifact import load_artifact, shipped_artifact
from brf_hw.cli_util import UserError
from brf_hw.hw.core import _banked_readout, bank_spikes, chunk_spikes, cycle_model, period_model, readout_cycles
from brf_hw.hw.generate import main as generate_main, shape_network
from brf_hw.hw.layout import event_inputs, memory_images
from brf_hw.hw.simulate import expected_cycles, simulate

from test_hw import check, ecg_net  # noqa: F401 (a fixture)


def per_chunk_bank(chunks: int, events: int, **spikes):
    """[C, K] spikes per chunk and bank from keywords c<chunk>_<bank>=n."""
    s = np.zeros((chunks, events), np.int64)
    for key, n in spikes.items():
        k, b = key[1:].split("_")
        s[int(k), int(b)] = n
    return s


def test_banked_readout_takes_a_source_of_every_bank_per_round():
    """Hand-computed READOUT lengths, 10 chunks, 2 segments, 2 banks: chunk k's spikes can be taken
    from cycle max(1, k - 3); a round takes one waiting source of each bank, the next round 2
    cycles later (or when a spike arrives, if none waits); the rows are in 4 cycles after the last
    round; never before the pipeline drained (6)."""
    cases = [(per_chunk_bank(10, 2), 6), (per_chunk_bank(10, 2, c0_1=1), 6),
             (per_chunk_bank(10, 2, c0_0=3, c0_1=3), 9),  # 3 rounds at 1, 3, 5 (one bank: 15)
             (per_chunk_bank(10, 2, c0_0=4, c9_1=1), 11),  # rounds 1, 3, 5, 7: c9 (from 6) joins round 7
             (per_chunk_bank(10, 2, c5_0=2, c9_1=1), 10),  # rounds at 2, 4, and c9 at 6
             (per_chunk_bank(10, 2, c2_0=1, c8_0=1, c8_1=1), 9)]  # round 1; none waits at 3; c8 at 5
    assert [int(readout_cycles(s, 2, events=2)) for s, _ in cases] == [r for _, r in cases]
    assert readout_cycles(np.stack([s for s, _ in cases]), 2, events=2).tolist() == [r for _, r in cases]
    # ACC: as many rounds as the busiest bank has input spikes; 3 * 2 + 3 cycles
    silent = per_chunk_bank(10, 2)
    assert int(cycle_model(np.array([3, 1]), silent, 4, 2, events=2)) - int(cycle_model(np.array([0, 0]), silent, 4, 2,
                                                                                        events=2)) == 9


def test_banked_readout_with_one_bank_is_the_closed_form():
    rng = np.random.default_rng(0)
    for _ in range(300):
        chunks, segments = int(rng.integers(1, 12)), int(rng.integers(1, 5))
        s = rng.integers(0, 4, chunks) * (rng.random(chunks) < 0.5)
        assert _banked_readout(s[:, None], segments) == int(readout_cycles(s, segments))


def test_bank_spikes_deal_sources_by_index_mod_k():
    """3 inputs + 5 hidden = 8 sources over 3 banks: inputs 0, 1, 2 to banks 0, 1, 2; hidden h is
    source 3 + h, bank (3 + h) mod 3; lanes 2: chunks {h0, h1}, {h2, h3}, {h4}."""
    x = np.array([1, 0, 1])
    z = np.array([1, 1, 0, 1, 1])
    per_bank, per_chunk = bank_spikes(x, z, 2, 3, 3)
    assert per_bank.tolist() == [1, 0, 1]
    assert per_chunk.tolist() == [[1, 1, 0], [1, 0, 0], [0, 1, 0]]  # h0: bank 0, h1: 1; h3: 0; h4: 1
    assert per_chunk.sum(-1).tolist() == chunk_spikes(z, 2, 3).tolist()


def test_memory_banks_hold_each_source_once():
    net = load_artifact(shipped_artifact())[0]
    one, four = memory_images(net, 2, 2), memory_images(net, 2, 2, events=4)
    stride = one.segment_stride
    for s in range(40):  # source s's words sit in bank s % 4 at local index s // 4
        b, i = s % 4, s // 4
        assert four.synapse_banks[b][i * stride:(i + 1) * stride] == one.synapses[s * stride:(s + 1) * stride]
    for h in range(36):  # hidden h is source 4 + h; its bank's output words start after its input sources
        b = (4 + h) % 4
        n_in_bank = len(range(b, 4, 4))
        assert four.output_banks[b][(4 + h) // 4 - n_in_bank] == one.outputs[h]
    assert sorted(four.synapses) == sorted(one.synapses) and sorted(four.outputs) == sorted(one.outputs)


@pytest.mark.parametrize("lanes, segments, events", [(1, 1, 2), (5, 2, 3), (36, 1, 4), (2, 3, 7), (4, 1, 40)])
def test_real_ecg_sequences_k_events(ecg_net, ecg_splits, lanes, segments, events):
    """Two sequences back to back; K = 40: every source its own bank."""
    test = ecg_splits["test"].inputs.numpy().astype(np.int64)
    steps = 80
    x = np.concatenate([test[0, :steps], test[1, :steps]])
    first = np.zeros(len(x), bool)
    first[[0, steps]] = True
    hw = check(ecg_net, x, first, lanes=lanes, segments=segments, events=events, gap_prob=0.3, stall_prob=0.3,
               seed=events)
    assert hw.spikes.sum() > 50


@pytest.mark.parametrize("events", [1, 2, 4])
def test_cycle_model_is_exact_for_k_events(ecg_net, ecg_splits, events):
    """The payload's cycles and the spacing of accepted beats equal the banked cycle model; more
    banks never cost cycles, and with K = 4 the busy steps are cheaper than with one bank."""
    x = ecg_splits["test"].inputs[3, :150].numpy().astype(np.int64)
    lanes, segments = 2, 2
    hw = simulate(ecg_net, x, lanes=lanes, segments=segments, events=events)
    assert hw.cycles.tolist() == expected_cycles(ecg_net, x, hw.spikes, lanes, segments, events=events).tolist()
    periods = np.diff(hw.accepted_at)
    model = expected_cycles(ecg_net, x, hw.spikes, lanes, segments, period_model, events)
    assert periods[1:].tolist() == model[1:-1].tolist()
    one = expected_cycles(ecg_net, x, hw.spikes, lanes, segments)
    assert (hw.cycles <= one).all()
    if events == 4:
        assert (hw.cycles < one).sum() > 20


@pytest.mark.parametrize("seed", range(3))
def test_random_networks_k_events(seed):
    """Random shapes, spike and multi-bit inputs, readouts, lanes, segments and K."""
    rng = np.random.default_rng(300 + seed)
    bits = int(rng.choice([1, 1, 4]))
    n_in, n_hid, n_out = int(rng.integers(1, 9)), int(rng.integers(2, 20)), int(rng.integers(1, 5))
    rule = str(rng.choice(["per_step", "last", "mean"]))
    net = shape_network(n_in, n_hid, n_out, input_bits=bits, rule=rule, steps=50, gain=float(rng.choice([30, 300])),
                        seed=seed)
    x = np.where(rng.random((50, n_in)) < 0.5, rng.integers(1, 1 << bits, (50, n_in)), 0)
    lanes = int(rng.integers(1, n_hid + 1))
    segments = int(rng.integers(1, -(-n_hid // lanes) + 1))
    events = int(rng.integers(2, event_inputs(net) + n_hid + 1))
    check(net, x, lanes=lanes, segments=segments, events=events, gap_prob=0.2, stall_prob=0.2, seed=seed)


def test_banks_with_tree_encoders():
    """160 sources (130 dense input spikes + 30 hidden) over 2 banks of 80: each bank's queue is
    the two-level encoder (more than FLAT_ENCODER_MAX sources)."""
    rng = np.random.default_rng(7)
    net = shape_network(130, 30, 4, rule="mean", steps=40, gain=100.0, seed=3)
    x = (rng.random((40, 130)) < 0.6).astype(np.int64)
    hw = check(net, x, lanes=4, segments=3, events=2, gap_prob=0.2, stall_prob=0.2, seed=4)
    assert hw.spikes.sum() > 50


def test_generator_events_flag(tmp_path, capsys):
    generate_main(["--neurons", "36", "--lanes", "2", "--events", "3", "--out", str(tmp_path)])
    info = json.loads((tmp_path / "brf_rsnn.json").read_text())
    assert info["events"] == 3
    words = {b: (tmp_path / f"brf_rsnn_mem_synapses_{b}.hex").read_text().split() for b in range(3)}
    # 40 sources, stride 2 (two segments): 14, 13, 13 sources
    assert [len(words[b]) for b in range(3)] == [28, 26, 26]
    outs = [len((tmp_path / f"brf_rsnn_mem_outputs_{b}.hex").read_text().split()) for b in range(3)]
    assert outs == [12, 12, 12] and not (tmp_path / "brf_rsnn_mem_synapses.hex").exists()
    assert info["cycles_per_step"]["every_source_active"] < json.loads(
        _generate(tmp_path / "k1", ["--lanes", "2"]))["cycles_per_step"]["every_source_active"]
    for bad, match in [("41", "events must be 1..40"), ("0", None)]:
        out = tmp_path / f"bad{bad}"
        if match:
            with pytest.raises(UserError, match=match):
                generate_main(["--events", bad, "--out", str(out)])
        else:
            with pytest.raises(SystemExit) as exc:
                generate_main(["--events", bad, "--out", str(out)])
            assert exc.value.code == 2
        assert not out.exists()  # nothing written


def _generate(out, args):
    generate_main([*args, "--out", str(out)])
    return (out / "brf_rsnn.json").read_text()


@pytest.mark.parametrize("argv, match", [(["--events", "41"], "events must be 1..40"),
                                         (["--lanes", "37"], "lanes must be 1..36")])
def test_synth_refuses_a_bad_k_before_writing(tmp_path, argv, match):
    from brf_hw.hw.synth import main as synth_main

    out = tmp_path / "synth"
    with pytest.raises(UserError, match=match):
        synth_main([*argv, "--targets", "ecp5", "--out", str(out)])
    assert not out.exists()


def test_build_refuses_a_bad_k_before_writing(tmp_path):
    from brf_hw.board.build import build

    out = tmp_path / "board"
    with pytest.raises(UserError, match="events must be 1..40"):
        build("ulx3s-85f", shipped_artifact(), out, events=41)
    assert not out.exists()


def test_banks_are_never_slower_than_one_queue():
    """What the cycle counter's width relies on (``cycle_counter_bits`` sizes it for one bank)."""
    rng = np.random.default_rng(1)
    for _ in range(500):
        chunks, events, segments = int(rng.integers(1, 20)), int(rng.integers(2, 9)), int(rng.integers(1, 5))
        s = rng.integers(0, 4, (chunks, events)) * (rng.random((chunks, events)) < 0.4)
        assert _banked_readout(s, segments) <= int(readout_cycles(s.sum(1), segments))


def test_build_passes_the_placer_and_router_to_nextpnr(tmp_path, monkeypatch):
    """--placer static --router router2 (what routes SHD-size designs) reach the board build's
    nextpnr command line; nextpnr itself is not run (the script's run is replaced by a failure)."""
    import subprocess
    from pathlib import Path

    from brf_hw.board import build as board_build
    from brf_hw.hw.synth import PnrOptions

    ran, real_run = [], subprocess.run

    def fake_run(cmd, *args, **kw):
        if cmd[0] != "sh":
            return real_run(cmd, *args, **kw)
        ran.append((Path(kw["cwd"]) / cmd[1]).read_text())
        return subprocess.CompletedProcess(cmd, 1, "", "not run in this test")

    monkeypatch.setattr(board_build.subprocess, "run", fake_run)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match="build failed"):
        board_build.build("ulx3s-85f", shipped_artifact(), Path("board"), pnr=PnrOptions("static", "router2"))
    (script,) = ran
    assert "--placer static --router router2" in script
