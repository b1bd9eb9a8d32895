"""Tests for unet_med.engines.case_metrics: hand-computed metrics, empty masks, a real evaluator run, ranks."""

from __future__ import annotations

import csv
import json
import math
import multiprocessing
import os
import socket
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from monai.data import MetaTensor

from unet_med.engines import METRIC_NAMES, CaseMetricsReport, case_metrics, summarize_case_metrics

SPACING_3D = (1.0, 1.0, 2.5)


def cube_onehot(start: int = 2, size: int = 4, shift: int = 0, spatial_dims: int = 3, n: int = 10) -> torch.Tensor:
    """(2, n, n[, n]) one-hot of a ``size``-wide square/cube at ``start``, moved ``shift`` voxels on the last axis."""
    fg = torch.zeros((n,) * spatial_dims)
    box = [slice(start, start + size)] * spatial_dims
    box[-1] = slice(start + shift, start + shift + size)
    fg[tuple(box)] = 1
    return torch.stack([1 - fg, fg])


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# --- the math --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_shifted_cube_dice_hd95_surface_dice(spatial_dims: int) -> None:
    label = cube_onehot(spatial_dims=spatial_dims)
    pred = cube_onehot(shift=2, spatial_dims=spatial_dims)
    spacing = SPACING_3D[-spatial_dims:]  # 2.5 mm along the shifted axis
    (row,) = case_metrics(pred, label, spacing=spacing, surface_tolerance_mm=5.0)
    # overlap is half of each box (2 of 4 slices along the shift): Dice = 2 * (V / 2) / (2 * V) = 0.5
    assert row["class_index"] == 1 and row["class_name"] == "class_1"
    assert row["dice"] == pytest.approx(0.5)
    # the far face of each box is 2 slices x 2.5 mm from the other box's nearest face; everything else is closer
    assert row["hd95_mm"] == pytest.approx(5.0)
    assert row["surface_dice"] == pytest.approx(1.0)
    (strict,) = case_metrics(pred, label, spacing=spacing, surface_tolerance_mm=4.9)
    assert strict["surface_dice"] < 1.0
    assert strict["dice"] == row["dice"] and strict["hd95_mm"] == row["hd95_mm"]


def test_surface_dice_hand_count_3d() -> None:
    # 4x4x4 cube edges: 64 - 8 = 56 voxels per mask. With tolerance below 5 mm only the 16 voxels of each far face
    # (exactly 5 mm from the other surface) miss: (40 + 40) / (56 + 56).
    (row,) = case_metrics(cube_onehot(shift=2), cube_onehot(), spacing=SPACING_3D, surface_tolerance_mm=4.9)
    assert row["surface_dice"] == pytest.approx(80 / 112)


def test_isotropic_spacing_and_default_spacing() -> None:
    pred, label = cube_onehot(shift=2), cube_onehot()
    assert case_metrics(pred, label)[0]["hd95_mm"] == pytest.approx(2.0)  # spacing None -> 1
    assert case_metrics(pred, label, spacing=0.5)[0]["hd95_mm"] == pytest.approx(1.0)


def test_identical_masks() -> None:
    label = cube_onehot()
    (row,) = case_metrics(label.clone(), label, spacing=SPACING_3D)
    assert row == {"class_index": 1, "class_name": "class_1", "dice": 1.0, "hd95_mm": 0.0, "surface_dice": 1.0}


def test_empty_conventions() -> None:
    # channel 1: empty in both; channel 2: only in pred; channel 3: only in label
    label = torch.zeros(4, 6, 6, 6)
    label[3, 1:3, 1:3, 1:3] = 1
    label[0] = 1 - label[3]
    pred = torch.zeros(4, 6, 6, 6)
    pred[2, 3:5, 3:5, 3:5] = 1
    pred[0] = 1 - pred[2]
    rows = {r["class_index"]: r for r in case_metrics(pred, label, spacing=SPACING_3D)}
    assert all(math.isnan(rows[1][m]) for m in METRIC_NAMES)
    for c in (2, 3):
        assert rows[c]["dice"] == 0.0
        assert rows[c]["hd95_mm"] == math.inf
        assert rows[c]["surface_dice"] == 0.0


def test_no_monai_warnings_for_empty_masks(recwarn: pytest.WarningsRecorder) -> None:
    empty = torch.zeros(2, 5, 5)
    empty[0] = 1
    case_metrics(empty, empty)
    assert not [w for w in recwarn if "nan/inf distance" in str(w.message)]


def test_class_names_background_and_tolerance_per_class() -> None:
    label = torch.cat([cube_onehot(), cube_onehot()[1:]])  # channels: bg, fg, fg again
    rows = case_metrics(
        label,
        label,
        class_names=["bg", "liver", "tumour"],
        include_background=True,
        surface_tolerance_mm=[0.0, 1.0, 2.0],
    )
    assert [(r["class_index"], r["class_name"]) for r in rows] == [(0, "bg"), (1, "liver"), (2, "tumour")]
    named = case_metrics(label, label, class_names={2: "tumour"})
    assert [r["class_name"] for r in named] == ["class_1", "tumour"]


@pytest.mark.parametrize(
    ("pred", "label", "kwargs", "error"),
    [
        (cube_onehot(), cube_onehot(n=8), {}, ValueError),  # shapes differ
        (cube_onehot() * 0.7, cube_onehot(), {}, ValueError),  # probabilities, not one-hot
        (torch.zeros(2, 4), torch.zeros(2, 4), {}, ValueError),  # 1D
        (cube_onehot().numpy(), cube_onehot(), {}, TypeError),
        (cube_onehot(), cube_onehot(), {"surface_tolerance_mm": [1.0, 2.0]}, ValueError),  # one class evaluated
        (cube_onehot(), cube_onehot(), {"surface_tolerance_mm": -1.0}, ValueError),
        (cube_onehot(), cube_onehot(), {"spacing": (1.0, 1.0)}, ValueError),
        (cube_onehot(), cube_onehot(), {"spacing": 0.0}, ValueError),
        (cube_onehot(), cube_onehot(), {"class_names": ["liver"]}, ValueError),  # a list names every channel
        (cube_onehot()[:1], cube_onehot()[:1], {}, ValueError),  # background only
    ],
)
def test_bad_arguments(pred, label, kwargs, error) -> None:
    with pytest.raises(error):
        case_metrics(pred, label, **kwargs)


def test_summary_skips_nan_and_counts_inf() -> None:
    rows = [
        {"case": "a", "class_index": 1, "class_name": "x", "dice": 0.5, "hd95_mm": 2.0, "surface_dice": 1.0},
        {"case": "b", "class_index": 1, "class_name": "x", "dice": 1.0, "hd95_mm": 4.0, "surface_dice": 0.5},
        {"case": "c", "class_index": 1, "class_name": "x", "dice": 0.0, "hd95_mm": math.inf, "surface_dice": 0.0},
        {"case": "a", "class_index": 2, "class_name": "y", "dice": math.nan, "hd95_mm": math.nan, "surface_dice": 0},
        {"case": "b", "class_index": 2, "class_name": "y", "dice": 0.8, "hd95_mm": 1.0, "surface_dice": 1.0},
    ]
    summary = summarize_case_metrics(rows)
    x, y = summary["classes"]["x"], summary["classes"]["y"]
    assert x["dice"] == {
        "mean": 0.5,
        "std": pytest.approx(math.sqrt(1 / 6)),
        "median": 0.5,
        "n": 3,
        "n_nan": 0,
        "n_inf": 0,
    }
    assert x["hd95_mm"] == {"mean": 3.0, "std": 1.0, "median": 3.0, "n": 2, "n_nan": 0, "n_inf": 1}
    assert y["dice"]["mean"] == pytest.approx(0.8) and y["dice"]["n"] == 1 and y["dice"]["n_nan"] == 1
    assert summary["mean_dice"] == pytest.approx((0.5 + 0.8) / 2)
    assert summary["num_cases"] == 3
    assert summary["key_metric"] == "mean_dice" and summary["metric_names"] == list(METRIC_NAMES)
    json.dumps(summary, allow_nan=False)  # strict JSON: no NaN or inf anywhere


def test_summary_of_all_nan_class_is_null() -> None:
    nan = math.nan
    rows = [{"case": "a", "class_index": 1, "class_name": "x", "dice": nan, "hd95_mm": nan, "surface_dice": nan}]
    summary = summarize_case_metrics(rows)
    assert summary["classes"]["x"]["dice"]["mean"] is None and summary["mean_dice"] is None
    json.dumps(summary, allow_nan=False)


# --- the handler in a real evaluator ---------------------------------------------------------------------------------


def make_case(name: str | None, shift: int, with_meta: bool) -> dict:
    """image = one-hot of the prediction (the network is the identity), label = class indices of the cube."""
    label = cube_onehot().argmax(0, keepdim=True).float()
    image = cube_onehot(shift=shift)
    if with_meta:
        affine = torch.diag(torch.tensor([*SPACING_3D, 1.0], dtype=torch.float64))
        image = MetaTensor(image, affine=affine, meta={"filename_or_obj": f"/data/images/{name}"})
        label = MetaTensor(label, affine=affine, meta={"filename_or_obj": f"/data/labels/{name}"})
    return {"image": image, "label": label}


def run_evaluator(cases: list[dict], report: CaseMetricsReport) -> None:
    from monai.data import DataLoader, Dataset
    from monai.engines import SupervisedEvaluator
    from monai.transforms import AsDiscreted, Compose

    post = Compose([AsDiscreted(keys="pred", argmax=True, to_onehot=2), AsDiscreted(keys="label", to_onehot=2)])
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=DataLoader(Dataset(cases), batch_size=2, num_workers=0),
        network=torch.nn.Identity(),
        postprocessing=post,
        decollate=True,
    )
    report.attach(evaluator)
    report.attach(evaluator)  # idempotent
    evaluator.run()


def test_evaluator_run_writes_csv_and_summary(tmp_path: Path) -> None:
    cases = [make_case("a.nii.gz", 0, True), make_case("b.nii.gz", 2, True), make_case("c.nii.gz", 1, True)]
    out = tmp_path / "eval"
    report = CaseMetricsReport(out, class_names={1: "cube"}, surface_tolerance_mm=2.5)
    run_evaluator(cases, report)

    assert sorted(os.listdir(out)) == ["metrics.csv", "summary.json"]  # nothing half-written left behind
    rows = read_csv(out / "metrics.csv")
    assert list(rows[0]) == ["case", "class_index", "class_name", "dice", "hd95_mm", "surface_dice"]
    assert [r["case"] for r in rows] == [f"/data/labels/{c}.nii.gz" for c in "abc"]  # named by the label's file
    assert {r["class_index"] for r in rows} == {"1"} and {r["class_name"] for r in rows} == {"cube"}
    # shifts of 0, 2 and 1 slices of 2.5 mm: Dice 1, 1/2, 3/4; HD95 0, 5, 2.5 mm (spacing read from the affine)
    assert [float(r["dice"]) for r in rows] == pytest.approx([1.0, 0.5, 0.75])
    assert [float(r["hd95_mm"]) for r in rows] == pytest.approx([0.0, 5.0, 2.5])
    nsd = [float(r["surface_dice"]) for r in rows]
    assert nsd[0] == nsd[2] == pytest.approx(1.0) and nsd[1] < 1.0

    summary = json.loads((out / "summary.json").read_text())
    cube = summary["classes"]["cube"]
    assert summary["num_cases"] == 3 and cube["class_index"] == 1 and cube["surface_tolerance_mm"] == 2.5
    assert cube["dice"]["n"] == 3 and cube["dice"]["mean"] == pytest.approx(0.75)
    assert cube["dice"]["median"] == pytest.approx(0.75)
    assert cube["hd95_mm"]["mean"] == pytest.approx(2.5)
    assert summary["mean_dice"] == pytest.approx(0.75)
    assert report.summary == summary and len(report.rows) == 3


def test_plain_tensors_named_by_index_with_unit_spacing(tmp_path: Path) -> None:
    report = CaseMetricsReport(tmp_path, csv_name="cases.csv", summary_name="s.json")
    run_evaluator([make_case(None, 2, False), make_case(None, 0, False), make_case(None, 2, False)], report)
    rows = read_csv(tmp_path / "cases.csv")
    assert [r["case"] for r in rows] == ["0", "1", "2"]
    assert [float(r["hd95_mm"]) for r in rows] == pytest.approx([2.0, 0.0, 2.0])  # voxels, spacing 1
    assert sorted(os.listdir(tmp_path)) == ["cases.csv", "s.json"]


def test_new_run_starts_a_new_report(tmp_path: Path) -> None:
    report = CaseMetricsReport(tmp_path)
    run_evaluator([make_case("a", 0, True)], report)
    run_evaluator([make_case("b", 2, True)], report)
    assert [r["case"] for r in read_csv(tmp_path / "metrics.csv")] == ["/data/labels/b"]


def test_batch_first_dict_output_is_decollated(tmp_path: Path) -> None:
    pred = torch.stack([cube_onehot(), cube_onehot(shift=2)])
    engine = SimpleNamespace(state=SimpleNamespace(output={"pred": pred, "label": torch.stack([cube_onehot()] * 2)}))
    report = CaseMetricsReport(tmp_path)
    report.iteration_completed(engine)
    assert [(r["case"], r["dice"]) for r in report.rows] == [("0", 1.0), ("1", 0.5)]


def test_missing_key_and_bad_output(tmp_path: Path) -> None:
    report = CaseMetricsReport(tmp_path, pred_key="seg")
    with pytest.raises(KeyError, match="seg"):
        report.iteration_completed(SimpleNamespace(state=SimpleNamespace(output=[{"pred": 0, "label": 0}])))
    with pytest.raises(TypeError, match="list of per-case dicts"):
        report.iteration_completed(SimpleNamespace(state=SimpleNamespace(output=torch.zeros(2))))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"surface_tolerance_mm": math.inf},
        {"surface_tolerance_mm": [1.0, -2.0]},
        {"csv_name": "a/b.csv"},
        {"csv_name": "x", "summary_name": "x"},
    ],
)
def test_handler_bad_arguments(tmp_path: Path, kwargs: dict) -> None:
    with pytest.raises(ValueError):
        CaseMetricsReport(tmp_path, **kwargs)


def test_failed_write_keeps_previous_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    report = CaseMetricsReport(tmp_path)
    run_evaluator([make_case("a", 0, True)], report)
    before = (tmp_path / "metrics.csv").read_bytes()

    def broken(self, rows):
        raise OSError("disk full")

    monkeypatch.setattr(csv.DictWriter, "writerows", broken)
    with pytest.raises(OSError, match="disk full"):
        report.completed(SimpleNamespace())
    assert (tmp_path / "metrics.csv").read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["metrics.csv", "summary.json"]


# --- distributed: two gloo ranks on CPU ------------------------------------------------------------------------------


def _rank_main(rank: int, port: int, out: str, queue) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        report = CaseMetricsReport(out)
        # rank 1 also sees case "a": a padding sampler repeats a case to even out the ranks
        names = ["a", "b"] if rank == 0 else ["c", "a"]
        shifts = [0, 2] if rank == 0 else [1, 0]
        affine = torch.diag(torch.tensor([*SPACING_3D, 1.0], dtype=torch.float64))
        output = [
            {
                "pred": cube_onehot(shift=s),
                "label": MetaTensor(cube_onehot(), affine=affine, meta={"filename_or_obj": n}),
            }
            for n, s in zip(names, shifts, strict=True)
        ]
        engine = SimpleNamespace(state=SimpleNamespace(output=output))
        report.iteration_completed(engine)
        report.completed(engine)
        queue.put((rank, [r["case"] for r in report.rows], report.summary["num_cases"]))
    finally:
        dist.destroy_process_group()


def test_distributed_gather_and_rank0_writes(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_rank_main, args=(r, port, str(tmp_path), queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = sorted(queue.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    expected = ["a", "b", "c"]
    assert results == [(0, expected, 3), (1, expected, 3)]  # every rank holds all rows, the repeat dropped
    assert sorted(os.listdir(tmp_path)) == ["metrics.csv", "summary.json"]  # written once, by rank 0
    rows = read_csv(tmp_path / "metrics.csv")
    assert [r["case"] for r in rows] == expected
    assert [float(r["dice"]) for r in rows] == pytest.approx([1.0, 0.5, 0.75])
