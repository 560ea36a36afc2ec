"""Tabular Q-learning for small discrete tasks, in numpy, without Ray.

The seed document's independent learner (Watkins and Dayan 1992, "Q-learning"): a table
of action values per discrete state, updated by ``Q(s, a) += lr (r + gamma max_a' Q(s',
a') - Q(s, a))`` and acting epsilon-greedily (defaults: learning rate 0.1, gamma 0.99,
epsilon 0.1, as in the seed). The seed ran it on a discretized 50-dimensional continuous
state, which no table can cover; here it is what it is good for: small discrete tasks,
tests and teaching. Deep value-based learners are ``iql``, ``vdn`` and ``qmix``.
"""

from __future__ import annotations

import numpy as np


class TabularQLearning:
    """Epsilon-greedy Q-learning over ``num_states`` x ``num_actions`` (integers).

    Ties between equal action values are broken at random (with the learner's own
    generator), so an untrained table explores evenly.
    """

    def __init__(
        self,
        num_states: int,
        num_actions: int,
        learning_rate: float = 0.1,
        gamma: float = 0.99,
        epsilon: float = 0.1,
        seed: int | None = None,
    ) -> None:
        if num_states < 1 or num_actions < 1:
            raise ValueError("num_states and num_actions must be positive")
        if not 0 < learning_rate <= 1 or not 0 <= gamma <= 1 or not 0 <= epsilon <= 1:
            raise ValueError("need 0 < learning_rate <= 1, 0 <= gamma <= 1, 0 <= epsilon <= 1")
        self.q = np.zeros((num_states, num_actions), dtype=np.float64)
        self.learning_rate = learning_rate
        self.gamma = gamma
        self.epsilon = epsilon
        self.rng = np.random.default_rng(seed)

    def greedy_action(self, state: int) -> int:
        """The highest-valued action in `state` (random among ties)."""
        values = self.q[state]
        best = np.flatnonzero(values == values.max())
        return int(best[0] if len(best) == 1 else self.rng.choice(best))

    def act(self, state: int, explore: bool = True) -> int:
        """An epsilon-greedy action (greedy when ``explore`` is false)."""
        if explore and self.rng.random() < self.epsilon:
            return int(self.rng.integers(self.q.shape[1]))
        return self.greedy_action(state)

    def update(
        self, state: int, action: int, reward: float, next_state: int, terminated: bool
    ) -> float:
        """One Q-learning update; returns the TD error before it.

        ``terminated`` cuts bootstrapping (a time-limit truncation should pass False).
        """
        bootstrap = 0.0 if terminated else self.gamma * float(self.q[next_state].max())
        td_error = reward + bootstrap - self.q[state, action]
        self.q[state, action] += self.learning_rate * td_error
        return float(td_error)
