"""Fused BPTT for BRF / RF networks on the CPU (numba).

One compiled pass runs the whole sequence forward (hidden layer, readout and LI output) and one
runs the hand-derived backward through time. Per step and neuron the forward keeps u, v, q and z
(the only tensors the backward needs), so BPTT memory is linear in T: 4 values per step per neuron.

Equations (b0 = p(omega) - b_offset with the divergence boundary, else -b_offset). ``q_mode``
says where q enters (``Q_DAMP``: the damping, BRF's smooth reset; ``Q_THRESH``: the threshold,
its refractory period); BRF is both, RF neither (q stays 0), the ablations one each:
    b_t = b0 - [damp] q_{t-1};  I_t = I_in[t] + W_rec z_{t-1}
    u_t = u + dt (b_t u - w v + I_t);  v_t = v + dt (w u + b_t v)
    s_t = u_t - theta - [thresh] q_{t-1};  z_t = H(s_t);  q_t = gamma q_{t-1} + z_t
    d_t = W_out z_t;  o_t = alpha o_{t-1} + (1 - alpha) d_t
Backward (adjoints G*, surrogate sg):
    gs = (Gz_t + Gq_t) sg(s_t);  GU = Gu_t + gs
    gb = dt (GU u + Gv v);  gI = dt GU
    Gu <- GU (1 + dt b) + Gv dt w;  Gv <- -GU dt w + Gv (1 + dt b)
    Gq <- gamma Gq - [thresh] gs - [damp] gb;  Gz_{t-1} += W_rec^T gI;  dW_rec += gI z_{t-1}^T
    Gz_t = (Gz external) + W_out^T gd_t + (W_rec^T gI_{t+1}) + Gq_t,  gd_t = dL/dd_t

Parallelism and determinism. The batch is split into blocks of ``block_rows(batch)`` adjacent
sequences, a function of the batch size only, never of the thread count. A block runs the whole
sequence, step by step, writing only its own memory: u, v, q are kept block-major (each block's
T steps one contiguous stretch, ``block_offset``), the rest in private arrays copied out in
bursts; workers take blocks from an atomic counter as they come free, so a worker the OS has
descheduled on a busy machine holds up no one. Nothing is summed across sequences while the
blocks run: every such sum (the W_in, W_rec, W_out, omega, b0, alpha gradients) goes into
per-block or per-sequence parts, added afterwards in block / sequence order by one thread. So
every output and gradient is bit-identical for any number of threads.

Cost per step and sequence: O(H) elementwise (the surrogate in the network's precision,
``cpu_surrogate``), O(H) to list the spikes (``spike_list``: vector compare masks), O(H x active
spikes) for the event-driven input, recurrent and readout currents and the weight gradients, and
the dense O(H^2) recurrent adjoint W_rec^T gI. That one runs per block and step as a
[rows, H] x [H, H] product: compiled loops that stream 8 rows of W_rec per pass over two rows of
the block (or, where asked, MKL's single-threaded ?gemm, called from the kernel by address:
``blas``). The forward also counts each step's spikes per sequence (the spike penalty's input),
so that no pass over z is needed for them and their gradient enters without a [T, B, H] array.
"""

from __future__ import annotations

import os

import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

from .cpu_surrogate import SURROGATE_CODES, surrogate_at  # noqa: F401 (SURROGATE_CODES: re-exported)

Q_DAMP = 1  # q_mode bits (``neurons.flags.q_mode``): q in the damping (smooth reset) ...
Q_THRESH = 2  # ... and in the threshold (refractory period)


@intrinsic
def _cttz(typingctx, bits):
    """Index of the lowest set bit of a nonzero uint64."""
    sig = types.uint64(types.uint64)

    def codegen(context, builder, signature, args):
        return builder.cttz(args[0], ir.Constant(ir.IntType(1), 0))

    return sig, codegen


@intrinsic
def _nonzero16(typingctx, arr, offset):
    """Bit k (k < 16) set where the flat element offset + k of C-contiguous ``arr`` is nonzero
    (NaN included, -0.0 not: Python's ``x != 0.0``). One vector compare and a mask move, where a
    loop of ``if x != 0.0`` costs a compare and a branch per element, and a mispredicted branch
    per spike."""
    if not isinstance(arr, types.Array) or arr.layout != "C":
        return None
    sig = types.uint64(arr, offset)

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        ptr = builder.gep(ary.data, [args[1]])
        vty = ir.VectorType(ptr.type.pointee, 16)
        vec = builder.load(builder.bitcast(ptr, vty.as_pointer()), align=1)
        mask = builder.fcmp_unordered("!=", vec, ir.Constant(vty, None))
        return builder.zext(builder.bitcast(mask, ir.IntType(16)), ir.IntType(64))

    return sig, codegen


@numba.njit(inline="always", cache=True)
def spike_list(z, start, n, active, at):
    """Writes the indices k < n where z's flat element start + k is nonzero, in increasing order,
    to active[at:], and returns their number. 64 elements per word of compare masks, then one
    count-trailing-zeros per spike: ~17 ns per 256 neurons at 3 % spikes, where a loop with a
    branch per element took ~140 (mispredicted branches)."""
    count = 0
    k = 0
    while k + 64 <= n:
        o = start + k
        bits = (_nonzero16(z, o) | (_nonzero16(z, o + 16) << np.uint64(16))
                | (_nonzero16(z, o + 32) << np.uint64(32)) | (_nonzero16(z, o + 48) << np.uint64(48)))
        while bits != 0:
            active[at + count] = k + np.int64(_cttz(bits))
            count += 1
            bits &= bits - np.uint64(1)
        k += 64
    zr = _view(z, start, n)
    while k < n:
        if zr[k] != 0.0:
            active[at + count] = k
            count += 1
        k += 1
    return count


@numba.njit(inline="always", cache=True)
def spike_driven_current(rec, z, w_rec):
    """rec[h] = sum of w_rec[h, j] over the spiking j, added in index order (the reference's
    summation order, so the baselines' kernels stay bit-equal to it)."""
    rec[:] = 0.0
    for j in range(z.shape[0]):
        if z[j] != 0.0:
            for h in range(rec.shape[0]):
                rec[h] += w_rec[h, j]


@numba.njit(cache=True)
def block_rows(batch):
    """Sequences per block. A function of the batch size only (never of the thread
    count): the order of every cross-sequence sum follows from it."""
    return 16 if batch >= 64 else max(1, batch // 4)


@numba.njit(inline="always", cache=True)
def block_offset(lo, rows, steps, n, t):
    """Flat offset of step t of the block whose first sequence is ``lo`` (``rows`` sequences) in a
    block-major state array: block after block, each [T, rows, H]."""
    return lo * steps * n + t * rows * n


def constants(dtype, dt: float, theta: float, gamma: float) -> np.ndarray:
    """dt, theta, gamma, 1 and 0 in the arrays' dtype, so that float32 networks compute in float32
    (as the reference's float32 tensor ops do) instead of promoting to float64."""
    return np.array([dt, theta, gamma, 1.0, 0.0], dtype=dtype)


# --------------------------------------------------------------------------------------- forward


@numba.njit(cache=True)
def _tile(values, rows):
    """values repeated ``rows`` times: per-neuron constants laid out like a [rows, H] block."""
    n = values.shape[0]
    out = np.empty(rows * n, values.dtype)
    for r in range(rows):
        out[r * n:(r + 1) * n] = values
    return out


_CHUNK = 32  # steps of z, d and o a block keeps privately before copying them out (see below)


@numba.njit(parallel=True, cache=True)
def _network_forward(x, w_in_t, w_rec_t, omega, b0, w_out_t, alpha, consts, q_mode,
                     u_out, v_out, q_out, z_out, d_out, o_out, count_out, workers):
    """x [T, B, I] with w_in_t = W_in^T [I, H] (I = 0 and an H-wide x: x is the input current
    itself); w_rec_t = W_rec^T [H, H]; w_out_t = W_out^T [H, O] (O may be 0: no readout). Fills
    u, v, q (block-major, flat: see ``block_offset``), z [T, B, H] and the readout drive d and LI
    potentials o [T, B, O], and count [T, B], the spikes per step and sequence (the sum of z over
    neurons, which the spike penalty needs: counted here from the spike lists, it costs no pass
    over z).

    Sequences are independent here. A block of adjacent sequences runs step by step: per
    sequence the event-driven currents, then one elementwise pass over the whole [rows, H] block,
    then per sequence the spike list and the readout. Rows are reached through ``_view`` (no
    reference count; a view made by indexing costs an atomic update of a count all workers share),
    and loops run over such views, not over flat arrays at computed offsets: an index that numba
    cannot prove non-negative gets a wraparound check, which kept those loops from vectorising.

    Why block-major: in a [T, B, H] array, two workers running neighbouring blocks write within a
    few hundred bytes of each other at every step, and the cache lines (and the prefetchers'
    line pairs) between them bounce between the cores: with 2 workers the ECG forward took 1.4x
    the time of 1. So u, v, q go to a block-major array (each block's T steps one contiguous
    stretch) and z, d, o, which the caller needs time-major, are kept for ``_CHUNK`` steps in
    private arrays and copied out in one burst."""
    steps, batch, n = z_out.shape
    n_in = w_in_t.shape[0]
    n_x = x.shape[2]
    n_out = w_out_t.shape[1]
    block = block_rows(batch)
    n_blocks = (batch + block - 1) // block
    dt, theta, gamma, one, zero = consts[0], consts[1], consts[2], consts[3], consts[4]
    q_damp = (q_mode & Q_DAMP) != 0
    q_thresh = (q_mode & Q_THRESH) != 0
    counter = np.zeros(1, np.int64)  # the next block to hand out
    for _worker in numba.prange(min(workers, n_blocks)):
        blk = _next_block(counter)
        while blk < n_blocks:
            lo = blk * block
            rows = min(batch, lo + block) - lo
            m = rows * n
            m_out = rows * n_out
            u = np.zeros(m, u_out.dtype)
            v = np.zeros(m, u_out.dtype)
            q = np.zeros(m, u_out.dtype)
            cur = np.zeros(m, u_out.dtype)  # input current
            rec = np.zeros(m, u_out.dtype)  # recurrent current
            o = np.zeros(max(m_out, 1), u_out.dtype)
            z_chunk = np.zeros(_CHUNK * m, u_out.dtype)
            d_chunk = np.zeros(max(_CHUNK * m_out, 1), u_out.dtype)
            o_chunk = np.zeros(max(_CHUNK * m_out, 1), u_out.dtype)
            count_chunk = np.zeros(_CHUNK * rows, u_out.dtype)
            b0_t = _tile(b0, rows)
            om_t = _tile(omega, rows)
            active = np.empty(m, np.int64)  # per sequence, the neurons that spiked last step
            n_active = np.zeros(rows, np.int64)
            for t in range(steps):
                base = block_offset(lo, rows, steps, n, t)
                c = t % _CHUNK
                for r in range(rows):
                    cur_r = _view(cur, r * n, n)
                    rec_r = _view(rec, r * n, n)
                    # input current x_t W_in^T, skipping zero inputs (spikes), in input order
                    if n_in > 0:
                        for h in range(n):
                            cur_r[h] = 0.0
                        x_r = _view(x, (t * batch + lo + r) * n_x, n_x)
                        for k in range(n_in):
                            xv = x_r[k]
                            if xv != zero:
                                w_k = _view(w_in_t, k * n, n)
                                for h in range(n):
                                    cur_r[h] += xv * w_k[h]
                    else:
                        x_r = _view(x, (t * batch + lo + r) * n, n)
                        for h in range(n):
                            cur_r[h] = x_r[h]
                    # recurrent current, event-driven: the W_rec^T rows of last step's spikes in
                    # index order, summed before the input current is added (as the reference's
                    # i_in + z @ W_rec^T)
                    for h in range(n):
                        rec_r[h] = 0.0
                    _add_listed_rows(rec_r, w_rec_t, active, r * n, n_active[r], n)
                uo = _view(u_out, base, m)
                vo = _view(v_out, base, m)
                qo = _view(q_out, base, m)
                zo = _view(z_chunk, c * m, m)
                for i in range(m):
                    b = b0_t[i] - (q[i] if q_damp else zero)
                    un = u[i] + dt * (b * u[i] - om_t[i] * v[i] + (cur[i] + rec[i]))
                    vn = v[i] + dt * (om_t[i] * u[i] + b * v[i])
                    spike = one if un - theta - (q[i] if q_thresh else zero) > zero else zero
                    if q_mode != 0:
                        q[i] = gamma * q[i] + spike
                    u[i] = un
                    v[i] = vn
                    uo[i] = un
                    vo[i] = vn
                    qo[i] = q[i]
                    zo[i] = spike
                for r in range(rows):
                    count = spike_list(z_chunk, c * m + r * n, n, active, r * n)
                    n_active[r] = count
                    count_chunk[c * rows + r] = count
                    if n_out > 0:
                        d_r = _view(d_chunk, c * m_out + r * n_out, n_out)
                        o_r = _view(o_chunk, c * m_out + r * n_out, n_out)
                        ob = r * n_out
                        for k in range(n_out):
                            d_r[k] = 0.0
                        for k in range(count):
                            w_k = _view(w_out_t, active[r * n + k] * n_out, n_out)
                            for j in range(n_out):
                                d_r[j] += w_k[j]
                        for j in range(n_out):
                            o[ob + j] = alpha[j] * o[ob + j] + (one - alpha[j]) * d_r[j]
                            o_r[j] = o[ob + j]
                if c == _CHUNK - 1 or t == steps - 1:  # copy the chunk's steps out, time-major
                    for tc in range(t - c, t + 1):
                        k = tc - (t - c)
                        z_dst = _view(z_out, (tc * batch + lo) * n, m)
                        z_src = _view(z_chunk, k * m, m)
                        for i in range(m):
                            z_dst[i] = z_src[i]
                        count_dst = _view(count_out, tc * batch + lo, rows)
                        for r in range(rows):
                            count_dst[r] = count_chunk[k * rows + r]
                        if n_out > 0:
                            d_dst = _view(d_out, (tc * batch + lo) * n_out, m_out)
                            o_dst = _view(o_out, (tc * batch + lo) * n_out, m_out)
                            d_src = _view(d_chunk, k * m_out, m_out)
                            o_src = _view(o_chunk, k * m_out, m_out)
                            for i in range(m_out):
                                d_dst[i] = d_src[i]
                                o_dst[i] = o_src[i]
            blk = _next_block(counter)


# -------------------------------------------------------------------------------------- backward


@numba.njit(parallel=True, cache=True)
def _li_forward(drive, alpha, consts):
    """o_t = alpha o_{t-1} + (1 - alpha) drive_t; drive [T, B, O]."""
    steps, batch, n = drive.shape
    one = consts[3]
    out = np.empty_like(drive)
    for bi in numba.prange(batch):
        o = np.zeros(n, drive.dtype)
        for t in range(steps):
            for k in range(n):
                o[k] = alpha[k] * o[k] + (one - alpha[k]) * drive[t, bi, k]
                out[t, bi, k] = o[k]
    return out


@numba.njit(cache=True)
def _li_backward_block(grad_o, o_s, d_s, alpha, consts, grad_d, parts, lo, rows):
    """One block of ``li_backward``: sequences lo .. lo + rows - 1, step by step over their
    [rows, O] stretch of each step (contiguous: one sequence at a time read O values per step,
    1/16 of a cache line's worth, at a stride of B x O)."""
    steps, batch, n = grad_o.shape
    one, zero = consts[3], consts[4]
    m = rows * n
    g = np.zeros(m, grad_o.dtype)
    acc = np.zeros(m, grad_o.dtype)
    alpha_t = _tile(alpha, rows)
    o_none = np.full(m, zero)  # o_{-1}
    for t in range(steps - 1, -1, -1):
        now = (t * batch + lo) * n
        g_o = _view(grad_o, now, m)
        d_t = _view(d_s, now, m)
        g_d = _view(grad_d, now, m)
        o_prev = _view(o_s, now - batch * n, m) if t > 0 else o_none
        for i in range(m):
            g[i] += g_o[i]
            g_d[i] = g[i] * (one - alpha_t[i])
            acc[i] += g[i] * (o_prev[i] - d_t[i])
            g[i] *= alpha_t[i]
    _copy_into(parts, lo * n, acc, m)


@numba.njit(parallel=True, cache=True)
def _li_backward_parallel(grad_o, o_s, d_s, alpha, consts, grad_d, parts):
    batch = grad_o.shape[1]
    block = block_rows(batch)
    for blk in numba.prange((batch + block - 1) // block):
        lo = blk * block
        _li_backward_block(grad_o, o_s, d_s, alpha, consts, grad_d, parts, lo, min(batch, lo + block) - lo)


@numba.njit(cache=True)
def _li_backward_serial(grad_o, o_s, d_s, alpha, consts, grad_d, parts):
    batch = grad_o.shape[1]
    block = block_rows(batch)
    for lo in range(0, batch, block):
        _li_backward_block(grad_o, o_s, d_s, alpha, consts, grad_d, parts, lo, min(batch, lo + block) - lo)


_LI_PARALLEL_FROM = 1 << 20  # elements of grad_o: below, waking the workers costs more than it saves


def li_backward(grad_o, o_s, d_s, alpha, consts):
    """Adjoints of o_t = alpha o_{t-1} + (1 - alpha) d_t: dL/dd [T, B, O] and per-sequence parts
    of dL/dalpha [B, O] (the caller adds them in sequence order). Blocks of adjacent sequences, in
    parallel where the arrays are large (S-MNIST: 2M elements), else in one thread (ECG: 125k, where
    the parallel launch took 0.2-0.5 ms a call); each block's arithmetic is the same either way."""
    grad_d = np.empty_like(grad_o)
    parts = np.zeros(grad_o.shape[1:], grad_o.dtype)
    run = _li_backward_parallel if grad_o.size >= _LI_PARALLEL_FROM else _li_backward_serial
    run(grad_o, o_s, d_s, alpha, consts, grad_d, parts)
    return grad_d, parts


@intrinsic
def _call_fortran_gemm(typingctx, fn, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """Call the Fortran-convention ?gemm_ at address ``fn``; every argument is an address."""
    sig = types.void(*(types.intp,) * 14)

    def codegen(context, builder, signature, args):
        ptr = ir.IntType(8).as_pointer()
        fnty = ir.FunctionType(ir.VoidType(), [ptr] * 13)
        callee = builder.inttoptr(args[0], fnty.as_pointer())
        builder.call(callee, [builder.inttoptr(arg, ptr) for arg in args[1:]])
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _call_int_int(typingctx, fn, value):
    """Call ``int f(int)`` at address ``fn`` (MKL's per-thread thread-count setter)."""
    sig = types.int32(types.intp, types.int32)

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        callee = builder.inttoptr(args[0], ir.FunctionType(i32, [i32]).as_pointer())
        return builder.call(callee, [args[1]])

    return sig, codegen


@intrinsic
def _next_block(typingctx, counter):
    """Atomically counter[0] += 1; returns the old value. Workers take blocks with it as they come
    free (dynamic scheduling: a descheduled worker holds up no one). The block a sequence lands in,
    and so every result, does not depend on which worker runs it."""
    sig = types.int64(counter)

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        return builder.atomic_rmw("add", ary.data, context.get_constant(types.int64, 1), "monotonic")

    return sig, codegen


@intrinsic
def _ptr_at(typingctx, arr, offset):
    """Pointer to element ``offset`` of C-contiguous ``arr``'s flat data."""
    sig = types.CPointer(arr.dtype)(arr, offset)

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        return builder.gep(ary.data, [args[1]])

    return sig, codegen


@numba.njit(inline="always", cache=True)
def _view(arr, start, length):
    """arr's flat elements [start, start + length) as a 1-D array that does not own a reference to
    arr. A view made by indexing (``u_s[t, b]``) increments the reference count of arr's data, an
    atomic add; made per step and sequence, on a count that every worker shares (one cache line
    bouncing between cores), those were most of the backward's time at small H. ``arr`` must outlive
    the view and be C-contiguous (every caller's is). Fill such a view element by element: an
    array assigned to its slice (``view[:] = other``) left it unchanged under numba 0.68."""
    return numba.carray(_ptr_at(arr, start), length)


@numba.njit(cache=True)
def _aligned_rows(rows, ld, like):
    """A zeroed [rows, ld] work array whose start is 64-byte aligned, so that a BLAS
    call sees the same alignment in every block and run."""
    buf = np.zeros(rows * ld + 64, like.dtype)
    off = ((64 - buf.ctypes.data % 64) % 64) // buf.itemsize
    return buf[off:off + rows * ld].reshape((rows, ld))


@numba.njit(fastmath={"contract"}, cache=True)
def _recurrent_adjoint_loops(gi, w, out, rows, n):
    """out[r, :n] = sum_h gi[r, h] w[h, :n] for r < rows, h in increasing order (the same order
    for every row and block). Eight rows of w per pass over out, two rows of out at a time: each
    w vector loaded serves 16 multiply-adds, and the eight rows stay in L1 across the block's
    sequences. Per element the same additions in the same order as one row at a time."""
    for r in range(rows):
        out[r, :n] = 0.0
    h = 0
    while h + 8 <= n:
        w0 = w[h]
        w1 = w[h + 1]
        w2 = w[h + 2]
        w3 = w[h + 3]
        w4 = w[h + 4]
        w5 = w[h + 5]
        w6 = w[h + 6]
        w7 = w[h + 7]
        r = 0
        while r + 2 <= rows:
            g = gi[r]
            p = gi[r + 1]
            o = out[r]
            oo = out[r + 1]
            g0, g1, g2, g3, g4, g5, g6, g7 = g[h], g[h + 1], g[h + 2], g[h + 3], g[h + 4], g[h + 5], g[h + 6], g[h + 7]
            p0, p1, p2, p3, p4, p5, p6, p7 = p[h], p[h + 1], p[h + 2], p[h + 3], p[h + 4], p[h + 5], p[h + 6], p[h + 7]
            for j in range(n):
                a0, a1, a2, a3, a4, a5, a6, a7 = w0[j], w1[j], w2[j], w3[j], w4[j], w5[j], w6[j], w7[j]
                o[j] = (((((((o[j] + g0 * a0) + g1 * a1) + g2 * a2) + g3 * a3)
                          + g4 * a4) + g5 * a5) + g6 * a6) + g7 * a7
                oo[j] = (((((((oo[j] + p0 * a0) + p1 * a1) + p2 * a2) + p3 * a3)
                           + p4 * a4) + p5 * a5) + p6 * a6) + p7 * a7
            r += 2
        if r < rows:
            g = gi[r]
            o = out[r]
            g0, g1, g2, g3, g4, g5, g6, g7 = g[h], g[h + 1], g[h + 2], g[h + 3], g[h + 4], g[h + 5], g[h + 6], g[h + 7]
            for j in range(n):
                o[j] = (((((((o[j] + g0 * w0[j]) + g1 * w1[j]) + g2 * w2[j]) + g3 * w3[j])
                          + g4 * w4[j]) + g5 * w5[j]) + g6 * w6[j]) + g7 * w7[j]
        h += 8
    while h < n:
        wh = w[h]
        for r in range(rows):
            g = gi[r, h]
            o = out[r]
            for j in range(n):
                o[j] = o[j] + g * wh[j]
        h += 1


@numba.njit(cache=True)
def _recurrent_adjoint(gi, w, out, rows, n, gemm, gemm_args, scalars):
    """out[:rows, :n] = gi[:rows, :n] @ w[:n, :n]: one single-threaded BLAS ?gemm_ call where
    ``gemm`` is its address, else compiled loops. gi, w and out are _aligned_rows arrays."""
    if gemm == 0:
        _recurrent_adjoint_loops(gi, w, out, rows, n)
        return
    # row-major C = A B is column-major C^T = B^T A^T: ?gemm_('N', 'N', n, rows, n, 1, w, ldw,
    # gi, ld, 0, out, ld). Integer arguments live in gemm_args (int32): n, rows, ldw, ld, 'NN'.
    gemm_args[1] = rows
    p = gemm_args.ctypes.data
    one = scalars.ctypes.data
    zero = one + scalars.itemsize
    _call_fortran_gemm(gemm, p + 16, p + 16, p, p + 4, p, one, w.ctypes.data, p + 8,
                       gi.ctypes.data, p + 12, zero, out.ctypes.data, p + 12)


_SEGMENT = 1024  # elements: the backward's elementwise passes run over as many whole sequences as fit


@numba.njit(parallel=True, fastmath={"contract"}, cache=True)
def _network_backward(grad_z, grad_count, grad_d, w_out, u_s, v_s, q_s, z_s, x, w_rec, omega, b0, consts,
                     q_mode, surrogate, t_stop, block, want_grad_i, states_block_major, gemm, set_blas_threads,
                     workers):
    """Adjoints of ``network_forward``.

    grad_z [T, B, H] or [0, 0, 0] (no gradient reaches z directly); grad_count [T, B] or [0, 0], the
    gradient reaching the forward's spike counts (it reaches every z of its step); grad_d [T, B, O] = dL/dd with
    w_out [O, H] (O may be 0); x [T, B, I] with I_in = x W_in^T (I may be 0: no W_in gradient);
    u_s, v_s, q_s block-major as the forward leaves them (``states_block_major``) or [T, B, H] (the
    QAT flow's integer forward), z_s [T, B, H]. A block writes only its
    own private arrays while it runs (the gradient parts included) and copies them out at its end:
    the arrays two workers share are only read meanwhile (see ``_network_forward``).
    ``t_stop`` > 0 truncates BPTT: no gradient crosses from step k*t_stop back into the state of
    step k*t_stop - 1 (the forward detached the state there). ``gemm``: address of a BLAS
    ?gemm_ of the arrays' dtype, or 0 for compiled loops; ``set_blas_threads``: address of the
    BLAS's per-thread thread-count setter, or 0.

    Returns grad_i [T, B, H] (or [0, 0, 0] unless ``want_grad_i``), dW_in [H, I], dW_rec [H, H],
    domega [H], db0 [H], dW_out [O, H]: each sum over sequences added in block order.
    """
    steps, batch, n = z_s.shape
    n_out = w_out.shape[0]
    n_in = x.shape[2]
    dtype = u_s.dtype
    dt, theta, gamma, one = consts[0], consts[1], consts[2], consts[3]
    q_flag = one if q_mode != 0 else consts[4]  # multiplies gq: branch-free switch (RF: no q)
    q_damp = (q_mode & Q_DAMP) != 0
    q_thresh = (q_mode & Q_THRESH) != 0
    has_grad_z = grad_z.shape[0] > 0
    has_grad_count = grad_count.shape[0] > 0
    n_blocks = (batch + block - 1) // block
    # allocated by serial helpers (in this parallel function each would become a parallel loop)
    grad_i = _zeros3(steps if want_grad_i else 0, batch if want_grad_i else 0, n if want_grad_i else 0, u_s)
    w_parts = _zeros3(n_blocks, n, n, u_s)  # [block, j, h]: sum of gI[h] z_{t-1}[j]
    in_parts = _zeros3(n_blocks, n_in, n, u_s)  # [block, k, h]: sum of gI[h] x[k]
    out_parts = _zeros3(n_blocks, n, n_out, u_s)  # [block, j, c]: sum of gd[c] z[j]
    om_parts = _zeros3(1, batch, n, u_s)[0]
    b0_parts = _zeros3(1, batch, n, u_s)[0]
    w_al = _aligned_copy(w_rec)
    ld_w = w_al.shape[1]
    counter = np.zeros(1, np.int64)  # the next block to hand out
    for _worker in numba.prange(min(workers, n_blocks)):
        blas_threads = 0
        if set_blas_threads != 0:  # this worker's BLAS calls stay on this thread
            blas_threads = _call_int_int(set_blas_threads, 1)
        blk = _next_block(counter)
        while blk < n_blocks:
            lo = blk * block
            rows = min(batch, lo + block) - lo
            # adjoint state of the block, [rows, H]. The elementwise work runs over segments
            # of as many whole sequences as fit in _SEGMENT elements (the whole block where it is
            # small: fixed costs per loop and pass are paid once per segment and step), so that
            # the arrays stay in L1 (one pass over a whole [16, 256] block per quantity was 2x
            # slower than one sequence at a time; four sequences at a time ~3 % faster than one).
            # The last segment may be shorter. Per element the same operations either way.
            m = rows * n
            seg = min(m, n * max(1, _SEGMENT // n))
            state_step = m if states_block_major else batch * n  # from step t to t + 1 in u_s, v_s, q_s
            w_blk = np.zeros(n * n, dtype)  # this block's parts, copied out at its end
            in_blk = np.zeros(max(n_in * n, 1), dtype)
            out_blk = np.zeros(max(n * n_out, 1), dtype)
            om_blk = np.zeros(m, dtype)
            b0_blk = np.zeros(m, dtype)
            gu = np.zeros((rows, n), dtype)
            gv = np.zeros((rows, n), dtype)
            gq = np.zeros((rows, n), dtype)
            gi = _aligned_rows(rows, n, u_s)  # gI, the GEMM's input
            gz_rec = _aligned_rows(rows, n, u_s)  # W_rec^T gI from the step after, its output
            gemm_args = np.zeros(6, np.int32)
            gemm_args[0] = n
            gemm_args[2] = ld_w
            gemm_args[3] = n
            gemm_args[4] = 78 | (78 << 8)  # "NN"
            scalars = np.zeros(2, dtype)
            scalars[0] = 1.0
            gz_blk = np.zeros(m, dtype)
            sg_blk = np.zeros(m, dtype)
            zero_seg = np.zeros(seg, dtype)
            om_seg = _tile(omega, seg // n)  # per-neuron constants laid out like a segment
            b0_seg = _tile(b0, seg // n)
            # per sequence, the neurons that spiked at step t (``spikes_now``, dW_out) and t - 1
            # (``spikes_prev``, dW_rec): step t - 1's list serves dW_out again one step back
            spikes_now = np.empty(m, np.int64)
            spikes_prev = np.empty(m, np.int64)
            count_now = np.zeros(rows, np.int64)
            count_prev = np.zeros(rows, np.int64)
            for r in range(rows):
                count_now[r] = spike_list(z_s, ((steps - 1) * batch + lo + r) * n, n, spikes_now, r * n)
            for t in range(steps - 1, -1, -1):
                if t_stop > 0 and t < steps - 1 and (t + 1) % t_stop == 0:
                    gu[:] = 0.0
                    gv[:] = 0.0
                    gq[:] = 0.0
                    gz_rec[:] = 0.0
                blk_now = (t * batch + lo) * n  # [t, lo, 0] of the [T, B, H] arrays
                # the same in u_s, v_s, q_s (only read here: either layout is fine)
                state_now = block_offset(lo, rows, steps, n, t) if states_block_major else blk_now
                if t >= 2:  # what step t - 1 reads first (see _prefetch_block)
                    ahead = ((t - 2) * batch + lo) * n
                    _prefetch_block(z_s, ahead, m)
                    ahead = block_offset(lo, rows, steps, n, t - 2) if states_block_major else ahead
                    _prefetch_block(u_s, ahead, m)
                    _prefetch_block(v_s, ahead, m)
                    if q_mode != 0:
                        _prefetch_block(q_s, ahead, m)
                for r in range(rows):
                    bi = lo + r
                    now = blk_now + r * n
                    # gradient reaching z_t: directly, through the readout (through the next
                    # step: gz_rec, added below)
                    gz = _view(gz_blk, r * n, n)
                    g_count = grad_count[t, bi] if has_grad_count else consts[4]
                    if has_grad_z:
                        g_in = _view(grad_z, now, n)
                        for h in range(n):
                            gz[h] = g_in[h] + g_count
                    else:
                        for h in range(n):
                            gz[h] = g_count
                    if n_out > 0:
                        gd = _view(grad_d, (t * batch + bi) * n_out, n_out)
                        _add_readout_adjoint(gz, gd, w_out, n, n_out)
                        for k in range(count_now[r]):  # dW_out: event-driven over this step's spikes
                            pj = _view(out_blk, spikes_now[r * n + k] * n_out, n_out)
                            for c in range(n_out):
                                pj[c] += gd[c]
                for s0 in range(0, m, seg):
                    seg_len = min(seg, m - s0)
                    now = state_now + s0
                    prev = now - state_step  # step t - 1
                    u_now = _view(u_s, now, seg_len)
                    if t > 0:
                        u_prev = _view(u_s, prev, seg_len)
                        v_prev = _view(v_s, prev, seg_len)
                        q_prev = _view(q_s, prev, seg_len) if q_mode != 0 else zero_seg
                    else:
                        u_prev = zero_seg
                        v_prev = zero_seg
                        q_prev = zero_seg
                    # q where it enters: the threshold, the damping (zeros where it does not)
                    q_thr = q_prev if q_thresh else zero_seg
                    q_dmp = q_prev if q_damp else zero_seg
                    gz = _view(gz_blk, s0, seg_len)
                    sg = _view(sg_blk, s0, seg_len)
                    gur = _view(gu, s0, seg_len)
                    gvr = _view(gv, s0, seg_len)
                    gqr = _view(gq, s0, seg_len)
                    gzr = _view(gz_rec, s0, seg_len)
                    gir = _view(gi, s0, seg_len)
                    omp = _view(om_blk, s0, seg_len)
                    b0p = _view(b0_blk, s0, seg_len)
                    # the surrogate in the arrays' precision (one loop per code: a branch inside
                    # would keep the loop from vectorising)
                    if surrogate == 0:
                        for h in range(seg_len):
                            sg[h] = surrogate_at(u_now[h] - theta - q_thr[h], 0)
                    else:
                        for h in range(seg_len):
                            sg[h] = surrogate_at(u_now[h] - theta - q_thr[h], 1)
                    # the adjoint step as passes that each touch few arrays: one loop touching
                    # them all needs more run-time aliasing checks than LLVM makes, and stays
                    # scalar. Per element the same operations as one loop.
                    for h in range(seg_len):  # gs = (Gz + Gq) sg(s), into sg
                        sg[h] = (gz[h] + gzr[h] + q_flag * gqr[h]) * sg[h]  # gq stays 0 for RF
                    for h in range(seg_len):  # GU = Gu + gs, into gu
                        gur[h] += sg[h]
                    for h in range(seg_len):  # gI = dt GU
                        gir[h] = dt * gur[h]
                    for h in range(seg_len):  # gb = dt (GU u + Gv v), into gz
                        gz[h] = dt * (gur[h] * u_prev[h] + gvr[h] * v_prev[h])
                    for h in range(seg_len):
                        omp[h] += dt * (gvr[h] * u_prev[h] - gur[h] * v_prev[h])
                    for h in range(seg_len):
                        b0p[h] += gz[h]
                    for h in range(seg_len):  # Gu, Gv one step back
                        b = b0_seg[h] - q_dmp[h]
                        big_u = gur[h]
                        gur[h] = big_u * (one + dt * b) + gvr[h] * dt * om_seg[h]
                        gvr[h] = -big_u * dt * om_seg[h] + gvr[h] * (one + dt * b)
                    sg_q = sg if q_thresh else zero_seg
                    gb_q = gz if q_damp else zero_seg
                    for h in range(seg_len):  # Gq <- gamma Gq - [thresh] gs - [damp] gb
                        gqr[h] = q_flag * (gamma * gqr[h] - sg_q[h] - gb_q[h])
                    if want_grad_i:
                        g_out = _view(grad_i, blk_now + s0, seg_len)
                        for h in range(seg_len):
                            g_out[h] = gir[h]
                if n_in > 0:
                    for r in range(rows):
                        gir = _view(gi, r * n, n)
                        x_r = _view(x, (t * batch + lo + r) * n_in, n_in)
                        for k in range(n_in):  # dW_in: event-driven over nonzero inputs
                            xv = x_r[k]
                            if xv != 0.0:
                                pk = _view(in_blk, k * n, n)
                                for h in range(n):
                                    pk[h] += xv * gir[h]
                if t > 0:
                    # recurrent synapses, I_t = ... + W_rec z_{t-1}: adjoint for step t-1, dW_rec
                    _recurrent_adjoint(gi, w_al, gz_rec, rows, n, gemm, gemm_args, scalars)
                    for r in range(rows):
                        count_prev[r] = spike_list(z_s, ((t - 1) * batch + lo + r) * n, n, spikes_prev, r * n)
                        gir = _view(gi, r * n, n)
                        for k in range(count_prev[r]):
                            pj = _view(w_blk, spikes_prev[r * n + k] * n, n)
                            for h in range(n):
                                pj[h] += gir[h]
                    spikes_now, spikes_prev = spikes_prev, spikes_now
                    count_now, count_prev = count_prev, count_now
            _copy_into(w_parts, blk * n * n, w_blk, n * n)
            _copy_into(in_parts, blk * n_in * n, in_blk, n_in * n)
            _copy_into(out_parts, blk * n * n_out, out_blk, n * n_out)
            _copy_into(om_parts, lo * n, om_blk, m)
            _copy_into(b0_parts, lo * n, b0_blk, m)
            blk = _next_block(counter)
        if set_blas_threads != 0:
            _call_int_int(set_blas_threads, blas_threads)  # as it was (0: MKL's global setting)
    return (grad_i, _sum_parts_t(in_parts), _sum_parts_t(w_parts), _sum_parts(om_parts), _sum_parts(b0_parts),
            _sum_parts_t(out_parts))


@numba.njit(inline="always", fastmath={"contract"}, cache=True)
def _add_readout_adjoint(gz, gd, w_out, n, n_out):
    """gz[h] += sum_c gd[c] w_out[c, h], c in increasing order, eight (then four, two, one) rows of
    w_out per pass: gz is loaded and stored once per group instead of once per output (the per-output
    passes were ~40 % of the S-MNIST backward's memory operations). The same additions in the
    same order as one output at a time."""
    c = 0
    while c + 8 <= n_out:
        g0, g1, g2, g3, g4, g5, g6, g7 = gd[c], gd[c + 1], gd[c + 2], gd[c + 3], gd[c + 4], gd[c + 5], gd[c + 6], gd[c + 7]
        w0 = _view(w_out, c * n, n)
        w1 = _view(w_out, (c + 1) * n, n)
        w2 = _view(w_out, (c + 2) * n, n)
        w3 = _view(w_out, (c + 3) * n, n)
        w4 = _view(w_out, (c + 4) * n, n)
        w5 = _view(w_out, (c + 5) * n, n)
        w6 = _view(w_out, (c + 6) * n, n)
        w7 = _view(w_out, (c + 7) * n, n)
        for h in range(n):
            gz[h] = (((((((gz[h] + g0 * w0[h]) + g1 * w1[h]) + g2 * w2[h]) + g3 * w3[h])
                       + g4 * w4[h]) + g5 * w5[h]) + g6 * w6[h]) + g7 * w7[h]
        c += 8
    while c + 4 <= n_out:
        g0, g1, g2, g3 = gd[c], gd[c + 1], gd[c + 2], gd[c + 3]
        w0 = _view(w_out, c * n, n)
        w1 = _view(w_out, (c + 1) * n, n)
        w2 = _view(w_out, (c + 2) * n, n)
        w3 = _view(w_out, (c + 3) * n, n)
        for h in range(n):
            gz[h] = (((gz[h] + g0 * w0[h]) + g1 * w1[h]) + g2 * w2[h]) + g3 * w3[h]
        c += 4
    if c + 2 <= n_out:
        g0, g1 = gd[c], gd[c + 1]
        w0 = _view(w_out, c * n, n)
        w1 = _view(w_out, (c + 1) * n, n)
        for h in range(n):
            gz[h] = (gz[h] + g0 * w0[h]) + g1 * w1[h]
        c += 2
    if c < n_out:
        g = gd[c]
        wc = _view(w_out, c * n, n)
        for h in range(n):
            gz[h] += g * wc[h]


@numba.njit(inline="always", cache=True)
def _add_listed_rows(acc, w, rows, at, count, n):
    """acc[h] += w[rows[at + k], h] for k < count, k in increasing order, four rows per pass over acc
    (acc loaded and stored once per four spike rows, not once per row: the recurrent current was
    ~30 % of the forward at 7 spikes per step). The same additions in the same order as one row at a
    time."""
    k = 0
    while k + 4 <= count:
        w0 = _view(w, rows[at + k] * n, n)
        w1 = _view(w, rows[at + k + 1] * n, n)
        w2 = _view(w, rows[at + k + 2] * n, n)
        w3 = _view(w, rows[at + k + 3] * n, n)
        for h in range(n):
            acc[h] = (((acc[h] + w0[h]) + w1[h]) + w2[h]) + w3[h]
        k += 4
    while k < count:
        wk = _view(w, rows[at + k] * n, n)
        for h in range(n):
            acc[h] += wk[h]
        k += 1


@intrinsic
def _prefetch(typingctx, arr, offset):
    """Hint the cache line holding C-contiguous ``arr``'s flat element ``offset`` into the caches."""
    if not isinstance(arr, types.Array) or arr.layout != "C":
        return None
    sig = types.void(arr, offset)

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        i32 = ir.IntType(32)
        i8p = ir.IntType(8).as_pointer()
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
                                            "llvm.prefetch.p0")
        ptr = builder.bitcast(builder.gep(ary.data, [args[1]]), i8p)
        builder.call(fn, [ptr, i32(0), i32(3), i32(1)])  # read, keep in all levels, data
        return context.get_dummy_value()

    return sig, codegen


@numba.njit(inline="always", cache=True)
def _prefetch_block(arr, start, length):
    """Prefetch arr's flat elements [start, start + length). The backward walks time downwards:
    every step its reads jump back to a new 16 KB stretch per array (z, u, v, q), where the
    hardware prefetchers start over; asked for one step ahead, the lines are there in time."""
    step = max(1, 64 // arr.itemsize)
    for k in range(0, length, step):
        _prefetch(arr, start + k)


@numba.njit(inline="always", cache=True)
def _copy_into(dst, start, src, length):
    """dst's flat elements [start, start + length) = src[:length]."""
    d = _view(dst, start, length)
    for i in range(length):
        d[i] = src[i]


@numba.njit(cache=True)
def _zeros3(a, b, c, like):
    return np.zeros((a, b, c), like.dtype)


@numba.njit(cache=True)
def _aligned_copy(w):
    """w in an aligned array whose rows are padded to a multiple of 16 elements."""
    out = _aligned_rows(w.shape[0], (w.shape[1] + 15) // 16 * 16, w)
    out[:, :w.shape[1]] = w
    return out


@numba.njit(cache=True)
def _sum_parts_t(parts):
    """The transpose of _sum_parts(parts), contiguous."""
    return _sum_parts(parts).T.copy()


@numba.njit(cache=True)
def _sum_parts(parts):
    """parts[0] + parts[1] + ... in index order, by one thread."""
    out = parts[0].copy() if parts.shape[0] > 0 else np.zeros(parts.shape[1:], parts.dtype)
    for i in range(1, parts.shape[0]):
        out += parts[i]
    return out


# ------------------------------------------------------------------------- plain-array wrappers


def network_forward(*args):
    """``_network_forward`` with one worker per numba thread (``workers`` is an argument: a
    cached kernel cannot ask numba itself)."""
    return _network_forward(*args, numba.get_num_threads())


def network_backward(*args):
    """``_network_backward`` with one worker per numba thread."""
    return _network_backward(*args, numba.get_num_threads())


li_forward = _li_forward
sum_parts = _sum_parts

_BLAS: dict[str, int] = {}


def _load_blas() -> dict[str, int]:
    """Addresses of the Fortran ?gemm_ and MKL's per-thread thread-count setter in the MKL that
    torch links (x86 builds), or an empty dict (other builds: the compiled loops run instead)."""
    import ctypes
    import os

    import torch

    if not torch.backends.mkl.is_available():
        return {}
    try:
        lib = ctypes.CDLL(os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so"))
        return {name: ctypes.cast(getattr(lib, symbol), ctypes.c_void_p).value
                for name, symbol in (("float32", "sgemm_"), ("float64", "dgemm_"),
                                     ("threads", "MKL_Set_Num_Threads_Local"))}
    except (OSError, AttributeError):
        return {}


def blas(dtype) -> tuple[int, int]:
    """(gemm address, thread-setter address) for the recurrent adjoint in ``dtype``; (0, 0) means
    the compiled loops, the default. MKL runs only where asked for: ``use_blas(True)`` or the
    environment variable ``BRF_HW_GEMM=mkl``. Why the loops by default: on the AVX-512 CPU
    measured (AMD Zen 5) they do the [16, 256] x [256, 256] product at 95 GFMA/s per core, MKL (its
    AVX2 code on AMD) at 42; and one path on every machine gives the same gradients whether or not
    torch links MKL."""
    mode = _BLAS.get("mode")
    if mode is None:
        mode = "mkl" if os.environ.get("BRF_HW_GEMM", "loops").lower() == "mkl" else "loops"
    if mode == "loops":
        return 0, 0
    if "loaded" not in _BLAS:
        _BLAS.update(_load_blas(), loaded=1)
    gemm = _BLAS.get(np.dtype(dtype).name, 0)
    return (gemm, _BLAS.get("threads", 0)) if gemm else (0, 0)


def use_blas(enabled: bool | None) -> None:
    """True: MKL's ?gemm_ for the recurrent adjoint (where torch links MKL); False: the compiled
    loops; None: the default (``blas``). Tests and benchmarks compare the two."""
    _BLAS["mode"] = None if enabled is None else ("mkl" if enabled else "loops")


def to_time_major(state, steps, batch, n):
    """A block-major state array (``block_offset``) as [T, B, H]."""
    out = np.empty((steps, batch, n), state.dtype)
    block = block_rows(batch)
    for lo in range(0, batch, block):
        rows = min(batch, lo + block) - lo
        start = block_offset(lo, rows, steps, n, 0)
        out[:, lo:lo + rows] = state[start:start + steps * rows * n].reshape(steps, rows, n)
    return out


def resonator_forward(i_in, w_rec, omega, b0, dt, theta, gamma, q_mode):
    """Hidden layer only: i_in [T, B, H] -> u, v, q, z [T, B, H]."""
    i_in, omega, b0 = (np.ascontiguousarray(a) for a in (i_in, omega, b0))
    dtype = i_in.dtype
    steps, batch, n = i_in.shape
    states = [np.empty(steps * batch * n, dtype) for _ in range(3)]
    z = np.empty((steps, batch, n), dtype)
    network_forward(i_in, np.zeros((0, n), dtype), np.ascontiguousarray(w_rec.T), omega, b0,
                    np.zeros((n, 0), dtype), np.zeros(0, dtype), constants(dtype, dt, theta, gamma), q_mode,
                    *states, z, np.empty((steps, batch, 0), dtype), np.empty((steps, batch, 0), dtype),
                    np.empty((steps, batch), dtype))
    return (*(to_time_major(a, steps, batch, n) for a in states), z)


def resonator_backward(grad_z, u_s, v_s, q_s, z_s, w_rec, omega, b0, dt, theta, gamma, q_mode,
                       surrogate, t_stop):
    """Hidden layer only (the interface of the QAT flow): returns grad_i [T, B, H], dW_rec, domega,
    db0. ``surrogate`` is a SURROGATE_CODES value."""
    grad_z, u_s, v_s, q_s, z_s, w_rec, omega, b0 = (
        np.ascontiguousarray(a) for a in (grad_z, u_s, v_s, q_s, z_s, w_rec, omega, b0))
    dtype = u_s.dtype
    steps, batch, n = u_s.shape
    g_i, _, g_w, g_omega, g_b0, _ = network_backward(
        grad_z, np.zeros((0, 0), dtype), np.zeros((steps, batch, 0), dtype), np.zeros((0, n), dtype), u_s, v_s, q_s, z_s,
        np.zeros((steps, batch, 0), dtype), w_rec, omega, b0, constants(dtype, dt, theta, gamma), q_mode,
        surrogate, t_stop, block_rows(batch), True, False, *blas(dtype))
    return g_i, g_w, g_omega, g_b0


