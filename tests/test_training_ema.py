"""The score training's EMA (torch.optim.swa_utils.AveragedModel) against a hand computation."""

from __future__ import annotations

import torch

from dmcmc_edu.models.unet import UNetConfig
from dmcmc_edu.training.score import ScoreTrainingConfig, _new_ema, _start_run, train_score_model

TINY = UNetConfig(channels=[8, 16, 16], attention=True, emb_dim=32)


def _decay(t: int, cap: float = 0.999) -> float:
    return min(cap, (1 + t) / (10 + t))


def test_ema_of_set_weights_matches_the_hand_formula():
    """ema_0 = w_0; ema_{t+1} = d_t ema_t + (1 - d_t) w_{t+1}, d_t = min(cap, (1 + t) / (10 + t)), over 6 steps."""
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    cap = 0.3  # reached at t = 1 (2/11 < 0.3 < 3/12): both branches of the min are used
    ema = _new_ema(model, cap)
    hand = {k: v.detach().clone().double() for k, v in model.state_dict().items()}
    g = torch.Generator().manual_seed(1)
    for t in range(6):
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.randn(p.shape, generator=g))
        ema.multi_avg_fn.step = t
        ema.update_parameters(model)
        d = _decay(t, cap)
        hand = {k: d * hand[k] + (1 - d) * v.detach().double() for k, v in model.state_dict().items()}
    got = ema.module.state_dict()
    for k in hand:
        torch.testing.assert_close(got[k].double(), hand[k], rtol=0, atol=1e-6)
    assert int(ema.n_averaged) == 7  # the copy at creation + 6 averages


def test_ema_in_the_training_loop_matches_the_hand_formula(tmp_path):
    """Train 1 step, then resume one step at a time to 4.

    The checkpoint's EMA is 0.1 w0 + 0.9 w1 after step 1, then d_t ema_t + (1 - d_t) w_{t+1}.
    """
    g = torch.Generator().manual_seed(0)
    data = torch.rand(32, 1, 28, 28, generator=g)
    cfg = ScoreTrainingConfig(steps=1, batch_size=4, warmup_steps=1)
    w0 = {k: v.detach().clone() for k, v in _start_run(cfg, TINY, torch.device("cpu"), None).model.state_dict().items()}
    train_score_model(tmp_path, data, model_config=TINY, config=cfg, progress=False)
    c1 = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert c1["step"] == 1
    assert any(not torch.equal(w1, w0[k]) for k, w1 in c1["model"].items())
    for k, w1 in c1["model"].items():
        torch.testing.assert_close(c1["ema"][k], 0.1 * w0[k] + 0.9 * w1, rtol=0, atol=1e-6)
    prev = c1
    for step in (2, 3, 4):  # each call resumes the last one for one step
        cfg.steps = step
        train_score_model(tmp_path, data, model_config=TINY, config=cfg, progress=False)
        c = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
        d = _decay(step - 1)
        for k, w in c["model"].items():
            torch.testing.assert_close(c["ema"][k], d * prev["ema"][k] + (1 - d) * w, rtol=0, atol=1e-6)
        prev = c
    moved = sum(not torch.allclose(prev["ema"][k], w, atol=1e-7) for k, w in prev["model"].items())
    assert moved > len(w0) // 2, moved  # the average differs from the weights for most tensors: a real test
    saved = torch.load(tmp_path / "score_model.pt", weights_only=True)  # the weights written are the EMA
    for k, v in prev["ema"].items():
        assert torch.equal(saved[k], v)
