"""Run a diffusers pipeline with sageattention: its "sage" backend name, or patch_sdpa around the call.

    python examples/diffusers_sage.py --model black-forest-labs/FLUX.1-schnell
    python examples/diffusers_sage.py --tiny       # random tiny Flux transformer from a config, no download
"""

import argparse

import torch
from diffusers import DiffusionPipeline, FluxTransformer2DModel

import sageattention
from sageattention import patch
from sageattention.integrations import diffusers as sage_diffusers

parser = argparse.ArgumentParser()
parser.add_argument("--model", default="black-forest-labs/FLUX.1-schnell")
parser.add_argument("--tiny", action="store_true", help="one random Flux transformer instead of a pipeline")
args = parser.parse_args()
device = "cuda" if torch.cuda.is_available() else "cpu"

if args.tiny:
    model = FluxTransformer2DModel(patch_size=1, in_channels=4, num_layers=1, num_single_layers=1,
                                   attention_head_dim=64, num_attention_heads=2, joint_attention_dim=32,
                                   pooled_projection_dim=32, axes_dims_rope=(16, 24, 24)).to(device, torch.bfloat16)
    inputs = dict(hidden_states=torch.randn(1, 256, 4), encoder_hidden_states=torch.randn(1, 16, 32),
                  pooled_projections=torch.randn(1, 32))
    inputs = {k: v.to(device, torch.bfloat16) for k, v in inputs.items()}
    inputs.update(timestep=torch.tensor([0.5], device=device), img_ids=torch.zeros(256, 3, device=device),
                  txt_ids=torch.zeros(16, 3, device=device))
    with torch.no_grad():
        sage_diffusers.enable(model)  # model.set_attention_backend("sage") with fallback for masked calls
        sage = model(**inputs).sample
        model.set_attention_backend("native")
        native = model(**inputs).sample
    cos = torch.nn.functional.cosine_similarity(sage.flatten().float(), native.flatten().float(), dim=0).item()
    print(f"cosine(sage, native) = {cos:.5f}; attention calls: {patch.stats()}")
else:
    pipe = DiffusionPipeline.from_pretrained(args.model, torch_dtype=torch.bfloat16).to(device)
    with sageattention.patch_sdpa():  # routes every served SDPA call, text encoders' masked ones stay exact
        image = pipe("a lighthouse at dusk, oil painting", num_inference_steps=4).images[0]
    image.save("sage.png")
    print(f"saved sage.png; attention calls: {patch.stats()}")
