"""Advanced training techniques an experiment switches on in YAML.

* :mod:`~rl_platform.advanced.hierarchical`: a meta-controller picking strategies (``hierarchy:``);
* :mod:`~rl_platform.advanced.curiosity`: an Intrinsic Curiosity Module (``curiosity:``);
* :mod:`~rl_platform.advanced.meta`: meta-learning over tasks (``meta:``).
"""
