"""A test-only env that raises once, to prove env-runner fault tolerance."""

from pathlib import Path

from rl_platform.envs.rendezvous import RendezvousConfig, RendezvousEnv


class FlakyConfig(RendezvousConfig):
    crash_marker: str
    crash_at_step: int = 150


class FlakyRendezvousEnv(RendezvousEnv):
    """Raises once, in whichever worker first reaches `crash_at_step`, then never again."""

    config_model = FlakyConfig

    def __init__(self, config=None):
        super().__init__(config)
        self._steps = 0

    def step(self, action_dict):
        self._steps += 1
        marker = Path(self.env_config.crash_marker)
        if self._steps >= self.env_config.crash_at_step and not marker.exists():
            marker.write_text("crashed")
            raise RuntimeError("injected env failure")
        return super().step(action_dict)
