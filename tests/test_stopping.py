from types import SimpleNamespace

import pytest
import torch

from callbacks import MaskStoppingRule


class FakeStrategy:
    def reduce_boolean_decision(self, decision, all=True):
        return decision


def _trainer(clean, masked, l1, lr=0.01):
    optimizer = SimpleNamespace(param_groups=[{"lr": lr}])
    metrics = {
        "val/clean_acc": torch.tensor(clean),
        "val/masked_acc": torch.tensor(masked),
        "val/mask_l1": torch.tensor(l1),
    }
    return SimpleNamespace(
        callback_metrics=metrics,
        optimizers=[optimizer],
        strategy=FakeStrategy(),
        should_stop=False,
        current_epoch=0,
    )


def _run(rule, epochs):
    stops = []
    for epoch in epochs:
        trainer = _trainer(*epoch)
        rule.on_train_epoch_end(trainer, None)
        stops.append(trainer.should_stop)
    return stops


def test_stops_after_patience_settled_accurate_epochs():
    rule = MaskStoppingRule(tolerance=1e-3, patience=2)
    epochs = [(0.9, 0.9, 0.5), (0.9, 0.9, 0.5), (0.9, 0.9, 0.5)]
    assert _run(rule, epochs) == [False, False, True]


def test_an_inaccurate_epoch_resets_the_count():
    rule = MaskStoppingRule(tolerance=1e-3, patience=2)
    epochs = [(0.9, 0.9, 0.5), (0.9, 0.9, 0.5), (0.9, 0.5, 0.5), (0.9, 0.9, 0.5), (0.9, 0.9, 0.5)]
    assert _run(rule, epochs) == [False, False, False, False, True]


def test_moving_mask_and_warm_up_reset_the_count():
    rule = MaskStoppingRule(tolerance=1e-3, patience=2)
    assert _run(rule, [(0.9, 0.9, 0.5), (0.9, 0.9, 0.4), (0.9, 0.9, 0.4)]) == [False] * 3
    rule = MaskStoppingRule(tolerance=1e-3, patience=2)
    warm_up = [(0.9, 0.9, 0.5, 1e-4), (0.9, 0.9, 0.5, 2e-4), (0.9, 0.9, 0.5, 3e-4)]
    assert _run(rule, warm_up) == [False] * 3


def test_bad_arguments():
    with pytest.raises(ValueError, match="accuracy_ratio"):
        MaskStoppingRule(accuracy_ratio=1.5)
    with pytest.raises(ValueError, match="patience"):
        MaskStoppingRule(patience=0)
