"""Route torch.nn.functional.scaled_dot_product_attention through sageattn and see which calls were routed.

    python examples/patch_sdpa.py            # needs a CUDA GPU for routing; on CPU every call falls back
"""

import logging

import torch
import torch.nn.functional as F

import sageattention
from sageattention import patch

logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")  # one line per routing reason
device = "cuda" if torch.cuda.is_available() else "cpu"
q, k, v = (torch.randn(2, 8, 1024, 128, device=device, dtype=torch.float16) for _ in range(3))
mask = torch.ones(1024, 1024, dtype=torch.bool, device=device).tril()

with sageattention.patch_sdpa():
    routed = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # served: goes to sageattn
    kept = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # a mask: PyTorch's SDPA, unchanged

exact = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # unpatched again here
cos = F.cosine_similarity(routed.flatten().float(), exact.flatten().float(), dim=0).item()
print(f"calls: {patch.stats()}  cosine(sageattn, SDPA) = {cos:.5f}")

sageattention.patch_sdpa(enable=True)  # or process-wide, until unpatch_sdpa()
sageattention.unpatch_sdpa()
