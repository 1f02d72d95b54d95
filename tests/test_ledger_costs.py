"""The fair ledger (issue 18, item 4): oracle rows counted as the sampler makes them, prices applied by hand sums.

The oracle rows (the exact sigma-posterior, MALA's log-density) are compared with the calls an independent
observer sees on the mixture; old ledger dicts still load; the cost-weighted total is the hand sum of rows times
prices; bad prices are refused in one line.  Nothing here is timed (the prices are measured by
``bench/ledger_costs.py``).
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from dmcmc_edu.core.contract import CountingDenoiser
from dmcmc_edu.core.ledger import ORACLE_FIELDS, NFELedger, check_prices
from dmcmc_edu.core.sampler import DMCMCConfig, DMCMCSampler
from dmcmc_edu.targets import ExactLevelClassifier, ring


class Observed:
    """A mixture seen through an observer that tallies the rows of every external oracle call (not a counter of
    the package: its own bookkeeping, to check the ledger's)."""

    def __init__(self, mix):
        self.mix = mix
        self.rows = {"sigma_log_posterior": 0, "log_prob": 0}
        self.calls = {"sigma_log_posterior": 0, "log_prob": 0}

    def __call__(self, x, sigma):
        return self.mix(x, sigma)

    def _seen(self, name, x):
        self.calls[name] += 1
        self.rows[name] += x.shape[0]

    def sigma_log_posterior(self, x, grid, log_prior=None):
        self._seen("sigma_log_posterior", x)
        return self.mix.sigma_log_posterior(x, grid, log_prior=log_prior)

    def log_prob(self, x, sigma=0.0):
        self._seen("log_prob", x)
        return self.mix.log_prob(x, sigma)


def config(**kw) -> DMCMCConfig:
    base = dict(sigma_min=0.01, sigma_max=40.0, n_levels=60, eta=0.01, n_chains=12, outputs_per_chain=3,
                init_steps=3, burn_in=[[2, 0.02], [3, None]], integrator="kar1", steps=3, seed=5)
    return DMCMCConfig(**{**base, **kw})


@pytest.mark.parametrize("x_update, n_skip", [("mala", 2), ("ula", 1), ("mala", 1)])
def test_oracle_rows_equal_the_calls_the_mixture_receives_in_each_phase(x_update, n_skip):
    obs = Observed(ring())
    sampler = DMCMCSampler(obs, config(sigma_update="exact", x_update=x_update, n_skip=n_skip), data_shape=(2,))
    sampler.burn_in()  # the initialisation and the whole burn-in
    led = sampler.ledger
    assert led.oracle_posterior_init == obs.rows["sigma_log_posterior"] > 0
    assert led.oracle_log_prob_init == obs.rows["log_prob"]
    assert (obs.rows["log_prob"] > 0) == (x_update == "mala")
    before = dict(obs.rows)
    sampler.run()
    assert led.oracle_posterior == obs.rows["sigma_log_posterior"] - before["sigma_log_posterior"] > 0
    assert led.oracle_log_prob == obs.rows["log_prob"] - before["log_prob"]
    per = led.per_output()
    total = sum(obs.rows.values()) / led.n_outputs
    assert per["oracle"] == pytest.approx(total)
    assert per["oracle_parts"]["oracle_posterior"] == pytest.approx(led.oracle_posterior / led.n_outputs)


def test_oracle_rows_stay_out_of_paper_score_evals_and_full():
    res = DMCMCSampler(ring(), config(sigma_update="exact", x_update="mala"), data_shape=(2,)).run()
    per = res.ledger.per_output()
    assert per["oracle"] > 0
    assert per["full"] == pytest.approx(per["score_evals"])  # no classifier: full is the score model's rows only
    assert per["full"] == pytest.approx(sum(per["parts"].values()))
    assert set(per["parts"]) == {"gibbs", "denoise", "tweedie", "init_amortised", "classifier",
                                 "classifier_init_amortised"}


def test_a_classifier_run_makes_no_oracle_rows_and_counts_its_classifier_as_before():
    obs = Observed(ring())
    cfg = config(sigma_update="classifier-sample", x_update="ula")
    clf = ExactLevelClassifier(ring(), cfg.grid())  # the exact posterior behind a classifier: counted as one
    res = DMCMCSampler(obs, cfg, data_shape=(2,), classifier=clf).run()
    assert obs.calls == {"sigma_log_posterior": 0, "log_prob": 0}
    assert all(getattr(res.ledger, f) == 0 for f in ORACLE_FIELDS)
    assert res.ledger.classifier + res.ledger.classifier_init == clf.rows


def test_counting_denoiser_counts_oracle_rows_through_nested_counters():
    mix = ring()
    inner = CountingDenoiser(mix)
    outer = CountingDenoiser(inner)
    x = torch.zeros(7, 2, dtype=torch.float64)
    torch.testing.assert_close(outer.log_prob(x, 0.5), mix.log_prob(x, 0.5), rtol=0, atol=0)
    outer.sigma_log_posterior(x[:3], torch.tensor([1.0, 0.1]))
    for c in (inner, outer):
        assert c.oracle_rows == {"sigma_log_posterior": 3, "log_prob": 7}
        assert c.oracle_calls == {"sigma_log_posterior": 1, "log_prob": 1}
        assert c.rows == 0  # not a denoiser evaluation
    assert not hasattr(CountingDenoiser(lambda x, s: x), "log_prob")


def ledger() -> NFELedger:
    return NFELedger(n_chains=10, n_outputs=40, init=370, gibbs=80, denoise=280, tweedie=40, classifier_init=60,
                     classifier=80, oracle_posterior_init=110, oracle_posterior=80, oracle_log_prob_init=200,
                     oracle_log_prob=160)


def test_cost_weighted_is_the_hand_sum_of_rows_times_prices():
    led = ledger()
    prices = {"classifier": 0.08, "oracle_posterior": 127.0, "oracle_log_prob": 0.8}
    per = led.per_output(prices)
    score = (370 + 80 + 280 + 40) / 40
    hand = score + 0.08 * (60 + 80) / 40 + 127.0 * (110 + 80) / 40 + 0.8 * (200 + 160) / 40
    assert per["score_evals"] == pytest.approx(score)
    assert per["cost_weighted"] == pytest.approx(hand, rel=1e-12)
    assert per["oracle"] == pytest.approx((110 + 80 + 200 + 160) / 40)
    assert per["prices"] == prices
    assert "cost_weighted" not in led.per_output()  # no prices, no weighting


def test_free_rows_give_score_evals_and_a_classifier_at_one_gives_full():
    led = ledger()
    zero = led.per_output({"classifier": 0, "oracle_posterior": 0.0, "oracle_log_prob": 0})
    assert zero["cost_weighted"] == zero["score_evals"]
    one = led.per_output({"classifier": 1, "oracle_posterior": 0, "oracle_log_prob": 0})
    assert one["cost_weighted"] == pytest.approx(one["full"])


def test_a_price_may_be_left_out_only_for_rows_the_run_did_not_make():
    led = NFELedger(n_chains=2, n_outputs=4, init=8, gibbs=4, denoise=12)
    assert led.per_output({})["cost_weighted"] == led.per_output()["score_evals"]
    with pytest.raises(ValueError, match="no price for 'oracle_posterior'") as err:
        ledger().per_output({"classifier": 0.1, "oracle_log_prob": 1.0})
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("prices, match", [
    ({"classifier": -0.1}, "'classifier' must be a finite number >= 0"),
    ({"oracle_posterior": math.nan}, "'oracle_posterior' must be a finite number >= 0"),
    ({"oracle_log_prob": math.inf}, "'oracle_log_prob' must be a finite number >= 0"),
    ({"classifier": True}, "'classifier' must be a finite number"),
    ({"classifier": "0.1"}, "'classifier' must be a finite number"),
    ({"clasifier": 0.1}, "unknown price 'clasifier'"),
    ([0.1, 1.0], "prices must be a dict"),
])
def test_bad_prices_are_refused_in_one_line(prices, match):
    with pytest.raises(ValueError, match=match) as err:
        ledger().per_output(prices)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match=match):
        check_prices(prices)


def test_an_old_ledger_dict_loads_with_its_oracle_rows_not_counted():
    new = ledger()
    old = {"totals_in_rows": {k: v for k, v in new.to_dict()["totals_in_rows"].items() if k not in ORACLE_FIELDS},
           "per_output": {}, "definition": "..."}
    led = NFELedger.from_dict(json.loads(json.dumps(old)))
    for key in ("paper", "score_evals", "full", "parts"):
        assert led.per_output()[key] == new.per_output()[key]
    assert all(getattr(led, f) is None for f in ORACLE_FIELDS)
    assert led.per_output()["oracle"] is None
    assert led.per_output({"classifier": 0.5, "oracle_posterior": 2.0})["cost_weighted"] is None
    free = led.per_output({"classifier": 0.5, "oracle_posterior": 0, "oracle_log_prob": 0})
    assert free["cost_weighted"] == pytest.approx(free["score_evals"] + 0.5 * (60 + 80) / 40)
    led.add(gibbs=4, oracle_posterior=4)  # a resumed run: rows not counted before stay not counted
    assert led.oracle_posterior is None and led.gibbs == 84
    assert led.per_output()["oracle_parts"]["oracle_posterior"] is None


def test_a_new_ledger_round_trips_through_json():
    new = ledger()
    back = NFELedger.from_dict(json.loads(json.dumps(new.to_dict({"classifier": 0.5, "oracle_posterior": 1,
                                                                   "oracle_log_prob": 1}))))
    assert back == new
    with pytest.raises(ValueError, match="unknown field"):
        NFELedger.from_dict({"totals_in_rows": {"gibbs": 1, "nonsense": 2}})
