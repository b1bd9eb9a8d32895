"""The membrane CV report: per-image ISBI figures of the out-of-fold label maps, summarised over images."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unet_med.bundle.cv_membranes import membrane_markdown, membrane_rows, summarize_images


def _case(name: str, fold: int, pred: np.ndarray, truth: np.ndarray) -> dict:
    return {"case": name, "fold": fold, "pred": torch.as_tensor(pred), "truth": truth, "to_input": lambda m: m}


def test_rows_score_the_membrane_class_and_the_summary_spreads_over_images():
    truth = np.zeros((32, 32), dtype=np.int64)
    truth[:, 15:17] = 1  # one membrane line between two cells
    perfect = truth.copy()
    thick = truth.copy()
    thick[:, 13:19] = 1  # 4 of 1024 pixels wrong per row
    rows = membrane_rows([_case("a", 0, perfect, truth), _case("b", 1, thick, truth[None])])
    assert [r["case"] for r in rows] == ["a", "b"] and rows[0]["pixel_error"] == 0.0
    assert rows[1]["pixel_error"] == pytest.approx(4 * 32 / 1024)
    assert rows[0]["membrane_dice"] == 1.0 and rows[1]["membrane_dice"] < 1.0
    summary = summarize_images(rows)
    assert summary["num_cases"] == 2
    assert summary["pixel_error"]["mean"] == pytest.approx(rows[1]["pixel_error"] / 2)
    assert summary["pixel_error"]["std"] == pytest.approx(rows[1]["pixel_error"] / 2)
    assert summary["pixel_error"]["max"] == rows[1]["pixel_error"]
    report = {"bundle": "em", "num_folds": 2, "num_cases": 2, "summary": summary, "cases": rows}
    text = membrane_markdown(report)
    assert "| pixel error |" in text and text.index("| b |") < text.index("| a |")  # worst image first


def test_a_prediction_on_another_grid_is_refused():
    truth = np.zeros((8, 8), dtype=np.int64)
    with pytest.raises(ValueError, match="differ in shape"):
        membrane_rows([_case("a", 0, np.zeros((8, 9), dtype=np.int64), truth)])
