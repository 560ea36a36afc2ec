"""A test-only env whose batched core raises once (fault tolerance of the batched sampler)."""

from pathlib import Path

from rl_platform.envs.rendezvous import RendezvousConfig, RendezvousCore, RendezvousEnv


class FlakyCoreConfig(RendezvousConfig):
    crash_marker: str
    crash_at_step: int = 60


class FlakyRendezvousCore(RendezvousCore):
    """Raises once, in whichever process first reaches `crash_at_step` batched steps."""

    def __init__(self, config, batch_size):
        super().__init__(config, batch_size)
        self._steps = 0

    def step(self, actions, rng):  # noqa: D102
        self._steps += 1
        marker = Path(self.config.crash_marker)
        if self._steps >= self.config.crash_at_step and not marker.exists():
            marker.write_text("crashed")
            raise RuntimeError("injected core failure")
        return super().step(actions, rng)


class FlakyCoreRendezvousEnv(RendezvousEnv):
    """Rendezvous on :class:`FlakyRendezvousCore`."""

    core_cls = FlakyRendezvousCore
    config_model = FlakyCoreConfig
