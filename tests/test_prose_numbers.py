"""A number in prose is a number in an output (issue 19, item 1).

Every number a markdown cell of a checked notebook states is shown by an output of the same notebook, or declared:
a constant of its settings cell, a number of ``dmcmc_edu.paper``, or an entry of :data:`DECLARED` below.  The rules
(what is read, what is skipped, how numbers are compared) are in ``tests/prose_numbers.py``.  The walkthroughs are
read as stored (with their outputs); the assignments' sources are stored without outputs (nbgrader releases them
cleared), so each is run here with its model answers (:func:`prose_numbers.executed_cells`, about 10 s each) and its
prose, the model answer of a hand-graded cell included, is checked against that run's outputs.
"""

import json
from pathlib import Path

import pytest
from prose_numbers import check_cells, check_notebook, executed_cells, stated_numbers

NB_DIR = Path(__file__).resolve().parents[1] / "notebooks"

CHECKED = [
    "00_overview.ipynb",
    "01_mixtures_and_noise.ipynb",
    "02_integrators_vs_nfe.ipynb",
    "03_denoising_langevin_gibbs.ipynb",
    "04_dlg_acceleration.ipynb",
    "05_dlg_deep_dive.ipynb",
    "06_mnist.ipynb",
    "07_gpu_lab_cifar10_celebahq.ipynb",
    "08_explorers.ipynb",
]

# checked against a run of the source notebook (model answers in place)
ASSIGNMENTS = [
    *(f"assignments/source/{a}/{a}.ipynb" for a in (
        "a1_noise_and_denoising", "a2_integrators", "a3_posterior_and_langevin", "a4_denoising_langevin_gibbs",
        "a5_noise_level_classifier", "a6_research_question")),
]

# Definitions a notebook states without an output to show them: {number as written: why it is not a measurement}.
DECLARED = {
    "00_overview.ipynb": {
        "1": "definitions in the glossary: an ESS ratio of 1 for independent outputs, a spread of 1 for exact samples",
        "0.99": "the on-manifold metric's definition: the chi-square 0.99-quantile, about 0.99 for exact samples",
    },
    "07_gpu_lab_cifar10_celebahq.ipynb": {
        "2048": "the dimension of Inception's pool3 features, which the FID is defined on",
        "75": "PIL's default JPEG quality, which the authors' code wrote its images with",
    },
    "assignments/source/a6_research_question/a6_research_question.ipynb": {
        "1.5": "the points of parts 2 and 3 of the hand-graded answer (tests/test_course_kit.py adds them up)",
    },
}


def test_every_notebook_is_checked():
    found = {str(p.relative_to(NB_DIR)) for p in NB_DIR.glob("[0-9][0-9]_*.ipynb")}
    found |= {str(p.relative_to(NB_DIR)) for p in (NB_DIR / "assignments" / "source").glob("*/*.ipynb")}
    assert found == set(CHECKED) | set(ASSIGNMENTS), found ^ (set(CHECKED) | set(ASSIGNMENTS))
    assert not set(CHECKED) & set(ASSIGNMENTS)
    assert set(DECLARED) <= set(CHECKED) | set(ASSIGNMENTS)


def _fail_message(name, findings):
    return (f"{len(findings)} number(s) in the prose of {name} that no output shows and nothing declares (print "
            "them from code, point at the output, or declare a definition in tests/test_prose_numbers.py):\n"
            + "\n".join(map(str, findings)))


@pytest.mark.parametrize("name", CHECKED)
def test_numbers_in_prose_are_in_outputs(name):
    findings = check_notebook(NB_DIR / name, DECLARED.get(name))
    assert not findings, _fail_message(name, findings)


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_numbers_in_assignment_prose_are_in_the_outputs_of_its_model_answers(name):
    findings = check_cells(Path(name).name, executed_cells(NB_DIR / name), DECLARED.get(name))
    assert not findings, _fail_message(name, findings)


@pytest.mark.parametrize("name", CHECKED + ASSIGNMENTS)
def test_declared_numbers_are_used(name):
    """A declared number that the prose no longer states is removed from the list (it stays short)."""
    stated = {n.value for c in json.loads((NB_DIR / name).read_text())["cells"]
              if c["cell_type"] == "markdown" for n, _ in stated_numbers("".join(c["source"]))}
    unused = [k for k in DECLARED.get(name, {}) if float(k.replace(",", "")) not in stated]
    assert not unused, f"{name}: declared but not stated: {unused}"


# ---- the checker on a tiny synthetic notebook ---------------------------------------------------------------------
def _md(text):
    return {"cell_type": "markdown", "source": text}


def _code(source="", stdout=None, plain=None):
    outputs = []
    if stdout is not None:
        outputs.append({"output_type": "stream", "name": "stdout", "text": stdout})
    if plain is not None:
        outputs.append({"output_type": "execute_result", "data": {"text/plain": plain}, "metadata": {}})
    return {"cell_type": "code", "source": source, "outputs": outputs, "metadata": {}}


def _numbers(findings):
    return [f.number for f in findings]


def test_a_number_missing_from_the_outputs_fails_and_is_named():
    cells = [_md("The run costs 37 NFE."), _code(stdout="NFE per output: 35\n")]
    (f,) = check_cells("toy.ipynb", cells)
    assert _numbers(check_cells("toy.ipynb", [_md("JPEG quality (75), item (3).")])) == ["75"]
    assert (f.notebook, f.cell, f.number) == ("toy.ipynb", 0, "37")
    assert "costs 37 NFE" in f.context and "toy.ipynb cell 0: '37'" in str(f)


def test_a_number_present_in_an_output_passes_at_the_prose_precision():
    cells = [_md("W2 is 0.7, mode TV 0.07, the cost 35 NFE, 12 % of 50,000 samples, at sigma 1e-3."),
             _code(stdout="W2 0.703 mode TV 0.0682 NFE 35\n"), _code(plain="(0.12, 50000, 0.001)")]
    assert check_cells("toy.ipynb", cells) == []


def test_the_comparison_is_at_the_prose_precision_and_integers_are_exact():
    cells = [_md("W2 is 0.71; the run took 15 s."), _code(stdout="W2 0.703, FID 15.29\n")]
    assert _numbers(check_cells("toy.ipynb", cells)) == ["0.71", "15"]


def test_latex_references_citations_and_code_are_skipped():
    text = ("## 2 · Section title\n"
            "As in section 3 and cells 12/13/15 of notebook 04 (`04_dlg_acceleration.ipynb`), Fig. 3 and Table 2,\n"
            "assignment A6, KAR1, W2, CIFAR10, CelebA-HQ-256, Karras et al. (2022, Alg. 2), week 1 session 2,\n"
            " $\\sigma = 0.7$ and $$x_{42} = 17$$, see Karras et al. (2022) and\n"
            "ICML 2023 (arXiv 2209.14593, https://arxiv.org/abs/2209.14593), suspect **(1)**, torch 2.11.0;\n"
            "run `python -m dmcmc_edu ladder --steps 99` on `checkpoint_24.pth`.\n\n"
            "    python train.py --epochs 100\n\n"
            "```bash\nmake test JOBS=4\n```\n"
            "1. a list item\n"
            "**Time:** about 25 minutes to read; runs in about 15 s.\n")
    assert stated_numbers(text) == []
    assert check_cells("toy.ipynb", [_md(text)]) == []


def test_a_backticked_setting_is_a_claim_but_a_suggestion_in_try_this_is_not():
    cells = [_md("We use `eta = 0.02`.\n\n## Try this\n1. Set `eta = 0.5` and `STEPS = [3, 9]`.")]
    assert _numbers(check_cells("toy.ipynb", cells)) == ["0.02"]


def test_declared_numbers_settings_and_the_paper_pass():
    cells = [_md("## Settings"), _code("N = 800  # 1234 in a comment does not count\n"),
             _md("With 800 samples, a 2-dimensional ring, 1234 rows and the paper's FID 3.86 at 10 NFE.")]
    assert _numbers(check_cells("toy.ipynb", cells)) == ["2", "1234"]
    assert check_cells("toy.ipynb", cells, {"2": "the ring is 2-dimensional", "1234": "a test"}) == []


def test_arithmetic_written_out_shows_its_result_at_the_prose_precision():
    cells = [_md("DLG costs about 8 times the control (95.3 / 12.0); 19 steps cost 2 × 19 − 1 = 37 NFE; "
                 "about 14 NFE per output (`init=5700` / 400)."),
             _code(stdout="control 12.0, dlg 95.3; init=5700 rows, 400 outputs, 19 steps\n")]
    assert check_cells("toy.ipynb", cells, {"2": "Heun: two evaluations", "1": "the last step"}) == []
    wrong = [_md("DLG costs about 7 times the control (95.3 / 12.0)."), _code(stdout="12.0 95.3\n")]
    assert _numbers(check_cells("toy.ipynb", wrong)) == ["7"]
    unshown = [_md("DLG costs about 8 times the control (95.3 / 12.0)."), _code(stdout="12.0\n")]
    assert _numbers(check_cells("toy.ipynb", unshown)) == ["95.3"], "an operand is checked like any number"


def test_an_executed_copy_has_the_outputs_and_leaves_the_source_alone(tmp_path):
    nb = {"cells": [_md("Half of 0.7391 is shown below."), {**_code("print(0.7391 / 2)"), "outputs": [],
                                                         "execution_count": None}],
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    for i, cell in enumerate(nb["cells"]):
        cell.update(id=f"c{i}", metadata={})
    path = tmp_path / "toy.ipynb"
    path.write_text(json.dumps(nb))
    before = path.read_bytes()
    cells = executed_cells(path)
    assert "".join(cells[1]["outputs"][0]["text"]) == "0.36955\n" and path.read_bytes() == before
    assert _numbers(check_cells("toy.ipynb", cells)) == ["0.7391"]
    assert check_cells("toy.ipynb", [_md("Half of it: 0.3696."), cells[1]]) == []
