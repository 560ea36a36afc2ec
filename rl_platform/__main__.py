"""``python -m rl_platform`` is ``rlp``."""

from rl_platform.cli import main

main()
