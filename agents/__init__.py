"""Torch networks and the policies that workers act with: MLPs, categorical and diagonal-Gaussian
actor-critics, Q networks (plain and dueling), tanh-Gaussian actors, epsilon-greedy and noise.

May import: core, torch, numpy, gymnasium. Never learners, replay, runner, cluster or dashboard
(tests/unit/test_layering.py).
"""
