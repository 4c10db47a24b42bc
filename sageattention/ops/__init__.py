"""torch.library custom ops over the compiled kernels, each with a fake impl so torch.compile(fullgraph=True)
traces whole calls, quantization included. ``sm80`` / ``sm89`` / ``sm90`` are dispatch.py backends."""
