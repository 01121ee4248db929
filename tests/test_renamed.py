"""Stored configs that name a class by the module it lived in before a move still load."""

from __future__ import annotations

import pytest
from hydra.utils import get_object

from deepfake_exp.inference.safe import is_allowed_target
from deepfake_exp.utils.renamed import RENAMED_TARGETS, current_target, upgrade_targets


@pytest.mark.parametrize("old, new", sorted(RENAMED_TARGETS.items()))
def test_each_renamed_target_resolves_where_it_lives_now(old: str, new: str) -> None:
    with pytest.raises(ImportError):  # the old name is gone: the table is what keeps runs
        get_object(old)
    assert get_object(new) is not None
    assert is_allowed_target(old) and is_allowed_target(new)


def test_upgrade_renames_nested_targets_and_leaves_the_rest() -> None:
    old = "deepfake_exp.train.HistoryCSVLogger"
    stored = {
        "logger": {"csv": {"_target_": old, "name": "csv"}},
        "callbacks": [{"_target_": "pytorch_lightning.callbacks.ModelCheckpoint"}],
        "note": old,  # a plain value that happens to look like a target is not a target
    }
    upgraded = upgrade_targets(stored)
    assert upgraded["logger"]["csv"]["_target_"] == RENAMED_TARGETS[old]
    assert upgraded["callbacks"][0]["_target_"] == "pytorch_lightning.callbacks.ModelCheckpoint"
    assert upgraded["note"] == old
    assert stored["logger"]["csv"]["_target_"] == old  # the input is not modified
    assert current_target("deepfake_exp.models.backbones.TorchvisionBackbone") == (
        "deepfake_exp.models.backbones.TorchvisionBackbone"
    )
