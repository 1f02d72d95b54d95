"""The checks of assignment A5 (dmcmc_edu.grading.a5_classifier): the model answers pass, every listed mistake fails
with a message naming it, a stub fails saying it is not implemented; pairs drawn in another order are accepted when
their distribution is right."""
import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
from assignment_harness import define, load_mistakes  # noqa: E402

from dmcmc_edu.grading import a5_classifier  # noqa: E402
from dmcmc_edu.grading.feedback import CheckFailed  # noqa: E402

NAME = "a5_noise_level_classifier"
FUNCTIONS = ["training_pairs", "cross_entropy_loss", "kl_exact_to_classifier", "log_sigma_spread",
             "why_argmax_collapses"]


def model_answer(fn: str):
    return define(NAME, fn)[fn]


@pytest.mark.parametrize("fn", FUNCTIONS)
@pytest.mark.parametrize("hidden", [False, True])
def test_model_answer_passes(fn, hidden):
    line = getattr(a5_classifier, f"check_{fn}")(model_answer(fn), hidden=hidden)
    assert line.startswith("ok: ")


MISTAKES = load_mistakes(NAME)


def test_every_function_has_a_listed_mistake():
    assert {m["cell"] for m in MISTAKES} == set(FUNCTIONS)


@pytest.mark.parametrize("mistake", MISTAKES, ids=[m["message"][:40] for m in MISTAKES])
@pytest.mark.parametrize("hidden", [False, True])
def test_each_mistake_fails_naming_it(mistake, hidden):
    wrong = define(NAME, mistake["cell"], mistake["source"])[mistake["cell"]]
    check = getattr(a5_classifier, mistake["test"].replace("test_", "check_", 1))
    with pytest.raises(CheckFailed) as info:
        check(wrong, hidden=hidden)
    assert mistake["message"] in str(info.value)


@pytest.mark.parametrize("fn", FUNCTIONS)
def test_a_stub_fails_saying_not_implemented(fn):
    def stub(*args, **kwargs):
        raise NotImplementedError()

    with pytest.raises(CheckFailed, match=f"{fn} is not implemented yet"):
        getattr(a5_classifier, f"check_{fn}")(stub)


def test_pairs_in_another_draw_order_are_accepted():
    import torch

    def noise_first(x0, grid, generator):
        z = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
        y = torch.randint(0, grid.numel(), (x0.shape[0],), generator=generator)
        return x0 + grid[y][:, None] * z, y

    assert "another order" in a5_classifier.check_training_pairs(noise_first, hidden=True)


def test_the_reference_kl_is_the_library_kl():
    """reference_kl on exact log p and a network's logits equals calibration.kl_to_exact's per-sample mean."""
    import torch

    from dmcmc_edu.core.schedules import noise_level_grid
    from dmcmc_edu.evaluation.calibration import kl_to_exact
    from dmcmc_edu.models.classifier import MLPClassifier, NoiseLevelClassifier, noisy_batch
    from dmcmc_edu.targets import ring

    mix = ring()
    grid = noise_level_grid(0.01, 10.0, 12)
    torch.manual_seed(0)
    clf = NoiseLevelClassifier(MLPClassifier(2, 12, hidden=8, depth=1), grid)
    lib = kl_to_exact(clf, mix, n=50, generator=torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    x, _ = noisy_batch(mix.sample(50, g), grid, g)
    with torch.no_grad():
        mine = a5_classifier.reference_kl(mix.sigma_log_posterior(x, grid), clf.logits_uncounted(x))
    assert mine == pytest.approx(lib["kl"], rel=1e-6)
