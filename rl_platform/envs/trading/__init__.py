"""Trading: N agents trade one synthetic asset in a shared market with price impact.

Each agent starts with a balance of 100,000; every money figure is in units of it (cash
1.0 at the start). A position runs from -1 (full short) to +1 (full long) units, one unit
being worth one initial balance at the starting price of 1.0.

Market. Every step the log price moves by a latent drift (an AR(1) regime: persistence
0.97, stationary std 0.002 per step), Gaussian noise of the level's volatility
(annualized, divided by sqrt(252)), a pull of 1% of the gap back to the fundamental (log
price 0) and the impact of the step's order flow. Everyone trades at
``price * (1 + 0.0005 * flow)``, ``flow`` being the agents' net order (in units) plus the
background crowd's, and that impact stays in the price. The crowd is simulated, not
agents: noise traders (random orders, std 0.5 units each) and momentum traders (up to 1
unit each, following the MACD), half each. Every trade pays a fee of 0.05% of its
notional. The drift persists, so trends carry information, and a noisy sentiment signal
leaks the next step's drift (correlation 0.7). Episodes last ``episode_length`` steps
(default 200) and are truncated, never terminated; the log price is clipped to [-3, 3]
(no bankruptcy: cash may go negative, observations are clipped).

=========  ==========  ====================  =================
level      volatility  per-step volatility   crowd (noise+mom)
=========  ==========  ====================  =================
easy       0.1         0.63%                 2 (1+1)
medium     0.3         1.9%                  5 (3+2)
hard       0.5         3.1%                  10 (5+5)
expert     0.8         5.0%                  20 (10+10)
=========  ==========  ====================  =================

The drift does not grow with the volatility, so higher levels have less signal per unit
of noise, larger drawdowns and more stops hit.

Observation (``obs_dim``, default 50, float32, clipped to [-10, 10]). With W =
``window`` (default 20), the first ``W + 18`` entries are features and zeros pad the
rest (``obs_dim`` must leave room for them):

* ``0 .. W-1``: the last W log returns x 30, oldest first;
* ``W + 0 .. 10`` (``MARKET_FEATURES``): MACD and its signal line (EMA 12 - EMA 26 and
  EMA 9 of it, of the log price, over the last 64 steps, x 10), trend (mean return of the
  window x 30), gap (log price minus the window's mean, x 10), RSI (gains minus losses
  over gains plus losses in the window, in [-1, 1]), Bollinger position (gap over two
  standard deviations of the window's log prices), volume (mean absolute order per
  participant), sentiment (next step's drift in units of its std, plus N(0, 1) noise),
  volatility (root mean square return of the window x 30), log price, time remaining
  (1 -> 0);
* ``W + 11 .. 17`` (``AGENT_FEATURES``), the agent's own: cash, position, unrealized PnL
  since entry (x 10), 95% VaR of its step PnL (x 10), rolling Sharpe of its step PnL
  (EMA mean over EMA std), equity, drawdown from its peak equity (x 10).

Global state (``W + 14 + 4N``): the market features, the crowd's and the agents' net
order flow, the latent drift (in units of its std), then every agent's cash, position,
unrealized PnL (x 10) and equity (all agents' cash first).

Action: ``Box(-1, 1, (3,))``: target position, stop-loss width (-1 .. 1 -> 1% .. 10%)
and take-profit width (-1 .. 1 -> 2% .. 20%). Values outside [-1, 1] are clipped. A
position whose return since entry (average cost) has crossed the stop (against it) or
the take-profit (for it) set with it is closed at the agent's next step, whatever the
agent then asks. With ``discrete: true``, ``Discrete(5)``: index 0 .. 4 = target -1,
-0.5, 0, 0.5, 1, each with the widest stop (10%) and take-profit (20%); 2 is flat.

Reward components (per agent, unweighted; default weights in brackets):
``profit`` (0.4) the step's mark-to-market PnL before fees (slippage included) x 10;
``sharpe`` (0.3) the step's PnL after fees over the root of the running mean of its
square, x 0.1 (within +-0.45); ``cooperation`` (0.2) minus 0.05 x the agents' absolute
net order per agent, shared by all (herding moves the price against everyone);
``exploration`` (0.1) 0.05 x the mean absolute gap between the action and the agent's
running mean action; ``risk`` (1.0) minus 0.001 x position^2 and 0.02 x drawdown;
``transaction_cost`` (1.0) minus the fee paid x 10.

Baselines (observations only): ``momentum`` (default) targets the window's trend over
its volatility (a t-statistic) / 2, sized down when the volatility exceeds 1% a step,
in steps of 0.5; ``buy_and_hold`` is always fully long; ``mean_reversion`` bets against
the Bollinger position; ``flat`` is the default action (never trades, earns exactly 0).
The first three use the widest stops.

Strategies for a meta-controller (``hierarchy:``; ``STRATEGIES``, each a
:class:`Strategy`: a rule over the trend's t-statistic, the sentiment, the Bollinger
position and the gap to the fundamental, sized by volatility, with its own stops):
``aggressive`` (full-size trend following), ``conservative`` (half size on strong trends,
tight stops), ``balanced`` (half-size trend with a sentiment tilt), ``contrarian``
(against the gap to the fundamental) and ``momentum`` (the baseline's rule). Mean
per-agent return over 500 episodes with the exploration bonus off
(``python bench/hierarchical.py``):

=====  ==========  ============  ========  ==========  ========
level  aggressive  conservative  balanced  contrarian  momentum
=====  ==========  ============  ========  ==========  ========
easy   0.58        0.34          0.48      -0.02       0.64
hard   -0.59       -0.00         -0.01     0.11        -0.19
=====  ==========  ============  ========  ==========  ========

Trends pay in calm markets, the pull back to the fundamental in volatile ones, so no
strategy is best everywhere. ``random_levels`` draws each episode's level from a list
(one env copy per core), a setting where the choice has to follow the market.

Constraints a shield can enforce (:mod:`rl_platform.safety`): ``max_position`` (the
absolute position held after the step, 0 where a stop or take-profit closes it, above
the limit in units) and ``max_order`` (the absolute position change the action asks for
above the limit; closes forced by a stop or take-profit never count).

Potentials for reward shaping, per agent and in the ``profit`` component's units (x 10
per unit of initial balance): ``position_risk``, minus the position's value times the
window's realized volatility (the typical size of the next step's PnL, so 0 when flat),
and ``equity``, the mark-to-market wealth gained since the start.

Mean per-agent return over 20 episodes (``evaluation.baselines.episode_scores``):

=========  ======  ========  ============  ==============  ====
level      random  momentum  buy_and_hold  mean_reversion  flat
=========  ======  ========  ============  ==============  ====
easy       -1.88   0.95      -0.35         -3.13           0
medium     -1.46   -0.23     -0.67         -1.94           0
hard       -1.48   -0.20     -0.99         -2.34           0
expert     -1.88   0.09      -1.75         -3.30           0
=========  ======  ========  ============  ==============  ====

(discrete: random -2.66 / -2.18 / -2.24 / -2.49, momentum 0.92 / -0.27 / -0.24 / 0.05.)
Random actions pay fees, slippage and herding; momentum profits where trends stand out
(easy) and stays near flat elsewhere. Knowing the drift's sign (every agent fully in it)
earns about +1.0 at easy and +0.1 at medium, and loses at hard and expert, where
herding and drawdowns eat the edge unless positions are sized and staggered.

Speed on the 2-core dev machine: about 12,000 env steps/s for the single-copy RLlib view
(below the platform's 20,000 target: a step is ~150 numpy calls on tiny arrays) and about
3,900,000 agent steps/s for the core at B=1024.
"""

from __future__ import annotations

from rl_platform.envs.base import CoreMultiAgentEnv
from rl_platform.envs.trading.config import (
    ACTION_MEAN_RATE,
    AGENT_FEATURES,
    COOPERATION_SCALE,
    DISCRETE_ACTIONS,
    DRIFT_PERSISTENCE,
    DRIFT_STD,
    EXPLORATION_SCALE,
    FEE,
    HIDDEN_FEATURES,
    HISTORY,
    IMPACT,
    LEVELS,
    LOG_PRICE_LIMIT,
    MARKET_FEATURES,
    MOMENTUM_SENSITIVITY,
    MOMENTUM_TRADER_SIZE,
    NOISE_TRADER_SIZE,
    OBS_LIMIT,
    PNL_SCALE,
    PRICE_SCALE,
    PROFIT_SCALE,
    RETURN_SCALE,
    REVERSION,
    RISK_DRAWDOWN,
    RISK_POSITION,
    SENTIMENT_NOISE,
    SHARPE_SCALE,
    STATE_AGENT_FEATURES,
    STATS_RATE,
    STEPS_PER_YEAR,
    STOP_RANGE,
    TAKE_RANGE,
    VAR_EPS,
    Z_95,
    TradingConfig,
    observed_features,
)
from rl_platform.envs.trading.core import TradingCore
from rl_platform.envs.trading.layout import (
    BOOK_ROWS,
    CASH,
    COST,
    DEVIATION,
    DRAWDOWN,
    EQUITY,
    FEE_PAID,
    FLOW,
    MEAN_ACTION,
    PEAK,
    PNL,
    PNL_MEAN,
    PNL_SQUARE,
    PNL_STD,
    POSITION,
    POSITION_SQUARED,
    SHARPE,
    SHARPE_STEP,
    STOP,
    TAKE,
    UNREALIZED,
)
from rl_platform.envs.trading.rules import STRATEGIES, Strategy, TradingRules


class TradingEnv(CoreMultiAgentEnv):
    """RLlib ``MultiAgentEnv`` of one trading market (PettingZoo: ``parallel_env``)."""

    core_cls = TradingCore
    config_model = TradingConfig


def parallel_env(**config: object):
    """PettingZoo ``ParallelEnv`` of the trading env."""
    return TradingEnv.parallel_env(**config)


__all__ = [
    "ACTION_MEAN_RATE",
    "AGENT_FEATURES",
    "BOOK_ROWS",
    "CASH",
    "COOPERATION_SCALE",
    "COST",
    "DEVIATION",
    "DISCRETE_ACTIONS",
    "DRAWDOWN",
    "DRIFT_PERSISTENCE",
    "DRIFT_STD",
    "EQUITY",
    "EXPLORATION_SCALE",
    "FEE",
    "FEE_PAID",
    "FLOW",
    "HIDDEN_FEATURES",
    "HISTORY",
    "IMPACT",
    "LEVELS",
    "LOG_PRICE_LIMIT",
    "MARKET_FEATURES",
    "MEAN_ACTION",
    "MOMENTUM_SENSITIVITY",
    "MOMENTUM_TRADER_SIZE",
    "NOISE_TRADER_SIZE",
    "OBS_LIMIT",
    "PEAK",
    "PNL",
    "PNL_MEAN",
    "PNL_SCALE",
    "PNL_SQUARE",
    "PNL_STD",
    "POSITION",
    "POSITION_SQUARED",
    "PRICE_SCALE",
    "PROFIT_SCALE",
    "RETURN_SCALE",
    "REVERSION",
    "RISK_DRAWDOWN",
    "RISK_POSITION",
    "SENTIMENT_NOISE",
    "SHARPE",
    "SHARPE_SCALE",
    "SHARPE_STEP",
    "STATE_AGENT_FEATURES",
    "STATS_RATE",
    "STEPS_PER_YEAR",
    "STOP",
    "STOP_RANGE",
    "STRATEGIES",
    "Strategy",
    "TAKE",
    "TAKE_RANGE",
    "TradingConfig",
    "TradingCore",
    "TradingEnv",
    "TradingRules",
    "UNREALIZED",
    "VAR_EPS",
    "Z_95",
    "observed_features",
    "parallel_env",
]
