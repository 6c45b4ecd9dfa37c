"""One module per algorithm (``pg``, ``ppo``, ``tabular``, ``dqn``, ``sac``, ``td3``, ...), each with
its typed config, its ``update`` and an ``AlgoSpec``; ``registry`` maps ``--algo`` to them and
``returns`` holds the return math (``reward_to_go``, ``gae``, ``td_target``) as pure functions.

A learner does no I/O: it takes a batch and returns a ``core.types.UpdateResult``.
May import: core, agents, torch, numpy, gymnasium. Never ray, redis, replay, runner, cluster or
dashboard (tests/unit/test_layering.py).
"""
