"""Supply chain dynamics: conservation, outages, the discount lever, the tuned base stock."""

import numpy as np

from rl_platform.envs.supply_chain import (
    BASE_STOCK_FACTOR,
    SupplyChainConfig,
    SupplyChainCore,
    tune_base_stock,
)


def test_goods_are_conserved_between_echelons():
    core = SupplyChainCore(SupplyChainConfig(num_agents=3, task="hard"), batch_size=8)
    rng = np.random.default_rng(0)
    core.reset(rng)
    actions = rng.uniform(-1, 1, size=(50, 8, 3, 3)).astype(np.float32)
    supply = SupplyChainConfig().supplier_capacity  # per step, in units of mean demand
    for step in range(50):
        before = core._stock.sum(1) + core._pipeline.sum((1, 2))
        result = core.step(actions[step], rng)
        assert (core._stock >= 0).all() and (core._backlog >= 0).all()
        after = core._stock.sum(1) + core._pipeline.sum((1, 2))
        # goods enter only from the factory's supplier and leave only as retailer sales
        assert (after <= before + supply + 1e-3).all()
        assert np.isfinite(result.rewards).all()


def test_outage_stops_factory_supply():
    core = SupplyChainCore(SupplyChainConfig(), batch_size=2)
    rng = np.random.default_rng(1)
    core.reset(rng)
    core._outage[0] = 3
    core._pipeline[:] = 0.0
    order_max = np.zeros((2, 4, 3), dtype=np.float32)
    order_max[..., 0] = 1.0  # the largest order everywhere
    core.step(order_max, rng)
    factory = core._pipeline[..., -1].sum(-1)
    assert factory[0] == 0.0 and factory[1] > 0.0


def test_discount_raises_customer_demand():
    def mean_demand(discount):
        core = SupplyChainCore(SupplyChainConfig(), batch_size=256)
        rng = np.random.default_rng(2)
        core.reset(rng)
        actions = np.full((256, 4, 3), -1.0, dtype=np.float32)
        actions[:, 0, 2] = discount
        core.step(actions, rng)
        return core._demand_seen[:, 0].mean()

    assert mean_demand(1.0) > 1.3 * mean_demand(-1.0)


def test_default_base_stock_factor_is_near_the_tuned_best():
    scores = tune_base_stock(SupplyChainConfig(task="medium"), factors=(1.0, BASE_STOCK_FACTOR))
    assert scores[BASE_STOCK_FACTOR] > scores[1.0]
