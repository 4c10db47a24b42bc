"""The attention kernel for Hopper in Gluon (Triton's lower-level language): the semantics of ``attention.py``
(INT8 Q·Kᵀ with per-block scales, online softmax in base 2 over 64-key tiles, P·V in V's 16-bit type into fp32,
fast/exact exponent, causal both alignments, ragged tails, GQA, LSE), scheduled so the tensor cores and the softmax
overlap, which ``tl.dot`` cannot express:

- Q·Kᵀ of the next tile is issued (``warpgroup_mma(is_async=True)``) before the softmax of this one and waited for
  with this tile's P·V, so a warpgroup's score GEMM runs under its own exponentials.
- Eight warps, two warpgroups of 64 rows sharing each K/V tile; 128 registers, so two programs per SM.
- The loop over full tiles is unrolled by two: the scores being consumed and those in flight keep two fixed
  register ranges (a rolled loop copies the next scores into the loop-carried registers every tile).
- Tiles with masked keys (causal diagonal, ragged tail; at most three per block) run first, into their own
  softmax state, which waits in shared memory while the full tiles run from a fresh state; the two merge at the
  end. Inside the unrolled loop, or carried into it, they cost it 30 registers and the second program per SM.
- Fast or exact exponents are chosen once per program, from its largest K scale (attention.py decides per tile).
- K/V tiles come by cp.async into a 4-slot ring, two tiles ahead.

ops.py launches it for D=64 with 16-bit P·V on sm90 (no mask, no varlen); everything else runs ``attention.py``.
"""

from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.ampere import async_copy
from triton.experimental.gluon.language.nvidia.hopper import fence_async_shared, warpgroup_mma, warpgroup_mma_wait

LN2 = gl.constexpr(0.6931471805599453)
# attention.py's FAST_LOGIT_LIMIT: below it one fma per logit keeps p <= 1.003; above it the exact integer path
FAST_LOGIT_LIMIT = gl.constexpr(65536.0)
STAGES = gl.constexpr(4)  # K/V ring slots: tiles i-1 (P·V done), i (P·V), i+1 (Q·Kᵀ), i+2 (landing)


@gluon.jit
def _mul_rn(x, y):
    """x * y rounded once, as no fma can absorb (attention.py's _scaled_logits)."""
    return gl.inline_asm_elementwise("mul.rn.f32 $0, $1, $2;", "=f,f,f", [x, y], dtype=gl.float32, is_pure=True,
                                     pack=1)


@gluon.jit
def _issue_kv(kv, i, tile, n_tiles, len_k, BOUNDED: gl.constexpr):
    """cp.async of key tile `tile` into ring slot i % STAGES (i: processing order; nothing past the last tile).
    BOUNDED zero-fills rows past len_k (only masked tiles have them). Always one commit group: wait_group counts
    tiles."""
    k_bufs, v_bufs, k_ptrs, v_ptrs, k_rows, v_rows, skl, svl = kv
    if i < n_tiles:
        slot = i % STAGES
        BN: gl.constexpr = k_bufs.shape[1]
        off = tile * BN
        if BOUNDED:
            async_copy.async_copy_global_to_shared(k_bufs.index(slot), k_ptrs + off * skl,
                                                   mask=(off + k_rows)[:, None] < len_k)
            async_copy.async_copy_global_to_shared(v_bufs.index(slot), v_ptrs + off * svl,
                                                   mask=(off + v_rows)[:, None] < len_k)
        else:
            async_copy.async_copy_global_to_shared(k_bufs.index(slot), k_ptrs + off * skl)
            async_copy.async_copy_global_to_shared(v_bufs.index(slot), v_ptrs + off * svl)
    async_copy.commit_group()


@gluon.jit
def _ring_turn(i, issue_tile, n_tiles, len_k, kv, BOUNDED: gl.constexpr):
    """Before the i-th tile's softmax: tiles up to i+1 landed in every warp, the (i-2)-th slot is free, the
    (i+2)-th tile (key tile `issue_tile`) issued."""
    async_copy.wait_group(STAGES - 4)  # every committed tile has landed: the last one is i+1
    fence_async_shared()  # cp.async wrote through the generic proxy; wgmma reads through the async one
    gl.thread_barrier()  # all warps' copies landed, and all warps are past the (i-2)-th P·V: its slot is free
    _issue_kv(kv, i + STAGES - 2, issue_tile, n_tiles, len_k, BOUNDED)


@gluon.jit
def _scores(q_smem, k_bufs, slot, s_layout: gl.constexpr):
    """Q·Kᵀ of the tile in `slot`, issued (a token for warpgroup_mma_wait)."""
    BM: gl.constexpr = q_smem.shape[0]
    BN: gl.constexpr = k_bufs.shape[1]
    s_zero = gl.zeros([BM, BN], gl.int32, s_layout)
    return warpgroup_mma(q_smem, k_bufs.index(slot).permute((1, 0)), s_zero, use_acc=False, is_async=True)


@gluon.jit
def _rescale_pv(p, acc, m_i, m_new, l_i, v_smem, o_layout: gl.constexpr, p_layout: gl.constexpr):
    """Row sums, the accumulator's rescale and P·V of one tile, issued (a token for warpgroup_mma_wait)."""
    alpha = gl.exp2(m_i - m_new)
    l_i = l_i * alpha + gl.sum(p, axis=1)
    p16 = gl.convert_layout(p.to(v_smem.dtype), p_layout)  # the accumulator layout is the A fragment: registers only
    acc = acc * gl.convert_layout(alpha, gl.SliceLayout(1, o_layout))[:, None]
    return warpgroup_mma(p16, v_smem, acc, is_async=True), l_i


@gluon.jit
def _full_tile(qk, acc, m_i, l_i, i, n_masked, n_tiles, len_k, q_smem, kv, q_scale, ks_base,
               EXACT: gl.constexpr, s_layout: gl.constexpr, o_layout: gl.constexpr, p_layout: gl.constexpr):
    """The i-th tile processed (key tile i - n_masked, seen in full by every row; its scores: qk), with Q·Kᵀ of
    the next one in flight. Returns those scores."""
    _ring_turn(i, i + STAGES - 2 - n_masked, n_tiles, len_k, kv, False)
    k_bufs, v_bufs = kv[0], kv[1]
    qk_tok = _scores(q_smem, k_bufs, (i + 1) % STAGES, s_layout)  # past the last tile: a stale slot, never used

    scale = q_scale * gl.load(ks_base + i - n_masked)  # one K scale per 64 keys = BLOCK_N
    tile_max = gl.max(qk, axis=1)
    m_tile = _mul_rn(tile_max.to(gl.float32), scale)
    m_new = gl.maximum(m_i, m_tile)
    if EXACT:  # logits can reach 2^16 (fp16 inputs in the thousands): subtract the row max as integers, then scale
        p = gl.exp2((qk - tile_max[:, None]).to(gl.float32) * scale + (m_tile - m_new)[:, None])
    else:  # one fma per logit
        p = gl.exp2(qk.to(gl.float32) * scale - m_new[:, None])
    pv_tok, l_i = _rescale_pv(p, acc, m_i, m_new, l_i, v_bufs.index(i % STAGES), o_layout, p_layout)
    acc, qk_next = warpgroup_mma_wait(0, deps=(pv_tok, qk_tok))
    return qk_next, acc, m_new, l_i


@gluon.jit
def _full_tiles(acc, m_i, l_i, n_masked, n_tiles, len_k, q_smem, kv, q_scale, ks_base,
                EXACT: gl.constexpr, s_layout: gl.constexpr, o_layout: gl.constexpr, p_layout: gl.constexpr):
    """Tiles n_masked .. n_tiles-1 of the processing order (the full ones), unrolled by two."""
    async_copy.wait_group(STAGES - 3)  # the first of them landed
    fence_async_shared()
    gl.thread_barrier()
    qk = warpgroup_mma_wait(0, deps=(_scores(q_smem, kv[0], n_masked % STAGES, s_layout),))
    for i in range(n_masked, n_tiles - 1, 2):
        qk, acc, m_i, l_i = _full_tile(qk, acc, m_i, l_i, i, n_masked, n_tiles, len_k, q_smem, kv, q_scale, ks_base,
                                       EXACT, s_layout, o_layout, p_layout)
        qk, acc, m_i, l_i = _full_tile(qk, acc, m_i, l_i, i + 1, n_masked, n_tiles, len_k, q_smem, kv, q_scale,
                                       ks_base, EXACT, s_layout, o_layout, p_layout)
    if (n_tiles - n_masked) % 2 == 1:
        qk, acc, m_i, l_i = _full_tile(qk, acc, m_i, l_i, n_tiles - 1, n_masked, n_tiles, len_k, q_smem, kv, q_scale,
                                       ks_base, EXACT, s_layout, o_layout, p_layout)
    return acc, m_i, l_i


@gluon.jit
def _masked_tile(acc, m_i, l_i, i, n_full, n_masked, n_tiles, len_k, key_end, q_smem, kv, q_scale, ks_base,
                 s_layout: gl.constexpr, o_layout: gl.constexpr, p_layout: gl.constexpr):
    """The i-th tile processed, key tile n_full + i, with keys past some row's end (key_end: len_k, or causal the
    row's last visible key + 1): attention.py's masked path, Q·Kᵀ waited for at once."""
    nxt = i + STAGES - 2
    _ring_turn(i, gl.where(nxt < n_masked, n_full + nxt, nxt - n_masked), n_tiles, len_k, kv, True)
    k_bufs, v_bufs = kv[0], kv[1]
    qk = warpgroup_mma_wait(0, deps=(_scores(q_smem, k_bufs, i % STAGES, s_layout),))
    block_n: gl.constexpr = k_bufs.shape[1]
    scale = q_scale * gl.load(ks_base + n_full + i)
    cols = gl.arange(0, block_n, layout=gl.SliceLayout(0, s_layout))
    keep = cols[None, :] < (key_end - (n_full + i) * block_n)[:, None]
    s = gl.where(keep, _mul_rn(qk.to(gl.float32), scale), float("-inf"))
    m_new = gl.maximum(m_i, gl.max(s, axis=1))
    m_use = gl.where(m_new == float("-inf"), 0.0, m_new)  # a row with no key yet: p = 0, not exp2(-inf + inf)
    pv_tok, l_i = _rescale_pv(gl.exp2(s - m_use[:, None]), acc, m_i, m_use, l_i, v_bufs.index(i % STAGES),
                              o_layout, p_layout)
    acc = warpgroup_mma_wait(0, deps=(pv_tok,))
    return acc, m_new, l_i


@gluon.jit(do_not_specialize=["len_q", "len_k"])  # len 1 as a constant breaks Triton 3.6's cp.async lowering
def attention_fwd_sm90(
    q8_ptr, qs_ptr, k8_ptr, ks_ptr, v_ptr, o_ptr, lse_ptr, q_ptr, kmean_ptr,
    sq8b, sq8h, sq8l, sk8b, sk8h, sk8l, svb, svh, svl, sob, soh, sol, sod, slb, slh, sqb, sqh, sql, sqd,
    n_q_heads, group, len_q, len_k, n_q_groups, n_k_groups, sm_scale,
    D: gl.constexpr, BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr, CAUSAL: gl.constexpr,
    BOTTOM_RIGHT: gl.constexpr, RETURN_LSE: gl.constexpr, SMOOTH_K: gl.constexpr,
):
    NW: gl.constexpr = gl.num_warps()
    s_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[NW, 1],
                                                       instr_shape=[16, BLOCK_N, 32])
    o_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[NW, 1], instr_shape=[16, D, 16])
    p_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=o_layout, k_width=2)
    row_layout: gl.constexpr = gl.SliceLayout(1, s_layout)
    ld8: gl.constexpr = gl.BlockedLayout([1, 16], [32 * 16 // D, D // 16], [NW, 1], [1, 0])  # 16-byte int8 rows
    ld16: gl.constexpr = gl.BlockedLayout([1, 8], [32 * 8 // D, D // 8], [NW, 1], [1, 0])  # 16-byte fp16 rows
    v_dtype: gl.constexpr = v_ptr.dtype.element_ty  # fp16 or bf16: P·V runs in V's type, as in attention.py

    pid_m = gl.program_id(0)
    bh = gl.program_id(1)
    b = bh // n_q_heads
    h = bh % n_q_heads
    hk = h // group
    m_block = gl.num_programs(0) - 1 - pid_m if CAUSAL else pid_m  # causal: heaviest blocks first
    start_m = m_block * BLOCK_M
    b64 = b.to(gl.int64)
    h64 = h.to(gl.int64)
    hk64 = hk.to(gl.int64)
    bhk = b * (n_q_heads // group) + hk

    shift = len_k - len_q if BOTTOM_RIGHT else 0
    if CAUSAL:
        hi = gl.maximum(gl.minimum(len_k, start_m + BLOCK_M + shift), 0)
        full_hi = gl.maximum(gl.minimum(start_m + shift + 1, len_k), 0) // BLOCK_N * BLOCK_N
    else:
        hi = len_k
        full_hi = len_k // BLOCK_N * BLOCK_N
    n_tiles = gl.cdiv(hi, BLOCK_N)
    n_full = full_hi // BLOCK_N  # tiles every row of the block sees in full
    n_masked = n_tiles - n_full  # processed first: processing index i is key tile n_full + i, then i - n_masked

    # Q codes -> shared memory, the A operand of every Q·Kᵀ
    q_rows = gl.arange(0, BLOCK_M, layout=gl.SliceLayout(1, ld8))
    cols8 = gl.arange(0, D, layout=gl.SliceLayout(0, ld8))
    q_ptrs = q8_ptr + b64 * sq8b + h64 * sq8h + (start_m + q_rows)[:, None].to(gl.int64) * sq8l + cols8[None, :]
    q = gl.load(q_ptrs, mask=(start_m + q_rows)[:, None] < len_q, other=0)
    q_smem = gl.allocate_shared_memory(gl.int8, [BLOCK_M, D],
                                       gl.NVMMASharedLayout.get_default_for([BLOCK_M, D], gl.int8), q)
    q_scale = gl.load(qs_ptr + bh * n_q_groups + start_m // 128)  # one Q scale per 128 rows
    ks_base = ks_ptr + bhk * n_k_groups

    k_rows = gl.arange(0, BLOCK_N, layout=gl.SliceLayout(1, ld8))
    v_rows = gl.arange(0, BLOCK_N, layout=gl.SliceLayout(1, ld16))
    v_cols = gl.arange(0, D, layout=gl.SliceLayout(0, ld16))
    kv = (gl.allocate_shared_memory(gl.int8, [STAGES, BLOCK_N, D],
                                    gl.NVMMASharedLayout.get_default_for([BLOCK_N, D], gl.int8)),
          gl.allocate_shared_memory(v_dtype, [STAGES, BLOCK_N, D],
                                    gl.NVMMASharedLayout.get_default_for([BLOCK_N, D], v_dtype)),
          k8_ptr + b64 * sk8b + hk64 * sk8h + k_rows[:, None].to(gl.int64) * sk8l + cols8[None, :],
          v_ptr + b64 * svb + hk64 * svh + v_rows[:, None].to(gl.int64) * svl + v_cols[None, :],
          k_rows, v_rows, sk8l, svl)
    for t in gl.static_range(STAGES - 2):
        _issue_kv(kv, t, gl.where(t < n_masked, n_full + t, t - n_masked), n_tiles, len_k, True)

    rows = start_m + gl.arange(0, BLOCK_M, layout=row_layout)
    if CAUSAL:
        key_end = gl.minimum(rows + shift + 1, len_k)
    else:
        key_end = gl.full([BLOCK_M], len_k, gl.int32, row_layout)
    m_mask = gl.full([BLOCK_M], float("-inf"), gl.float32, layout=row_layout)
    l_mask = gl.zeros([BLOCK_M], gl.float32, layout=row_layout)
    acc_mask = gl.zeros([BLOCK_M, D], gl.float32, o_layout)
    for i in range(0, n_masked):
        acc_mask, m_mask, l_mask = _masked_tile(acc_mask, m_mask, l_mask, i, n_full, n_masked, n_tiles, len_k, key_end,
                                                q_smem, kv, q_scale, ks_base, s_layout, o_layout, p_layout)
    acc_stash = gl.allocate_shared_memory(gl.float32, [BLOCK_M, D],
                                          gl.NVMMASharedLayout.get_default_for([BLOCK_M, D], gl.float32), acc_mask)

    # the largest K scale of the full tiles decides fast or exact exponents for all of them
    ks_layout: gl.constexpr = gl.BlockedLayout([1], [32], [NW], [0])
    ks_max = 0.0
    for c in range(0, n_full, 32 * NW):
        offs = c + gl.arange(0, 32 * NW, layout=ks_layout)
        ks_max = gl.maximum(ks_max, gl.max(gl.load(ks_base + offs, mask=offs < n_full, other=0.0), axis=0))
    m_i = gl.full([BLOCK_M], float("-inf"), gl.float32, layout=row_layout)
    l_i = gl.zeros([BLOCK_M], gl.float32, layout=row_layout)
    acc = gl.zeros([BLOCK_M, D], gl.float32, o_layout)
    if q_scale * ks_max * (127.0 * 127.0 * D) < FAST_LOGIT_LIMIT:
        acc, m_i, l_i = _full_tiles(acc, m_i, l_i, n_masked, n_tiles, len_k, q_smem, kv, q_scale, ks_base, False,
                                    s_layout, o_layout, p_layout)
    else:
        acc, m_i, l_i = _full_tiles(acc, m_i, l_i, n_masked, n_tiles, len_k, q_smem, kv, q_scale, ks_base, True,
                                    s_layout, o_layout, p_layout)
    async_copy.wait_group(0)

    # merge the masked tiles' state
    m_new = gl.maximum(m_mask, m_i)
    m_use = gl.where(m_new == float("-inf"), 0.0, m_new)
    a_mask = gl.exp2(m_mask - m_use)
    a_full = gl.exp2(m_i - m_use)
    l_i = l_mask * a_mask + l_i * a_full
    m_i = m_new
    acc = (acc_stash.load(o_layout) * gl.convert_layout(a_mask, gl.SliceLayout(1, o_layout))[:, None]
           + acc * gl.convert_layout(a_full, gl.SliceLayout(1, o_layout))[:, None])

    seen = l_i > 0  # rows that saw no key (bottom-right causal, len_q > len_k) write zeros
    l_o = gl.convert_layout(gl.where(seen, l_i, 1.0), gl.SliceLayout(1, o_layout))
    seen_o = gl.convert_layout(seen, gl.SliceLayout(1, o_layout))
    o = gl.where(seen_o[:, None], acc / l_o[:, None], 0.0)
    o_rows = start_m + gl.arange(0, BLOCK_M, layout=gl.SliceLayout(1, o_layout))
    o_cols = gl.arange(0, D, layout=gl.SliceLayout(0, o_layout))
    o_ptrs = o_ptr + b64 * sob + h64 * soh + o_rows[:, None].to(gl.int64) * sol + o_cols[None, :] * sod
    gl.store(o_ptrs, o.to(o_ptr.dtype.element_ty), mask=o_rows[:, None] < len_q)
    if RETURN_LSE:
        lse = gl.where(seen, m_i + gl.log2(gl.where(seen, l_i, 1.0)), float("-inf")) * LN2
        if SMOOTH_K:  # smoothing shifted every logit of the row by q·mean(K)
            q16_rows = gl.arange(0, BLOCK_M, layout=gl.SliceLayout(1, ld16))
            qf = gl.load(q_ptr + b64 * sqb + h64 * sqh + (start_m + q16_rows)[:, None].to(gl.int64) * sql
                         + v_cols[None, :] * sqd, mask=(start_m + q16_rows)[:, None] < len_q, other=0.0)
            k_mean = gl.load(kmean_ptr + bhk * D + v_cols)
            shift_lse = gl.sum(qf.to(gl.float32) * k_mean[None, :], axis=1) * sm_scale
            lse += gl.convert_layout(shift_lse, row_layout)
        gl.store(lse_ptr + b64 * slb + h64 * slh + rows, lse, mask=rows < len_q)
