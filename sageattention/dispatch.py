"""Which kernel serves a call: the backend list, the table keyed by compute capability, and one selector.

A backend is a module with two functions, imported lazily so a missing or broken build never breaks
``import sageattention``:

* ``available(device: torch.device) -> str | None``: ``None`` when it can run there, else the reason why not;
* ``forward(q, k, v, cfg) -> (o, lse | None)``: q/k/v are HND views ``[B, H, L, D]`` (any strides) whose head
  dim is one of the backend's ``head_dims`` (api.py zero-pads), ``cfg`` an AttentionConfig; ``o`` is
  ``[B, Hq, Lq, D]`` (a view of any layout), ``lse`` ``[B, Hq, Lq]`` fp32.

CPU tensors always go to the reference (``sageattention/reference.py``).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Optional

import torch


@dataclass(frozen=True)
class Backend:
    name: str
    module: str
    pv: str  # "fp16" | "fp8"
    qk_quant_gran: str  # what sageattn asks of it
    pv_accum_dtype: str  # what sageattn asks of it
    head_dims: tuple  # native head dims, ascending; smaller ones are zero-padded up to the next
    description: str


BACKENDS = {
    b.name: b
    for b in (
        Backend("sm90", "sageattention.ops.sm90", "fp8", "per_thread", "fp32+fp32", (64, 128),
                "CUDA sm90a: TMA + wgmma INT8 QK, FP8 PV"),
        Backend("sm89", "sageattention.ops.sm89", "fp8", "per_thread", "fp32+fp16", (64, 128),
                "CUDA sm89: mma INT8 QK, FP8 PV"),
        Backend("sm80", "sageattention.ops.sm80", "fp16", "per_thread", "fp32", (64, 128),
                "CUDA sm80: mma INT8 QK, FP16 PV"),
        Backend("triton", "sageattention.triton.backend", "fp16", "per_block", "fp32", (64, 128, 256),
                "Triton: INT8 QK, FP16 PV"),
        Backend("reference", "sageattention.reference", "fp16", "per_block", "fp32", (),
                "PyTorch reference (CPU, or no GPU kernel)"),
    )
}

# Compute capability -> backends sageattn tries, best first. Anything unknown gets DEFAULT_CHAIN.
DISPATCH_TABLE = {
    (8, 0): ("sm80", "triton"),
    (8, 6): ("sm80", "triton"),
    (8, 7): ("sm80", "triton"),
    (8, 9): ("sm89", "triton"),
    # sm89's mma.sync FP8 kernel runs at 356 TOPS on the H100 (its e4m3 mma.sync is emulated there) where Triton
    # reaches ~550 and sm90 ~820 (D=128, 16K; NOTES.md).
    (9, 0): ("sm90", "triton"),
    (12, 0): ("sm89", "triton"),
    (12, 1): ("sm89", "triton"),
}
DEFAULT_CHAIN = ("triton",)

# Where SDPA's fastest kernel beats every sageattention kernel the chain would pick, sageattn (backend="auto")
# calls SDPA instead: capability -> {(head_dim bucket, causal): shortest Lk at which the kernel wins, or None
# when SDPA won at every measured length}. Only measured cards are listed; others always run the kernel.
# 9.0 (H100 / H200, torch 2.11 + cu130, B=2 H=32 fp16, quantization included; benchmarks/NOTES.md "sm90"): the sm90
# kernel beats cuDNN from the lengths below (session 5 sweep, H100, results/h100_session5_sweep_d*.json: causal
# 8K D=128 573 TOPS against cuDNN's 533, D=64 430 against 417 (439/420 in a second call); at 4K cuDNN still wins:
# D=128 586 against 564, causal 504 against 400, D=64 443 against 433). Session 7 (quantization v2,
# results/h100_session7_sweep_d*.json) kept it: 4K non-causal became a tie (D=128 582 against 585, D=64 455
# against 441), causal 4K still loses (421 against 494, 316 against 392), causal 8K still wins (579 / 527, 440 / 427).
SDPA_CROSSOVER = {
    (9, 0): {(64, False): 8192, (64, True): 8192, (128, False): 8192, (128, True): 8192},
}


def sdpa_wins(capability: Optional[tuple], head_dim: int, len_k: int, causal: bool) -> bool:
    """True where the measured table says SDPA's fastest kernel beats the sageattention kernel."""
    table = SDPA_CROSSOVER.get(tuple(capability)) if capability else None
    if not table:
        return False
    bucket = 64 if head_dim <= 64 else 128 if head_dim <= 128 else None
    if (bucket, causal) not in table:
        return False
    min_len = table[(bucket, causal)]
    return min_len is None or len_k < min_len


def chain_for(capability: Optional[tuple]) -> tuple:
    if capability is None:
        return ("reference",)
    return DISPATCH_TABLE.get(tuple(capability), DEFAULT_CHAIN) + ("reference",)


def _compile_constant(fn):
    """torch.compiler.assume_constant_result without its import of Dynamo, which costs ~3 s at import time;
    the marker attribute is all that function sets."""
    fn._dynamo_marked_constant = True
    return fn


_modules: dict = {}
_reasons: dict = {}


def load(name: str):
    # Cached: Dynamo cannot trace importlib, and _cached_reason has imported the module before tracing gets here.
    if name not in _modules:
        _modules[name] = importlib.import_module(BACKENDS[name].module)
    return _modules[name]


@_compile_constant
def _cached_reason(name: str, device_type: str, index: int) -> str:
    """unavailable_reason, cached per device; "" = available. A constant to Dynamo, which runs it once while tracing."""
    key = (name, device_type, index)
    if key not in _reasons:
        try:
            reason = load(name).available(torch.device(device_type, index))
        except ImportError as exc:
            reason = f"{name} is not available: {exc}"
        _reasons[key] = reason or ""
    return _reasons[key]


def unavailable_reason(name: str, device: torch.device) -> Optional[str]:
    """None when backend `name` can run on `device`, else a one-line reason."""
    if name == "reference":
        return None
    if device.type != "cuda":
        return f"{name} needs a CUDA tensor (got {device.type})"
    index = device.index if device.index is not None else torch.cuda.current_device()
    return _cached_reason(name, device.type, index) or None


def padded_head_dim(backend: Backend, head_dim: int) -> Optional[int]:
    """Head dim the backend runs for `head_dim`, or None if it cannot serve it."""
    if not backend.head_dims:
        return head_dim
    return next((d for d in backend.head_dims if d >= head_dim), None)


@_compile_constant
def _capability(index: int) -> tuple:
    return tuple(torch.cuda.get_device_capability(index))


def capability_of(device: torch.device) -> Optional[tuple]:
    if device.type != "cuda":
        return None
    return _capability(device.index if device.index is not None else torch.cuda.current_device())


def select(device: torch.device, head_dim: int) -> tuple[Backend, dict]:
    """The backend sageattn uses for tensors on `device` with `head_dim`, and why each better one was passed over."""
    capability = capability_of(device)
    skipped = {}
    for name in chain_for(capability):
        backend = BACKENDS[name]
        if padded_head_dim(backend, head_dim) is None:
            skipped[name] = f"head dim {head_dim} > {backend.head_dims[-1]}"
            continue
        reason = unavailable_reason(name, device)
        if reason is None:
            return backend, skipped
        skipped[name] = reason
    return BACKENDS["reference"], skipped


def reset_cache() -> None:
    """Forget cached availability (after changing an environment switch such as SAGEATTN_SM90_PINGPONG, or in tests)."""
    _reasons.clear()
