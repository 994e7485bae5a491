"""The plateau schedule (a function of the validation losses so far) and linear warm-up."""

from __future__ import annotations

import pytest

from mlpbp.engine.schedules import learning_rate_at


def test_plateau_halves_after_step_size_epochs_without_a_better_loss():
    losses = [1.0, 0.9, 0.95, 0.93, 0.92, 0.8, 0.85, 0.86, 0.87, 0.9, 0.91, None, 0.92]
    rates = [learning_rate_at(e, 1.0, "plateau", step_size=3, gamma=0.5, val_losses=losses) for e in range(14)]
    # best 0.9 at epoch 1; epochs 2-4 no better: halved from epoch 5; 0.8 at 5 resets the count;
    # 6-8 no better: halved again from 9; 9-10 and 12 (11 had none) no better: again from 13
    assert rates == [1, 1, 1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.25, 0.125]


def test_warmup_rises_linearly_to_the_schedule():
    rates = [learning_rate_at(e, 0.1, "cosine", epochs=10, warmup=3) for e in range(5)]
    assert rates[:3] == pytest.approx([learning_rate_at(e, 0.1, "cosine", epochs=10) * (e + 1) / 4 for e in range(3)])
    assert rates[3:] == pytest.approx([learning_rate_at(e, 0.1, "cosine", epochs=10) for e in (3, 4)])
    assert learning_rate_at(0, 0.1, "constant", warmup=4) == pytest.approx(0.02)
