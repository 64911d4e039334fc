"""The neuron equations against values worked out by hand from shared/brf-model.md."""

import math

import pytest
import torch

from brf_hw.neurons import functional as F
from brf_hw.neurons.modules import LIReadout, NeuronConfig, ResonatorLayer
from brf_hw.neurons.surrogate import double_gaussian, multi_gaussian, spike_fn

DT, THETA, GAMMA = 0.01, 1.0, 0.9
heaviside = spike_fn()


def t(*values):
    return torch.tensor(values, dtype=torch.float64)


def run(step, currents, state, **kw):
    out = []
    for i in currents:
        state = step(t(i), state, **kw)
        out.append(state)
    return out


def test_p_omega_by_hand():
    # p(10) = (-1 + sqrt(1 - 0.1^2)) / 0.01 = (-1 + 0.99498743710662) / 0.01
    assert F.p_omega(t(10.0), DT).item() == pytest.approx(-0.501256289338, abs=1e-10)
    assert F.p_omega(t(0.0), DT).item() == 0.0
    assert F.p_omega(t(99.0), DT).item() == pytest.approx((-1 + math.sqrt(1 - 0.99**2)) / DT)


def test_brf_steps_by_hand():
    zero = F.ResonatorState(t(0.0), t(0.0), t(0.0), t(0.0))
    s1, s2, s3 = run(F.brf_step, [200.0, 0.0, 150.0], zero, omega=t(10.0), b_offset=t(0.5),
                     dt=DT, theta=THETA, gamma=GAMMA, spike=heaviside)
    p = -0.501256289338
    # step 1: u = 0.01*200 = 2, v = 0, z = H(2 - 1 - 0) = 1, q = 1
    assert (s1.u.item(), s1.v.item(), s1.z.item(), s1.q.item()) == pytest.approx((2.0, 0.0, 1.0, 1.0))
    # step 2: b = p - 0.5 - q1; u = 2 + 0.01*(2b); v = 0.01*(10*2); z = H(u - 1 - q1) = 0; q = 0.9
    b2 = p - 0.5 - 1.0
    assert s2.u.item() == pytest.approx(2.0 + 0.02 * b2, abs=1e-10)  # 1.959974874
    assert s2.v.item() == pytest.approx(0.2, abs=1e-12)
    assert (s2.z.item(), s2.q.item()) == (0.0, pytest.approx(0.9))
    # step 3 uses the OLD u2, v2 in both updates
    b3 = p - 0.5 - 0.9
    u3 = s2.u.item() + 0.01 * (b3 * s2.u.item() - 10 * 0.2 + 150.0)
    v3 = 0.2 + 0.01 * (10 * s2.u.item() + b3 * 0.2)
    assert (s3.u.item(), s3.v.item()) == pytest.approx((u3, v3), abs=1e-10)
    assert s3.z.item() == float(u3 - 1.0 - 0.9 > 0)  # threshold raised by the OLD q
    assert s3.q.item() == pytest.approx(0.81 + s3.z.item())


def test_rf_has_no_reset_and_no_refractory_threshold():
    zero = F.ResonatorState(t(0.0), t(0.0), t(0.0), t(0.0))
    s1, s2 = run(F.brf_step, [150.0, 0.0], zero, omega=t(10.0), b_offset=t(0.5),
                 dt=DT, theta=THETA, gamma=GAMMA, spike=heaviside, flags=F.RF)
    assert (s1.u.item(), s1.z.item(), s1.q.item()) == (pytest.approx(1.5), 1.0, 0.0)
    # b = -0.5: u2 = 1.5 + 0.01*(-0.5*1.5) = 1.4925, still above theta -> spikes again (no q)
    assert s2.u.item() == pytest.approx(1.4925)
    assert s2.v.item() == pytest.approx(0.01 * 10 * 1.5)
    assert s2.z.item() == 1.0


def test_bhrf_steps_by_hand():
    zero = F.ResonatorState(t(0.0), t(0.0), t(0.0), t(0.0))
    s1, s2 = run(F.bhrf_step, [150.0, 0.0], zero, omega=t(10.0), b_offset=t(0.5),
                 dt=DT, theta=THETA, gamma=GAMMA, spike=heaviside)
    # step 1: v = 0, u = 0.01*150 = 1.5 -> spike, q = 1
    assert (s1.u.item(), s1.v.item(), s1.z.item(), s1.q.item()) == pytest.approx((1.5, 0.0, 1.0, 1.0))
    # step 2: b = 0.005*100 + 0.5 + 1 = 2; v = 0.015; u = 1.5 - 0.02*2*1.5 - 0.01*100*0.015
    assert s2.v.item() == pytest.approx(0.015)
    assert s2.u.item() == pytest.approx(1.5 - 0.06 - 0.015)
    assert (s2.z.item(), s2.q.item()) == (0.0, pytest.approx(0.9))


def test_alif_steps_by_hand():
    alpha, rho = t(0.9), t(0.5)
    zero = F.ALIFState(t(0.0), t(0.0), t(0.0))
    s1, s2, s3 = run(F.alif_step, [1.0, 1.0, 0.0], zero, alpha=alpha, rho=rho,
                     theta0=0.01, beta=1.8, spike=heaviside)
    # step 1: a = 0, th = 0.01, u = 0.1 -> spike, soft reset u = 0.09
    assert (s1.a.item(), s1.z.item(), s1.u.item()) == (0.0, 1.0, pytest.approx(0.09))
    # step 2: a = 0.5*0 + 0.5*1 = 0.5, th = 0.91, u = 0.081 + 0.1 = 0.181 -> no spike
    assert (s2.a.item(), s2.z.item(), s2.u.item()) == (0.5, 0.0, pytest.approx(0.181))
    # step 3: a = 0.25, th = 0.46, u = 0.1629
    assert (s3.a.item(), s3.u.item(), s3.z.item()) == (0.25, pytest.approx(0.1629), 0.0)


def test_li_readout_by_hand():
    li = LIReadout(1).double()
    with torch.no_grad():
        li.tau_o.fill_(20.0)
    a = math.exp(-1 / 20)
    o1 = li(t(2.0), t(0.0))
    o2 = li(t(0.0), o1)
    assert o1.item() == pytest.approx((1 - a) * 2.0)
    assert o2.item() == pytest.approx(a * (1 - a) * 2.0)


def test_surrogates_at_chosen_points():
    # N(0; 0, 0.5) = 0.797884560803, N(0; 0, 3) = 0.132980760134
    assert double_gaussian(t(0.0)).item() == pytest.approx(0.5 * (1.15 * 0.797884560803 - 0.3 * 0.132980760134))
    for x in (-2.0, -0.7, 0.3, 1.5):
        n = lambda mu, s: math.exp(-((x - mu) ** 2) / (2 * s * s)) / (math.sqrt(2 * math.pi) * s)
        assert double_gaussian(t(x)).item() == pytest.approx(0.5 * (1.15 * n(0, 0.5) - 0.3 * n(0, 3)))
        assert multi_gaussian(t(x)).item() == pytest.approx(
            0.5 * (1.15 * n(0, 0.5) - 0.15 * n(0.5, 3) - 0.15 * n(-0.5, 3)))
    # far from threshold the side lobe is negative: gradients stay alive, pushing the other way
    assert double_gaussian(t(3.0)).item() < 0


def test_spike_forward_is_strict_step_and_backward_is_surrogate():
    x = t(-1.0, 0.0, 1e-9, 2.0).requires_grad_()
    z = heaviside(x)
    assert z.tolist() == [0.0, 0.0, 1.0, 1.0]
    z.sum().backward()
    assert torch.allclose(x.grad, double_gaussian(x.detach()))
    with pytest.raises(ValueError, match="unknown surrogate"):
        spike_fn("sigmoid")


def _mean_abs_u(omega: float, drive_period_steps: float, steps: int = 4000) -> float:
    """Subthreshold BRF (theta out of reach) driven by unit pulses with the given period."""
    state = F.ResonatorState(t(0.0), t(0.0), t(0.0), t(0.0))
    pulses = {round(k * drive_period_steps) for k in range(int(steps / drive_period_steps) + 1)}
    total = 0.0
    for i in range(steps):
        state = F.brf_step(t(100.0 if i in pulses else 0.0), state, t(omega), t(0.1),
                           dt=DT, theta=1e9, gamma=GAMMA, spike=heaviside)
        total += abs(state.u.item())
    return total / steps


def test_brf_resonates_at_its_eigenfrequency():
    omega = 20.0
    period = 2 * math.pi / omega / DT  # steps per oscillation
    at_resonance = _mean_abs_u(omega, period)
    assert at_resonance > 2 * _mean_abs_u(omega, period * 1.6)
    assert at_resonance > 2 * _mean_abs_u(omega, period / 1.6)


def test_divergence_boundary_is_rejected():
    F.check_omega(t(99.9), DT)
    with pytest.raises(ValueError, match="divergence boundary"):
        F.check_omega(t(5.0, -100.0), DT)
    with pytest.raises(ValueError, match="NaN"):
        F.check_omega(t(float("nan")), DT)
    with pytest.raises(ValueError, match="divergence boundary"):
        NeuronConfig(omega_init=(90.0, 110.0))
    layer = ResonatorLayer(3, NeuronConfig())
    with torch.no_grad():
        layer.omega_param.fill_(250.0)
    layer.constrain_()  # training projects omega back inside the boundary
    assert layer.omega.max().item() == pytest.approx(99.9)
    layer.validate()


def _ablation(kind, currents):
    from brf_hw.neurons.modules import RESONATOR_FLAGS

    zero = F.ResonatorState(t(0.0), t(0.0), t(0.0), t(0.0))
    return run(F.brf_step, currents, zero, omega=t(10.0), b_offset=t(0.5), dt=DT, theta=THETA,
               gamma=GAMMA, spike=heaviside, flags=RESONATOR_FLAGS[kind])


def test_brf_ablations_by_hand():
    p = -0.501256289338
    # step 1 spikes in every variant (u = 2 > 1); step 2 shows which mechanism is gone
    s1, s2 = _ablation("brf-no-boundary", [200.0, 0.0])
    assert s2.u.item() == pytest.approx(2.0 + 0.02 * (-0.5 - 1.0), abs=1e-12)  # b = -b_off - q
    assert (s2.z.item(), s2.q.item()) == (0.0, pytest.approx(0.9))
    s1, s2 = _ablation("brf-no-refractory", [200.0, 0.0])
    u2 = 2.0 + 0.02 * (p - 0.5 - 1.0)  # q still deepens the damping ...
    assert (s2.u.item(), s2.z.item()) == (pytest.approx(u2, abs=1e-10), 1.0)  # ... but not the threshold
    assert s2.q.item() == pytest.approx(0.9 + 1.0)
    s1, s2 = _ablation("brf-no-reset", [200.0, 0.0])
    u2 = 2.0 + 0.02 * (p - 0.5)  # q not in the damping
    assert s2.u.item() == pytest.approx(u2, abs=1e-10)
    assert (s2.z.item(), s2.q.item()) == (0.0, pytest.approx(0.9))  # 1.98 < theta + q = 2
    # without the refractory threshold it keeps spiking on its own; BRF's raised threshold stops it
    assert [s.z.item() for s in _ablation("brf-no-refractory", [200.0, 0.0])] == [1.0, 1.0]
    assert [s.z.item() for s in _ablation("brf", [200.0, 0.0])] == [1.0, 0.0]


def test_lif_steps_by_hand():
    zero = F.ALIFState(t(0.0), t(0.0), t(0.0))
    alpha = t(0.5)
    s1, s2 = run(F.lif_step, [0.01, 0.03], zero, alpha=alpha, theta0=0.01, spike=heaviside)
    # u1 = 0.5*0.01 = 0.005 < 0.01: silent; u2 = 0.0025 + 0.015 = 0.0175 > 0.01: spike, soft reset
    assert (s1.u.item(), s1.z.item()) == (pytest.approx(0.005), 0.0)
    assert (s2.u.item(), s2.z.item(), s2.a.item()) == (pytest.approx(0.0075), 1.0, 0.0)
