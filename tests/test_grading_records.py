"""Checks judged outside the kernel: a check's record, judged in a clean process, gives the kernel's own verdict.

For every assignment's model answers, stubs and listed mistakes (visible and hidden cases): run the check as a
notebook would (recording the student's answers), then judge the record with
:func:`dmcmc_edu.grading.judge.judge_cell` from the test cell's source, as the grader does; the verdict must be the
same (the same "ok" line, or the same message).  Then the ways a record can lie: it cannot make a check pass
without the right answers, and anything malformed fails.
"""
import matplotlib

matplotlib.use("Agg")

import copy  # noqa: E402

import pytest  # noqa: E402
from assignment_harness import cell_text, cells_by_id, define, load_mistakes, read_notebook, source_path  # noqa: E402

from dmcmc_edu.grading import a1_noise, a2_integrators, a3_posterior_langevin, a4_dlg, a5_classifier, a6_research  # noqa: E402,I001
from dmcmc_edu.grading.feedback import CheckFailed, decode, encode, recording  # noqa: E402
from dmcmc_edu.grading.judge import JudgeError, judge_cell, planned_checks  # noqa: E402

MODULES = {"a1_noise_and_denoising": a1_noise, "a2_integrators": a2_integrators,
           "a3_posterior_and_langevin": a3_posterior_langevin, "a4_denoising_langevin_gibbs": a4_dlg,
           "a5_noise_level_classifier": a5_classifier, "a6_research_question": a6_research}


def _test_cells(name):
    cells = cells_by_id(read_notebook(source_path(name)))
    return {gid[len("test_"):]: cell_text(c) for gid, c in cells.items() if gid.startswith("test_")}


FUNCTIONS = [(name, fn) for name in MODULES for fn in _test_cells(name)]
MISTAKES = [(name, m) for name in MODULES for m in load_mistakes(name)]


def _kernel_run(name, fn, student_fn):
    """Run the test cell's checks as the kernel does (visible then hidden); the records and the kernel's verdict."""
    records, lines, message = [], [], None
    with recording(records):
        for check, hidden in planned_checks(_test_cells(name)[fn]):
            try:
                lines.append(str(check(student_fn, hidden=hidden)))
            except CheckFailed as err:
                message = str(err)
                break
    return records, lines, message


def _same_verdict(name, fn, student_fn):
    records, lines, message = _kernel_run(name, fn, student_fn)
    verdict = judge_cell(_test_cells(name)[fn], copy.deepcopy(records))
    assert verdict.lines == lines
    assert verdict.message == message
    assert verdict.passed is (message is None)
    return verdict


@pytest.mark.parametrize("name, fn", FUNCTIONS)
def test_model_answer_judged_as_in_the_kernel(name, fn):
    assert _same_verdict(name, fn, define(name, fn)[fn]).passed


@pytest.mark.parametrize("name, mistake", MISTAKES, ids=[f"{n}:{m['message'][:40]}" for n, m in MISTAKES])
def test_mistake_judged_as_in_the_kernel(name, mistake):
    fn = mistake["test"].replace("test_", "", 1)
    verdict = _same_verdict(name, fn, define(name, mistake["cell"], mistake["source"])[mistake["cell"]])
    assert not verdict.passed and mistake["message"] in verdict.message


@pytest.mark.parametrize("name, fn", FUNCTIONS)
def test_stub_judged_as_in_the_kernel(name, fn):
    def stub(*args, **kwargs):
        raise NotImplementedError()

    verdict = _same_verdict(name, fn, stub)
    assert not verdict.passed and "not implemented yet" in verdict.message


def test_a_patched_check_gains_nothing():
    """A kernel whose checks were replaced records the stub's answers (or none): the judge fails them."""
    source = _test_cells("a1_noise_and_denoising")["forward_noise"]
    records = []
    with recording(records):
        try:
            a1_noise.check_forward_noise(lambda x, sigma, eps: x)
        except CheckFailed:
            pass
    assert not judge_cell(source, records).passed
    assert not judge_cell(source, []).passed  # the check was never run (replaced by a no-op)
    # a record of the visible check offered for the hidden one, or twice the visible one
    good = define("a1_noise_and_denoising", "forward_noise")["forward_noise"]
    records = []
    with recording(records):
        a1_noise.check_forward_noise(good)
    assert not judge_cell(source, records * 2).passed
    assert "another check" in judge_cell(source, records * 2).message


def test_a_record_with_calls_missing_or_renamed_fails():
    good = define("a1_noise_and_denoising", "karras_schedule")["karras_schedule"]
    source = _test_cells("a1_noise_and_denoising")["karras_schedule"]
    records = []
    with recording(records):
        for check, hidden in planned_checks(source):
            check(good, hidden=hidden)
    assert judge_cell(source, copy.deepcopy(records)).passed
    cut = copy.deepcopy(records)
    cut[1]["calls"] = cut[1]["calls"][:1]
    assert "stopped in the notebook" in judge_cell(source, cut).message
    renamed = copy.deepcopy(records)
    renamed[0]["calls"][0]["name"] = "forward_noise"
    assert not judge_cell(source, renamed).passed
    forged = copy.deepcopy(records)
    forged[0]["calls"][0]["value"] = {"t": "code", "v": "__import__('os').system('true')"}
    assert not judge_cell(source, forged).passed
    short = copy.deepcopy(records)
    short[0]["calls"][0]["value"]["b64"] = short[0]["calls"][0]["value"]["b64"][:8]
    assert not judge_cell(source, short).passed


def test_only_check_calls_are_judged():
    with pytest.raises(JudgeError, match="may only call"):
        planned_checks("import os\na1_noise.check_forward_noise(forward_noise)")
    with pytest.raises(JudgeError, match="not a graded check"):
        planned_checks("a1_noise.check_nothing(forward_noise)")


def test_encode_decode_keeps_types_and_values():
    import numpy as np
    import torch

    value = (torch.arange(6, dtype=torch.float32).reshape(2, 3), [1, 2.5, float("nan")], np.int64(3), "x", None,
             {"a": np.ones(2, dtype=bool)}, True)
    back = decode(encode(value))
    assert isinstance(back, tuple) and back[0].dtype == torch.float32 and torch.equal(back[0], value[0])
    assert back[1][:2] == [1, 2.5] and np.isnan(back[1][2]) and isinstance(back[1][0], int)
    assert back[2] == 3 and back[2].dtype == np.int64 and back[3:5] == ("x", None)
    assert back[5]["a"].dtype == bool and back[6] is True
    assert type(decode(encode(object()))).__name__ == "object"
