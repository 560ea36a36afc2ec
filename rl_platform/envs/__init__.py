"""Multi-agent environments: batched numpy cores with RLlib and PettingZoo views."""
