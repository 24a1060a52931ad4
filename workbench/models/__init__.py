"""Reward models: registration, training (`rm train`), evaluation (`rm eval`, RewardBench rows), comparison, and TRL reward functions."""
