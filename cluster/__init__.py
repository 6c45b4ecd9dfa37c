"""Ray orchestration and nothing else: starting or joining Ray, the Ray worker group (actors in a
placement group, restarts, parking), and Ray's Prometheus metrics.

The only package that imports ray. May import: runner, learners, agents, replay, core.
Never dashboard (tests/unit/test_layering.py).
"""
