"""The fixed-point primitives of ``fixed.arith`` on Amaranth values: same shifts, same rounding,
same bounds, taken from the FixedSpec. Amaranth widens + and * exactly, so no intermediate wraps."""

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
    return Mux(x > fmt.max_int, fmt.max_int, Mux(x < fmt.min_int, fmt.min_int, x))


def brf_update(spec, dtq: int, gamma: int, theta: int, acc, u, v, q, d, c):
    """One neuron's step, ``arith.brf_step`` term for term. Returns (u', v', q', z)."""
    s, cf = spec.state, spec.coef
    cur = rshift(acc, spec.weight_shift)
    e = saturate(d - rshift(q * dtq, s.frac), cf)
    u_new = saturate(rshift(e * u - c * v, cf.frac) + cur, s)
    v_new = saturate(rshift(e * v + c * u, cf.frac), s)
    z = (theta + q - u_new) < 0
    q_new = saturate(rshift(q * gamma, cf.frac) + Mux(z, 1 << s.frac, 0), s)
    return u_new, v_new, q_new, z


def li_update(spec, acc_o, o, alpha: int):
    return saturate(rshift(o * alpha, spec.coef.frac) + rshift(acc_o, spec.out_weight_shift), spec.output)
