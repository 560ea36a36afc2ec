"""Algorithms: each module defines `Hyperparams` and `build(experiment, env_cls)`."""
