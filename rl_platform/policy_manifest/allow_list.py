"""The allow-lists and limits a policy manifest is judged by, and the error of a refusal.

A manifest may name only the module and catalog classes listed here, the activations and
initializers RLlib resolves on ``torch.nn``, and these dtypes; nothing else is imported.
"""

from __future__ import annotations

FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)
# The RLModule and Catalog classes this platform exports: a manifest may name no other.
MODULE_CLASSES = (
    "ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module.DefaultPPOTorchRLModule",
    "rl_platform.algorithms.mappo.ActorCriticModule",
    "rl_platform.algorithms.recurrent_ac.RecurrentActorCriticModule",
    "rl_platform.algorithms.qmix.AgentQModule",
    "rl_platform.algorithms.qmix.MixerModule",
    "rl_platform.algorithms.maddpg.MADDPGActorModule",
    "rl_platform.algorithms.maddpg.MADDPGCriticModule",
)
CATALOG_CLASSES = ("ray.rllib.algorithms.ppo.ppo_catalog.PPOCatalog",)
# Names a model_config may give for activations and weight initializers (RLlib resolves
# them on torch.nn and torch.nn.init).
ACTIVATIONS = frozenset(
    ["linear", "relu", "tanh", "elu", "silu", "swish", "sigmoid", "gelu", "softmax"]
    + ["ReLU", "Tanh", "ELU", "SiLU", "Sigmoid", "GELU", "LeakyReLU", "SELU", "Softplus"]
)
INITIALIZERS = frozenset(
    f"{name}_"
    for name in [
        "uniform", "normal", "trunc_normal", "constant", "ones", "zeros", "eye", "dirac",
        "xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal", "orthogonal",
        "sparse",
    ]
)  # fmt: skip
FLOAT_DTYPES = ("float16", "float32", "float64")
INT_DTYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
MAX_SPACE_SIZE = 1 << 20  # numbers in one space's bounds (a Box's low, a MultiDiscrete's nvec)
MAX_DEPTH = 32  # nesting of the manifest's JSON (Dict/Tuple spaces, configs)
MAX_COMPRESSED_NPY = 8 << 20  # a format-1 bound's decompressed .npy bytes, at most
INF, NEG_INF = "inf", "-inf"
# Module ids name weight files (<id>.pt): no path separators, no leading dot.
MODULE_ID_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$"


class PolicyExportError(ValueError):
    """A policy export that is missing, corrupt, untrusted or incompatible."""
