"""Adapters that plug sageattn into model libraries; each imports its library only when used.

* ``sageattention.integrations.transformers``: ``register()`` adds ``attn_implementation="sage"``.
* ``sageattention.integrations.diffusers``: ``register()`` serves diffusers' ``"sage"`` attention backend.
"""
