"""The Ray-free run layer: everything a training run needs except a cluster.

``config`` resolves defaults, presets, ``--config`` and ``--set`` into typed configs;
``envs`` makes and seeds Gymnasium envs; ``worker`` holds the plain ``RolloutWorker``;
``rundir`` writes config.yaml, metrics.jsonl, status.json, TensorBoard events and checkpoints;
``progress`` turns counters into metrics rows and the console display; ``session`` opens a run
and ``train()`` drives it; ``on_policy`` and ``off_policy`` are the two drivers, which talk to a
worker group through its interface only, so one loop runs in-process or on Ray.

May import: core, agents, learners, replay, and libraries other than ray. Never cluster or
dashboard (tests/unit/test_layering.py).
"""
