"""Every rejected input and the one-line error it gets. docs/validation.md lists the same table."""

from __future__ import annotations

import pytest
import torch

import sageattention as sa


def qkv(b=1, hq=2, hkv=2, lq=8, lk=8, d=64, dtype=torch.float16):
    return (torch.randn(b, hq, lq, d).to(dtype), torch.randn(b, hkv, lk, d).to(dtype), torch.randn(b, hkv, lk, d).to(dtype))


def cu(*values, dtype=torch.int32):
    return torch.tensor(values, dtype=dtype)


def _varlen_args(**over):
    args = dict(q=torch.randn(10, 2, 64).half(), k=torch.randn(12, 2, 64).half(), v=torch.randn(12, 2, 64).half(),
                cu_seqlens_q=cu(0, 4, 10), cu_seqlens_k=cu(0, 5, 12), max_seqlen_q=6, max_seqlen_k=7)
    args.update(over)
    return args


q, k, v = qkv()

# (id, call, exception type, words the message must contain)
CASES = [
    ("not a tensor", lambda: sa.sageattn(q.tolist(), k, v), TypeError, ["q must be a torch.Tensor"]),
    ("integer dtype", lambda: sa.sageattn(q.to(torch.int8), k, v), TypeError, ["torch.int8", "float16", "bfloat16"]),
    ("fp32 inputs", lambda: sa.sageattn(*qkv(dtype=torch.float32)), TypeError, ["not served", ".half()"]),
    ("mismatched dtypes", lambda: sa.sageattn(q, k.bfloat16(), v), TypeError, ["one dtype"]),
    ("different devices", lambda: sa.sageattn(q, k.to("meta"), v), ValueError, ["one device"]),
    ("wrong rank", lambda: sa.sageattn(q[0], k, v), ValueError, ["4-D", "[B, H, L, D]"]),
    ("unknown layout", lambda: sa.sageattn(q, k, v, tensor_layout="BHLD"), ValueError, ["'HND'", "'NHD'"]),
    ("layout/shape mismatch", lambda: sa.sageattn(*qkv(hq=2, hkv=2, lq=8, lk=16), tensor_layout="NHD"), ValueError, ["tensor_layout='NHD'"]),
    ("k/v shapes differ", lambda: sa.sageattn(q, k, v[:, :, :4]), ValueError, ["k and v shapes differ"]),
    ("batch differs", lambda: sa.sageattn(q, *qkv(b=2)[1:]), ValueError, ["batch sizes differ"]),
    ("head dims differ", lambda: sa.sageattn(q, k[..., :32], v[..., :32]), ValueError, ["head dim 64", "32"]),
    ("Hq % Hkv != 0", lambda: sa.sageattn(*qkv(hq=6, hkv=4)), ValueError, ["multiple of k/v heads"]),
    ("head dim > 256", lambda: sa.sageattn(*qkv(d=320)), ValueError, ["320", "1 to 256"]),
    ("head dim 0", lambda: sa.sageattn(*qkv(d=0)), ValueError, ["head dim 0"]),
    ("bottom-right causal Lq > Lk", lambda: sa.sageattn(*qkv(lq=9, lk=4), is_causal=True, causal_alignment="bottom_right"),
     ValueError, ["no key", "top_left"]),
    ("unknown causal_alignment", lambda: sa.sageattn(q, k, v, is_causal=True, causal_alignment="diagonal"), ValueError, ["'top_left'", "'bottom_right'"]),
    ("is_causal not bool", lambda: sa.sageattn(q, k, v, is_causal="yes"), TypeError, ["True or False"]),
    ("sm_scale <= 0", lambda: sa.sageattn(q, k, v, sm_scale=-1.0), ValueError, ["positive finite"]),
    ("sm_scale not a number", lambda: sa.sageattn(q, k, v, sm_scale="x"), TypeError, ["sm_scale must be a number"]),
    ("unknown keyword", lambda: sa.sageattn(q, k, v, dropout_p=0.1), TypeError, ["dropout_p"]),
    ("attn_mask to sageattn", lambda: sa.sageattn(q, k, v, attn_mask=torch.ones(8, 8, dtype=torch.bool)), TypeError, ["attn_mask", "sageattn_qk_int8_pv_fp16_triton"]),
    ("unknown qk_quant_gran", lambda: sa.sageattn_qk_int8_pv_fp16_cuda(q, k, v, qk_quant_gran="per_row"), ValueError, ["per_row", "'per_warp'", "'per_thread'"]),
    ("unknown pv_accum_dtype", lambda: sa.sageattn_qk_int8_pv_fp8_cuda(q, k, v, pv_accum_dtype="fp64"), ValueError, ["fp64", "'fp32+fp16'"]),
    ("fp16 accum on fp8 kernel", lambda: sa.sageattn_qk_int8_pv_fp8_cuda_sm90(q, k, v, pv_accum_dtype="fp16"), ValueError, ["'fp32+fp32'"]),
    ("fp16 inner accum on sm90", lambda: sa.sageattn_qk_int8_pv_fp8_cuda_sm90(q, k, v, pv_accum_dtype="fp32+fp16"), ValueError, ["'fp32+fp32', 'fp32'"]),
    ("unknown quantization_backend", lambda: sa.sageattn_qk_int8_pv_fp16_triton(q, k, v, quantization_backend="numpy"), ValueError, ["'triton'", "'cuda'"]),
    ("unknown backend", lambda: sa.sageattn(q, k, v, backend="cutlass"), ValueError, ["cutlass", "'auto'"]),
    ("mask of wrong shape", lambda: sa.sageattn_qk_int8_pv_fp16_triton(q, k, v, attn_mask=torch.ones(3, 8, dtype=torch.bool)), ValueError, ["broadcast", "[1, 2, 8, 8]"]),
    ("mask of int dtype", lambda: sa.sageattn_qk_int8_pv_fp16_triton(q, k, v, attn_mask=torch.ones(8, 8, dtype=torch.int32)), TypeError, ["bool", "floating"]),
    ("varlen cu_seqlens int64", lambda: sa.sageattn_varlen(**_varlen_args(cu_seqlens_q=cu(0, 4, 10, dtype=torch.int64))), TypeError, ["torch.int32", ".int()"]),
    ("varlen cu_seqlens not starting at 0", lambda: sa.sageattn_varlen(**_varlen_args(cu_seqlens_q=cu(1, 4, 10))), ValueError, ["start at 0"]),
    ("varlen cu_seqlens decreasing", lambda: sa.sageattn_varlen(**_varlen_args(cu_seqlens_q=cu(0, 6, 4, 10), cu_seqlens_k=cu(0, 3, 5, 12))), ValueError, ["non-decreasing"]),
    ("varlen cu_seqlens total mismatch", lambda: sa.sageattn_varlen(**_varlen_args(cu_seqlens_k=cu(0, 5, 11))), ValueError, ["11", "12 tokens"]),
    ("varlen batch mismatch", lambda: sa.sageattn_varlen(**_varlen_args(cu_seqlens_k=cu(0, 2, 5, 12))), ValueError, ["sequences"]),
    ("varlen max_seqlen too small", lambda: sa.sageattn_varlen(**_varlen_args(max_seqlen_q=3)), ValueError, ["below the longest"]),
    ("varlen wrong rank", lambda: sa.sageattn_varlen(**_varlen_args(q=torch.randn(1, 10, 2, 64).half())), ValueError, ["3-D"]),
    ("varlen unknown keyword", lambda: sa.sageattn_varlen(**_varlen_args(), tensor_layout="NHD"), TypeError, ["tensor_layout"]),
]


@pytest.mark.parametrize("call,exc,words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_gets_one_line_error(call, exc, words):
    with pytest.raises(exc) as info:
        call()
    message = str(info.value)
    assert "\n" not in message, message
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"


def test_docs_list_every_case():
    """docs/validation.md is the user-facing copy of CASES: keep them in step."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "validation.md").read_text()
    missing = [case[0] for case in CASES if f"| {case[0]} |" not in text]
    assert not missing, f"docs/validation.md lacks rows for {missing}"


def test_named_kernel_without_gpu_support_names_the_reason(monkeypatch):
    """A function that names one kernel raises KernelUnavailableError with the reason on a GPU that lacks it,
    instead of silently computing something else (the check itself needs no GPU)."""
    from sageattention import api

    monkeypatch.setattr(api, "unavailable_reason", lambda name, device: f"{name} is not built for sm_75")
    cuda = torch.device("cuda", 0)
    with pytest.raises(sa.KernelUnavailableError, match="sm89 is not built for sm_75; sageattn"):
        api._kernel_head_dim(api.BACKENDS["sm89"], cuda, 64)
    with pytest.raises(sa.KernelUnavailableError, match="up to 128, got 192"):
        api._kernel_head_dim(api.BACKENDS["sm80"], cuda, 192)
    monkeypatch.setattr(api, "unavailable_reason", lambda name, device: None)
    assert api._kernel_head_dim(api.BACKENDS["sm80"], cuda, 40) == 64
    assert api._kernel_head_dim(api.BACKENDS["triton"], cuda, 192) == 256
