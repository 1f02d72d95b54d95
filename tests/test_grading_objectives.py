"""Issue 20, items 1 and 2: messages that name only the mistake made, and objectives the checks enforce.

* a message names a mistake only when the answer gives that mistake's numbers; otherwise it says where the first
  difference is, in plain numbers (no ``np.int64(...)``, no ``tensor(...)``);
* A2's NFE must come from a ``CountingDenoiser`` around the check's denoiser: a formula scores nothing, also when the
  verdict is computed by the judge from the kernel's record;
* the library functions an exercise asks for are switched off while the student's function runs (however they were
  imported), and restored afterwards;
* hidden checks run only with the grader's secret, and a record made with another secret does not pass;
* correct solutions written differently from the model answers still pass, visible and hidden.
"""
import math
import re

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from assignment_harness import define, load_mistakes  # noqa: E402

from dmcmc_edu.core.contract import CountingDenoiser  # noqa: E402
from dmcmc_edu.core.schedules import geometric_sigmas, karras_sigmas  # noqa: E402
from dmcmc_edu.grading import (  # noqa: E402
    a1_noise,
    a2_integrators,
    a3_posterior_langevin,
    a4_dlg,
    a5_classifier,
    a6_research,
    feedback,
)
from dmcmc_edu.grading.feedback import CheckFailed, compare, recording, replaying  # noqa: E402

MODULES = {"a1_noise_and_denoising": a1_noise, "a2_integrators": a2_integrators,
           "a3_posterior_and_langevin": a3_posterior_langevin, "a4_denoising_langevin_gibbs": a4_dlg,
           "a5_noise_level_classifier": a5_classifier, "a6_research_question": a6_research}
MISTAKES = [(name, m) for name in MODULES for m in load_mistakes(name)]
REPR = re.compile(r"np\.(int|float|bool)\w*\(|tensor\(|array\(|dtype=")
OFF_LIMITS = "implement this yourself (it is what this exercise is for)"


def _check(name: str, cell: str):
    return getattr(MODULES[name], f"check_{cell}")


# ----------------------------------------------------------------------------- messages


def test_a_difference_is_reported_at_its_first_entry_in_plain_numbers():
    got = torch.tensor([[1.0, 2.0], [3.0, 4.5], [5.0, 6.0]], dtype=torch.float64)
    want = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 7.0]], dtype=torch.float64)
    with pytest.raises(CheckFailed) as err:
        compare("f(x)", got, want, hint="look at row 1")
    text = str(err.value)
    assert "the first difference is at entry [1, 1]: 4.5 instead of 4 (2 of 6 entries differ)" in text, text
    assert "[..., 4.5, 5, 6]" in text and "[..., 4, 5, 7]" in text, text  # previews start where they differ
    assert not REPR.search(text), text


def test_a_mistake_is_named_only_on_its_own_numbers():
    want = np.array([1.0, 2.0, 3.0])
    with pytest.raises(CheckFailed, match="which is what doubling gives"):
        compare("f", want * 2, want, mistakes={"doubling": want * 2})
    with pytest.raises(CheckFailed) as err:  # near the mistake but not equal to it: no name, the first difference
        compare("f", want * 2 + [0, 0, 0.5], want, mistakes={"doubling": want * 2})
    assert "doubling" not in str(err.value) and "first difference is at entry 0" in str(err.value)


def test_plain_prints_numbers_as_a_student_reads_them():
    assert feedback.plain(np.int64(0)) == "0"
    assert feedback.plain([np.float64(0.5), np.int64(3)]) == "[0.5, 3]"
    assert feedback.plain(torch.tensor(2.0)) == "2"
    assert feedback.plain((np.float64(37.0), 0.08)) == "(37, 0.08)"
    assert feedback.plain(math.inf) == "inf"


@pytest.mark.parametrize("name, mistake", MISTAKES, ids=[f"{n}:{m['message'][:40]}" for n, m in MISTAKES])
def test_every_listed_mistake_gets_a_message_in_plain_numbers(name, mistake):
    wrong = define(name, mistake["cell"], mistake["source"])[mistake["cell"]]
    check = _check(name, mistake["test"].removeprefix("test_"))
    with pytest.raises(CheckFailed) as err:
        check(wrong)  # the visible check, as the student sees it: it fails already, naming the mistake
    assert mistake["message"] in str(err.value)
    assert not REPR.search(str(err.value)), str(err.value)
    with pytest.raises(CheckFailed) as err:  # and the hidden one, whose message is in the feedback
        check(wrong, hidden=True)
    assert not REPR.search(str(err.value)), str(err.value)


def test_a6_strict_comparison_fails_the_visible_check_with_its_name():
    def strict(nfe, metric, target):
        reached = [c for c, m in zip(nfe, metric) if m < target]
        return min(reached) if reached else math.inf

    with pytest.raises(CheckFailed, match=r"metric < target instead of metric <= target") as err:
        a6_research.check_nfe_to_reach(strict)
    assert "and target 0.12" in str(err.value)  # the visible boundary case: a point exactly at the target


def test_a4_mini_sampler_message_previews_the_first_entry_that_differs():
    m = next(m for m in load_mistakes("a4_denoising_langevin_gibbs") if m["cell"] == "mini_dmcmc")
    with pytest.raises(CheckFailed) as err:
        a4_dlg.check_mini_dmcmc(define("a4_denoising_langevin_gibbs", "mini_dmcmc", m["source"])["mini_dmcmc"])
    got, want = re.search(r"gives \[(.*?)\] \(shape.*expected value is \[(.*?)\] \(shape", str(err.value)).groups()
    assert got.split(", ")[1] != want.split(", ")[1], str(err.value)  # the first previewed entry differs


def test_a2_kar1_message_for_an_unknown_mistake_is_neutral():
    def wrong_kar1(D, x, sigma_start, sigma_min, steps):  # Heun with a wrong weight: no listed mistake gives this
        D = CountingDenoiser(D, n_samples=x.shape[0])
        t = karras_sigmas(sigma_start, sigma_min, steps)
        for i in range(steps):
            d = (x - D(x, t[:, i])) / t[:, i, None]
            x_next = x + (t[:, i + 1] - t[:, i])[:, None] * d
            if i < steps - 1:
                d2 = (x_next - D(x_next, t[:, i + 1])) / t[:, i + 1, None]
                x_next = x + (t[:, i + 1] - t[:, i])[:, None] * (0.4 * d + 0.6 * d2)
            x = x_next
        return x, D.nfe

    with pytest.raises(CheckFailed) as err:
        a2_integrators.check_kar1(wrong_kar1)
    text = str(err.value)
    assert "which is what" not in text and "first difference is at entry" in text, text


# ----------------------------------------------------------------------------- NFE counted by the wrapper


def _kar1_formula(D, x, sigma_start, sigma_min, steps):
    """The right x, and NFE by formula (the denoiser is never wrapped)."""
    return a2_integrators._heun(D, x, karras_sigmas(sigma_start, sigma_min, steps), steps), 2 * steps - 1


def _pf_euler_formula(D, x, sigma_start, sigma_min, steps):
    return a2_integrators._log_euler(D, x, geometric_sigmas(sigma_start, sigma_min, steps), steps), float(steps)


@pytest.mark.parametrize("check, fn", [(a2_integrators.check_kar1, _kar1_formula),
                                       (a2_integrators.check_pf_euler, _pf_euler_formula)])
def test_nfe_by_formula_scores_nothing_in_the_kernel_and_in_the_judge(check, fn):
    with pytest.raises(CheckFailed, match="NFE must be counted by the wrapper"):
        check(fn)
    sink: list = []
    with recording(sink), pytest.raises(CheckFailed):
        check(fn)
    with pytest.raises(CheckFailed, match="NFE must be counted by the wrapper"):
        replaying(sink[0], check, hidden=False)


def test_the_counted_nfe_passes_through_the_record_and_a_forged_count_does_not():
    kar1 = define("a2_integrators", "kar1")["kar1"]
    sink: list = []
    with recording(sink):
        a2_integrators.check_kar1(kar1)
    assert replaying(sink[0], a2_integrators.check_kar1, hidden=False).startswith("ok: ")
    for call in sink[0]["calls"]:  # the same record without the wrapper's reports: the judge refuses the NFE
        for item in call["state"]:
            item[1]["v"] = [pair for pair in item[1]["v"] if pair[0]["v"] != "nfe_reads"] + [
                [{"t": "str", "v": "nfe_reads"}, {"t": "list", "v": []}]]
    with pytest.raises(CheckFailed, match="NFE must be counted by the wrapper"):
        replaying(sink[0], a2_integrators.check_kar1, hidden=False)


def test_a_wrapper_made_but_not_used_does_not_count_and_the_class_is_restored():
    original, original_init = CountingDenoiser.__dict__["nfe"], CountingDenoiser.__init__

    def unused_wrapper(D, x, sigma_start, sigma_min, steps):
        CountingDenoiser(D, n_samples=x.shape[0])  # made, then D itself is called: the wrapper counts 0
        return _kar1_formula(D, x, sigma_start, sigma_min, steps)

    with pytest.raises(CheckFailed, match="the CountingDenoiser around D counted 0: NFE must be counted by the"):
        a2_integrators.check_kar1(unused_wrapper)
    assert CountingDenoiser.__dict__["nfe"] is original and CountingDenoiser.__init__ is original_init


def test_the_wrappers_count_of_calls_is_a_counted_nfe_too():
    def by_calls(D, x, sigma_start, sigma_min, steps):
        counter = CountingDenoiser(D)
        out = a2_integrators._heun(counter, x, karras_sigmas(sigma_start, sigma_min, steps), steps)
        return out, counter.calls  # every call is a whole batch: calls = evaluations per sample

    assert a2_integrators.check_kar1(by_calls).startswith("ok: ")
    sink: list = []
    with recording(sink):
        a2_integrators.check_kar1(by_calls, hidden=True)
    assert replaying(sink[0], a2_integrators.check_kar1, hidden=True).startswith("ok: ")


# ----------------------------------------------------------------------------- the library's answer switched off


def _all_checks():
    for module in MODULES.values():
        for attr in dir(module):
            fn = getattr(module, attr)
            if getattr(fn, "graded_check", None):
                yield fn


def test_every_off_limits_function_is_switched_off_during_the_call_and_restored_after():
    targets = sorted({t for check in _all_checks() for t in check.off_limits})
    assert len(targets) >= 20
    functions = [feedback._resolve(t) for t in targets]
    codes = [f.__code__ for f in functions]
    with feedback.switched_off(targets):
        for f in functions:
            with pytest.raises(RuntimeError, match=re.escape(OFF_LIMITS)):
                f(None)
    assert [f.__code__ for f in functions] == codes


def test_delegating_to_a_name_imported_before_the_check_scores_nothing_and_the_check_still_works():
    from dmcmc_edu import kar1 as imported_early

    def delegate(D, x, sigma_start, sigma_min, steps):
        out, info = imported_early(D, x, sigma_start, sigma_min, steps)
        return out, info.nfe

    with pytest.raises(CheckFailed, match=re.escape(OFF_LIMITS)):
        a2_integrators.check_kar1(delegate)
    assert a2_integrators.check_kar1(define("a2_integrators", "kar1")["kar1"]).startswith("ok: ")
    out, info = imported_early(a2_integrators.ring(), torch.zeros(2, 2, dtype=torch.float64), 1.0, 0.01, 3)
    assert info.nfe == 5  # the library's kar1 works again after the check


def test_a_delegation_is_judged_from_the_record_as_a_crash_of_the_students_function():
    wrong = define("a6_research_question", "full_nfe_per_output",
                   "def full_nfe_per_output(ledger):\n    return ledger.per_output()['full']\n")
    sink: list = []
    with recording(sink), pytest.raises(CheckFailed):
        a6_research.check_full_nfe_per_output(wrong["full_nfe_per_output"])
    with pytest.raises(CheckFailed, match=re.escape(OFF_LIMITS)):
        replaying(sink[0], a6_research.check_full_nfe_per_output, hidden=False)


# ----------------------------------------------------------------------------- hidden checks


def test_a_hidden_check_refuses_to_run_without_the_graders_secret(monkeypatch):
    monkeypatch.delenv(feedback.HIDDEN_ENV, raising=False)
    fn = define("a6_research_question", "nfe_to_reach")["nfe_to_reach"]
    with pytest.raises(CheckFailed, match="hidden checks run only when the notebook is graded"):
        a6_research.check_nfe_to_reach(fn, hidden=True)
    assert a6_research.check_nfe_to_reach(fn).startswith("ok: ")  # the visible check runs as before


def test_a_hidden_record_made_with_another_secret_does_not_pass(monkeypatch):
    fn = define("a2_integrators", "kar1")["kar1"]
    monkeypatch.setenv(feedback.HIDDEN_ENV, "what-the-student-set")
    sink: list = []
    with recording(sink):
        a2_integrators.check_kar1(fn, hidden=True)
    assert replaying(sink[0], a2_integrators.check_kar1, hidden=True).startswith("ok: ")
    monkeypatch.setenv(feedback.HIDDEN_ENV, "the-graders-secret")
    with pytest.raises(CheckFailed):
        replaying(sink[0], a2_integrators.check_kar1, hidden=True)


def test_hidden_cases_change_with_the_secret(monkeypatch):
    monkeypatch.setenv(feedback.HIDDEN_ENV, "one")
    first = [c.x for c in a2_integrators._cases(hidden=True)]
    monkeypatch.setenv(feedback.HIDDEN_ENV, "two")
    second = [c.x for c in a2_integrators._cases(hidden=True)]
    assert not torch.allclose(first[0], second[0])


# ----------------------------------------------------------------------------- correct, but written differently

OTHER_SOLUTIONS = {
    ("a2_integrators", "pf_euler"): '''def pf_euler(D, x, sigma_start, sigma_min, steps):
    counter = CountingDenoiser(D, n_samples=x.shape[0])
    log_s = torch.log(sigma_start)[:, None] + torch.linspace(0, 1, steps + 1, dtype=x.dtype)[None, :] * (
        math.log(sigma_min) - torch.log(sigma_start)[:, None])
    for i in range(steps):
        denoised = counter(x, log_s[:, i].exp())
        x = denoised + (x - denoised) * (1 - (log_s[:, i] - log_s[:, i + 1]))[:, None]
    return x, counter.nfe
''',
    ("a2_integrators", "kar1"): '''def kar1(D, x, sigma_start, sigma_min, steps):
    D = CountingDenoiser(CountingDenoiser(D), n_samples=len(x))   # nested wrappers are fine
    t = karras_sigmas(sigma_start, sigma_min, steps)
    i = 0
    while i < steps:
        h = (t[:, i + 1] - t[:, i]).unsqueeze(1)
        slope = (x - D(x, t[:, i])) / t[:, i].unsqueeze(1)
        if i == steps - 1:
            x = x + h * slope
        else:
            guess = x + h * slope
            x = x + h * 0.5 * (slope + (guess - D(guess, t[:, i + 1])) / t[:, i + 1].unsqueeze(1))
        i += 1
    nfe = D.nfe
    return x, nfe
''',
    ("a6_research_question", "nfe_to_reach"): '''def nfe_to_reach(nfe, metric, target):
    cost = np.where(np.asarray(metric) <= target, np.asarray(nfe, dtype=float), np.inf)
    return cost.min()
''',
    ("a1_noise_and_denoising", "karras_schedule"): '''def karras_schedule(sigma_start, sigma_min, steps, rho=7.0):
    rows = []
    for s in sigma_start.tolist():
        a, b = s ** (1 / rho), sigma_min ** (1 / rho)
        rows.append([(a + k / max(steps - 1, 1) * (b - a)) ** rho for k in range(steps)])
    return torch.tensor(rows, dtype=sigma_start.dtype)
''',
}


@pytest.mark.parametrize("hidden", [False, True])
@pytest.mark.parametrize("name, cell", list(OTHER_SOLUTIONS))
def test_a_correct_solution_written_differently_gets_full_marks(name, cell, hidden):
    source = "import math\nimport numpy as np\n" + OTHER_SOLUTIONS[(name, cell)]
    fn = define(name, cell, source)[cell]
    assert _check(name, cell)(fn, hidden=hidden).startswith("ok: ")


# ----------------------------------------------------------------------------- A3: underflow named only on its numbers


@pytest.mark.parametrize("secret", ["s1", "s2", "s3"])
def test_the_missing_log_sum_exp_is_named_in_the_hidden_check_whatever_the_secret(monkeypatch, secret):
    monkeypatch.setenv(feedback.HIDDEN_ENV, secret)
    m = next(m for m in load_mistakes("a3_posterior_and_langevin")
             if m["cell"] == "log_p_sigma" and "log-sum-exp" in m["message"])
    with pytest.raises(CheckFailed, match="the log-sum-exp is missing"):
        a3_posterior_langevin.check_log_p_sigma(define("a3_posterior_and_langevin", "log_p_sigma", m["source"])
                                                ["log_p_sigma"], hidden=True)


def test_a_nan_that_is_not_the_missing_log_sum_exp_gets_a_neutral_message():
    model = define("a3_posterior_and_langevin", "log_p_sigma")["log_p_sigma"]

    def nan_in_row_0(x, sigma, weights, means, tau):
        out = model(x, sigma, weights, means, tau).clone()
        out[0] = math.nan
        return out

    with pytest.raises(CheckFailed) as err:
        a3_posterior_langevin.check_log_p_sigma(nan_in_row_0)
    assert "log-sum-exp is missing" not in str(err.value) and "the first at entry 0" in str(err.value), str(err.value)
