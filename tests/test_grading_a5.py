"""The checks of assignment A5 (dmcmc_edu.grading.a5_classifier). Beyond what tests/test_grading_common.py checks for
every assignment: pairs drawn in another order are accepted when their distribution is right."""
import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

from dmcmc_edu.grading import a5_classifier  # noqa: E402


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
