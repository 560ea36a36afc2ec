"""A test-only env that raises a fixed number of times in all, to prove trial retries."""

from pathlib import Path

from rl_platform.envs.matrix_games import TwoStepGameConfig, TwoStepGameEnv


class CrashingConfig(TwoStepGameConfig):
    crash_dir: str
    crashes: int = 1
    crash_at_step: int = 20


class CrashingTwoStepEnv(TwoStepGameEnv):
    """Raises at `crash_at_step` while `crash_dir` holds fewer than `crashes` markers.

    Every crash leaves a marker, so with trials run one at a time the first trials crash
    (and are retried) until `crashes` crashes happened, and the later ones never crash.
    """

    config_model = CrashingConfig

    def __init__(self, config=None):
        super().__init__(config)
        self._steps = 0

    def step(self, action_dict):
        self._steps += 1
        if self._steps == self.env_config.crash_at_step:
            folder = Path(self.env_config.crash_dir)
            done = len(list(folder.glob("crash-*")))
            if done < self.env_config.crashes:
                (folder / f"crash-{done}").write_text("crashed")
                raise RuntimeError(f"injected env failure {done + 1}")
        return super().step(action_dict)
