"""Tune's searcher over an Optuna study, through Optuna's public API only.

:class:`StudySearch` is a Ray Tune ``Searcher`` that asks an Optuna ``Study`` for each
trial's values (``study.ask``), reports its intermediate values and tells the study how
it ended (``study.tell``). Its state (which Tune trial is which Optuna trial number) is
small and picklable, so Tune saves it with the experiment and a resumed sweep continues
the same study.
"""

from __future__ import annotations

import pickle
import warnings
from typing import Any

from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from rl_platform.stopping import criteria_met
from rl_platform.tuning.metrics import finite, sampled_env_steps


class StudySearch(Searcher):
    """Tune's Optuna searcher, with the bookkeeping a resumable study needs.

    * a trial that reached the experiment's stop criterion is COMPLETE; one that ASHA
      stopped early is PRUNED (its intermediate values are in the study); one that
      failed, or ended with no finite metric, is FAIL;
    * each Optuna trial records its Tune trial id, iterations and env steps;
    * after a restore, Optuna trials a killed driver asked for but never recorded are
      handed to the next new Tune trials (same values), so the study does not collect
      orphans; trials the study already finished are not told twice.

    Args:
        sampler: the Optuna sampler (TPE or random).
        storage: the Optuna storage that holds (or will hold) the study.
        study_name: the study, created when missing.
        stop: the experiment's stop criteria (a trial meeting them is COMPLETE).
        metric, mode: as for any Tune searcher (Tune sets them from its TuneConfig).
    """

    def __init__(
        self,
        *,
        sampler: Any,
        storage: Any,
        study_name: str,
        stop: dict[str, float],
        metric: str | None = None,
        mode: str | None = None,
    ) -> None:
        super().__init__(metric=metric, mode=mode)
        self._sampler = sampler
        self._store = storage
        self._study_name = study_name
        self._stop = stop
        self._distributions: dict[str, Any] = {}  # parameter name -> Optuna distribution
        self._numbers: dict[str, int] = {}  # Tune trial id -> Optuna trial number
        self._told: set[str] = set()  # Tune trial ids the study holds as finished
        self._orphans: list[int] = []  # numbers of RUNNING trials no Tune trial owns
        self._live: Any = None  # the opened optuna.Study (not saved)
        self._trials: dict[str, Any] = {}  # Tune trial id -> optuna.trial.Trial (not saved)
        self._study_id: int | None = None  # the study's id in the storage (not saved)

    # ------------------------------------------------------------------ Tune's Searcher API

    def set_search_properties(  # noqa: D102
        self, metric: str | None, mode: str | None, config: dict, **spec: Any
    ) -> bool:
        if self._distributions:
            return False
        self._distributions = OptunaSearch.convert_search_space(config)
        if metric:
            self._metric = metric
        if mode:
            self._mode = mode
        self.study()  # created (or loaded) now, as Tune starts
        return True

    def suggest(self, trial_id: str) -> dict | None:  # noqa: D102
        if not self._distributions or not self.metric or not self.mode:
            raise RuntimeError(
                f"{type(self).__name__} has no search space, metric or mode yet: Tune sets "
                "them through set_search_properties."
            )
        if trial_id not in self._numbers:
            if self._orphans:
                self._numbers[trial_id] = self._orphans.pop(0)
            else:
                trial = self.study().ask(fixed_distributions=self._distributions)
                self._numbers[trial_id] = trial.number
                self._trials[trial_id] = trial
        trial = self._trial(trial_id)
        trial.set_user_attr("tune_trial_id", trial_id)
        return dict(trial.params)

    def on_trial_result(self, trial_id: str, result: dict) -> None:  # noqa: D102
        if trial_id in self._numbers and trial_id not in self._told:
            self._report(self._trial(trial_id), result)

    def on_trial_complete(  # noqa: D102
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        from optuna.trial import TrialState

        if trial_id not in self._numbers or trial_id in self._told:
            return
        self._told.add(trial_id)
        if self._finished(self._numbers[trial_id]):
            return
        ot_trial = self._trial(trial_id)
        result = result or {}
        value = finite(result.get(self.metric))
        if result:
            ot_trial.set_user_attr("iterations", int(result.get("training_iteration", 0)))
            ot_trial.set_user_attr("env_steps", sampled_env_steps(result))
            # the last result comes here, not to on_trial_result; a PRUNED trial's value
            # is its last intermediate value
            self._report(ot_trial, result)
        study = self.study()
        if error or value is None:
            reason = "the trial failed" if error else f"no finite {self.metric}"
            ot_trial.set_user_attr("failure", reason)
            study.tell(ot_trial, None, state=TrialState.FAIL)
        elif criteria_met(self._stop, result):
            study.tell(ot_trial, value, state=TrialState.COMPLETE)
        else:  # stopped early by the scheduler
            study.tell(ot_trial, None, state=TrialState.PRUNED)

    def save(self, checkpoint_path: str) -> None:  # noqa: D102
        with open(checkpoint_path, "wb") as handle:
            pickle.dump(self.__getstate__(), handle)

    def restore(self, checkpoint_path: str) -> None:  # noqa: D102
        from optuna.trial import TrialState

        with open(checkpoint_path, "rb") as handle:
            self.__setstate__(pickle.load(handle))  # noqa: S301 (Tune's own saved state)
        known = set(self._numbers.values())
        running = self.study().get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        self._orphans = [t.number for t in running if t.number not in known]
        for trial_id, number in self._numbers.items():
            if self._finished(number):
                self._told.add(trial_id)

    # ------------------------------------------------------------------ pickling

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_live"] = None
        state["_trials"] = {}
        state["_study_id"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if "_ot_trials" in state:
            state = from_optuna_search_state(state, self.__dict__.get("_stop", {}))
        self.__dict__.update(state)
        self._live = None
        self._trials = {}
        self._study_id = None

    # ------------------------------------------------------------------ the study

    def study(self) -> Any:
        """The Optuna study, opened (created when missing) at the first call."""
        import optuna

        if self._live is None:
            self._live = optuna.create_study(
                storage=self._store,
                sampler=self._sampler,
                pruner=optuna.pruners.NopPruner(),
                study_name=self._study_name,
                direction="minimize" if self.mode == "min" else "maximize",
                load_if_exists=True,
            )
            self._study_name = self._live.study_name
        return self._live

    def _trial_id_of(self, number: int) -> int:
        if self._study_id is None:
            self._study_id = self._store.get_study_id_from_name(self._study_name)
        return self._store.get_trial_id_from_study_id_trial_number(self._study_id, number)

    def _finished(self, number: int) -> bool:
        return self._store.get_trial(self._trial_id_of(number)).state.is_finished()

    def _trial(self, trial_id: str) -> Any:
        """The Optuna trial of a Tune trial (made once per process from its number)."""
        import optuna

        trial = self._trials.get(trial_id)
        if trial is None:
            number = self._numbers[trial_id]
            trial = optuna.trial.Trial(self.study(), self._trial_id_of(number))
            self._trials[trial_id] = trial
        return trial

    def _report(self, ot_trial: Any, result: dict) -> None:
        value = finite(result.get(self.metric))
        if value is None:
            return
        with warnings.catch_warnings():  # a resumed trial may report a step again
            warnings.simplefilter("ignore")
            ot_trial.report(value, int(result.get("training_iteration", 0)))


def from_optuna_search_state(state: dict[str, Any], stop: dict[str, float]) -> dict[str, Any]:
    """A :class:`StudySearch` state from one saved by the earlier ``OptunaSearch`` subclass.

    Sweeps started before the searcher was rewritten saved Ray's ``OptunaSearch``
    attributes (its ``__dict__``); only their names are read here (the Optuna trials'
    public ``number``), so a resume of such a sweep continues its study.
    """
    return {
        "_metric": state.get("_metric"),
        "_mode": state.get("_mode"),
        "_sampler": state["_sampler"],
        "_store": state["_storage"],
        "_study_name": state["_study_name"],
        "_stop": state.get("_stop", stop),
        "_distributions": state.get("_space") or {},
        "_numbers": {k: t.number for k, t in state["_ot_trials"].items()},
        "_told": set(state.get("_completed_trials", ())),
        "_orphans": [],
    }
