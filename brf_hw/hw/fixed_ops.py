"""The fixed-point primitives of ``fixed.arith`` on Amaranth values: same shifts, same rounding,
same bounds, taken from the FixedSpec. Amaranth widens + and * exactly, so no intermediate wraps.

The BRF step is cut into the terms of ``arith.brf_step`` so the accelerator can put pipeline
registers between them; chaining the terms gives exactly ``arith.brf_step``:

    e  = damping(spec, d, q * dtq)
    u' = next_u(spec, e * u, c * v, i)        i = current(spec, acc + layout.acc_offset(spec))
                                              (multi-bit inputs: rshift of w_in . x + the recurrent sum)
    v' = next_v(spec, e * v, c * u)
    z  = spike(theta + q, u')                 q' = next_q(spec, q * gamma, z)

BRF's ablations and RF (``arith.resonator_step``'s q_mode) leave terms out: ``update``.
BHRF (``arith.bhrf_step``, y = omega*v; ``harmonic``):

    e  = harmonic_damping(spec, d, q * dtq)   y' = next_y(spec, y, c * u)
    u' = next_u(spec, e * u, c * y', i)       z, q' as BRF's
ALIF and LIF (``arith.adaptive_step``; LIF: th = theta0, no a):

    h  = membrane(spec, alpha_m * u, i)       th = threshold(spec, theta0, beta * a)
    z  = spike(th, h)                         u' = soft_reset(spec, h, z, th)
    a' = next_a(spec, rho * a, rho, z)        rho*(a - z*2^sf) as rho*a - z*(rho << sf): the
                                              product does not wait for the spike
"""

from __future__ import annotations

from amaranth.hdl import Mux, Value

from ..fixed.formats import Format


def rshift(x: Value, s: int) -> Value:
    """Round-half-up arithmetic right shift by s (left shift for s < 0), as ``arith.rshift``."""
    if s > 0:
        return (x + (1 << (s - 1))) >> s
    if s < 0:
        return x << (-s)
    return x


def saturate(x: Value, fmt: Format) -> Value:
    """Clamp a signed value to ``fmt``'s two's-complement range."""
    return saturate_bits(x, fmt.bits)


def saturate_bits(x: Value, bits: int) -> Value:
    """Clamp a signed value to ``bits``-bit two's complement (any width: also a mean readout's
    running sums, up to 62 bits). x fits iff the bits from the sign bit up are all equal; testing
    that is a few LUTs, where two comparisons against the bounds would be two carry chains as
    wide as x."""
    x = x.as_signed()
    if len(x) <= bits:
        return x
    top = x[bits - 1:]
    fits = top.all() | ~top.any()
    return Mux(fits, x[:bits].as_signed(), Mux(x[-1], -(1 << (bits - 1)), (1 << (bits - 1)) - 1))


def running_sum(s, o, bits: int):
    """``arith.sum_step``: s + o saturated to the running sum's ``bits``."""
    return saturate_bits(s + o, bits)


def damping(spec, d, q_dt):
    return saturate(d - rshift(q_dt, spec.state.frac), spec.coef)


def harmonic_damping(spec, d, q_dt):
    """BHRF's 1 - 2 dt (b0 + q): 2 dt q is dt q shifted one bit less."""
    return saturate(d - rshift(q_dt, spec.state.frac - 1), spec.coef)


def next_y(spec, y, c_u):
    return saturate(y + rshift(c_u, spec.coef.frac), spec.state)


def current(spec, acc_plus_offset):
    """rshift(acc, weight_shift) of an accumulator that started from ``layout.acc_offset``."""
    s = spec.weight_shift
    return acc_plus_offset.as_signed()[s:].as_signed() if s > 0 else acc_plus_offset << -s


def next_u(spec, e_u, c_v, current):
    return saturate(rshift(e_u - c_v, spec.coef.frac) + current, spec.state)


def next_v(spec, e_v, c_u):
    return saturate(rshift(e_v + c_u, spec.coef.frac), spec.state)


def spike(theta_plus_q, u_new):
    return (theta_plus_q - u_new) < 0


def next_q(spec, q_gamma, z):
    return saturate(rshift(q_gamma, spec.coef.frac) + Mux(z, 1 << spec.state.frac, 0), spec.state)


def membrane(spec, alpha_u, current):
    return saturate(rshift(alpha_u, spec.coef.frac) + current, spec.state)


def threshold(spec, theta0: int, beta_a):
    return theta0 + rshift(beta_a, spec.coef.frac)


def soft_reset(spec, h, z, th):
    """h - z*th: h - th beside the comparison (th - h), then a choice, not a subtraction after it."""
    return saturate(Mux(z, h - th, h), spec.state)


def next_a(spec, rho_a, rho, z):
    sf = spec.state.frac
    return saturate(Mux(z, 1 << sf, 0) + rshift(rho_a - Mux(z, rho << sf, 0), spec.coef.frac), spec.state)


def li_update(spec, acc_o, o_alpha):
    return saturate(rshift(o_alpha, spec.coef.frac) + rshift(acc_o, spec.out_weight_shift), spec.output)
