"""Reward-model engine: everything that touches torch and transformers.

Nothing here imports `workbench` or `ui`; the store hands the engine plain Python data
(`engine.data`) and receives plain results back.
"""
