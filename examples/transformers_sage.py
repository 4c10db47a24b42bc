"""Generate with attn_implementation="sage" (transformers >= 4.53) and compare with "sdpa".

    python examples/transformers_sage.py --model Qwen/Qwen2.5-0.5B-Instruct
    python examples/transformers_sage.py --tiny       # random tiny Llama from a config, no download
"""

import argparse

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

from sageattention import patch
from sageattention.integrations import transformers as sage_transformers

parser = argparse.ArgumentParser()
parser.add_argument("--model", default="Qwen/Qwen2.5-0.5B-Instruct")
parser.add_argument("--tiny", action="store_true", help="random 2-layer Llama instead of --model")
args = parser.parse_args()

sage_transformers.register()  # adds "sage" to transformers' AttentionInterface
device = "cuda" if torch.cuda.is_available() else "cpu"
if args.tiny:
    config = LlamaConfig(vocab_size=256, hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2)
    model = LlamaForCausalLM(config).to(device, torch.float16).eval()
    ids = torch.randint(0, 256, (1, 64), device=device)
else:
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float16, attn_implementation="sage").to(device)
    ids = tokenizer("The three primary colours are", return_tensors="pt").input_ids.to(device)

with torch.no_grad():
    model.set_attn_implementation("sage")
    sage_logits = model(ids).logits
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=20, do_sample=False)
    model.set_attn_implementation("sdpa")
    sdpa_logits = model(ids).logits

cos = torch.nn.functional.cosine_similarity(sage_logits.flatten().float(), sdpa_logits.flatten().float(), dim=0)
print(f"cosine(sage, sdpa) logits = {cos.item():.5f}; attention calls: {patch.stats()}")
if not args.tiny:
    print(tokenizer.decode(out[0], skip_special_tokens=True))
