"""The one precedence rule for post-processing thresholds (``tuning.choose_thresholds``,
``tuning.choose_agglomeration``): given, then learned on validation, then the defaults;
what ``emseg segment`` and the notebooks' real-data tables both use."""

from __future__ import annotations

from pathlib import Path

import pytest

from emseg_lib.errors import EmsegInputError
from emseg_lib.postprocess import get_method
from emseg_lib.scoring.tuning import choose_agglomeration, choose_thresholds, learned_entry
from emseg_lib.train import Checkpoint

LEARNED = {"method": "thesis", "epoch": 4, "dims": 2, "protocol": "cremi", "split": "val",
           "thresholds": {"thesis": {"sig_th": 0.6, "edge_th": 0.7},
                          "seeded": {"seed_th": 0.8, "smooth_px": 1.0, "min_seed_px": 20.0}}}
NONE_GIVEN = {"sig_th": None, "edge_th": None}


def test_learned_thresholds_win_over_the_defaults():
    chosen = choose_thresholds(None, NONE_GIVEN, LEARNED, 2)
    assert chosen.method == "thesis"  # the learned default method
    assert chosen.thresholds == {"sig_th": 0.6, "edge_th": 0.7}
    assert chosen.source == "learned on the validation split at epoch 4"


def test_given_thresholds_win_over_the_learned_ones():
    chosen = choose_thresholds(None, {"sig_th": 0.5, "edge_th": None}, LEARNED, 2,
                               given_by="from the command line")
    assert chosen.thresholds == {"sig_th": 0.5, "edge_th": 0.7}
    assert chosen.source.startswith("sig_th from the command line; otherwise learned")


def test_thresholds_learned_in_another_dimension_are_not_used():
    chosen = choose_thresholds("thesis", NONE_GIVEN, LEARNED, 3)
    assert chosen.thresholds == get_method("thesis").default_thresholds(3)
    assert "learned in 2D" in chosen.source


def test_without_learned_thresholds_the_defaults():
    chosen = choose_thresholds(None, {}, None, 2, from_checkpoint=True)
    assert chosen.method == "seeded" and chosen.thresholds == {}  # seed_th etc. derived
    assert chosen.source == "method defaults: the checkpoint has no learned thresholds"


def test_agglomeration_precedence():
    learned = {"method": "waterz", "epoch": 2, "thresholds": {"waterz": {"threshold": 0.3}}}
    assert choose_agglomeration("waterz", 0.7, learned) == (0.7, "threshold given")
    assert choose_agglomeration("waterz", None, learned)[0] == 0.3
    assert choose_agglomeration("mws", None, learned) == (0.5, "method default")


def test_a_checkpoint_carries_its_checked_learned_entry():
    assert Checkpoint(Path("best.pt"), {"postprocess": LEARNED}).learned == LEARNED
    assert Checkpoint(Path("best.pt"), {}).learned is None
    with pytest.raises(EmsegInputError, match="best.pt: its learned post-processing entry"):
        learned_entry({"method": "no such method", "epoch": 1, "thresholds": {}},
                      Path("best.pt"))
