"""The DICOM node under load: warm latency beyond inference, series per minute, and peak memory.

A node (:class:`unet_med.serve.node.Node`, in this process, the reference bundle ``bundles/unet`` and optionally a
second bundle loaded beside it) listens on a free localhost port and sends its results to a pynetdicom Storage SCP
standing in for the PACS, which records when each SEG arrives. Series are small synthetic MR series
(40 x 44 x 20 images, new UIDs each, ``tests/serve/node_helpers.py``); ``--sts`` adds STS_019 with the sarcoma
bundle.

1. Warm latency: after one warm-up series, ``--latency`` series are sent one at a time; for each, the time from
   the C-STORE of its last instance to its SEG stored at the destination, minus ``--complete-after`` (the quiet
   period the node must wait) and minus the inference time the predictor reports (``CaseResult.seconds``), is the
   node's own overhead: reading the series, writing the SEG, queue transitions and the C-STORE out.
2. Throughput: ``--load`` series are sent back to back (one association each, as a PACS sends them); series per
   minute from the first instance sent to the last SEG stored (``sending_s``: how long sending them took), and a
   check that exactly one SEG arrived per series.
3. Peak memory: the process's maximum resident set size (``ru_maxrss``) after both runs.

Usage::

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_serve.py --load 20 --latency 5 --json bench_serve.json
    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_serve.py --second-bundle bundles/hippocampus_mri
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--load", type=int, default=20, help="series sent at once (default 20)")
    parser.add_argument("--latency", type=int, default=5, help="series timed one at a time (default 5)")
    parser.add_argument("--complete-after", type=float, default=1.0)
    parser.add_argument("--second-bundle", default=None, help="a second bundle loaded beside bundles/unet")
    parser.add_argument("--sts", default=None, help="STS_019's CT folder: also time it with bundles/sarcoma_ct")
    parser.add_argument("--verbose", action="store_true", help="the node's log on stderr")
    parser.add_argument("--json", default=None, help="write the figures here")
    args = parser.parse_args()

    import pydicom
    import torch

    from tests.serve.node_helpers import RecordingSCP, free_port, send_series, synthetic_series
    from unet_med.inference.predictor import Predictor
    from unet_med.serve.node import Node
    from unet_med.serve.queue import series_key
    from unet_med.serve.sender import Destination

    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(asctime)s %(name)s: %(message)s"
    )
    for name in ("pynetdicom", "highdicom"):
        logging.getLogger(name).setLevel(logging.WARNING)
    torch.set_num_threads(2)
    infer_seconds: dict[str, float] = {}
    original = Predictor.predict_case

    def timed(self, path, output_dir):  # records each series' inference time
        result = original(self, path, output_dir)
        infer_seconds[Path(path).name] = result.seconds.get("infer", 0.0)
        return result

    Predictor.predict_case = timed  # type: ignore[method-assign]

    pacs = RecordingSCP()

    def arrivals() -> dict[str, float]:
        return {str(d.ReferencedSeriesSequence[0].SeriesInstanceUID): t for d, t in zip(pacs.received, pacs.arrived)}

    bundles = {"unet": REPO / "bundles" / "unet"}
    if args.second_bundle:
        bundles[Path(args.second_bundle).name] = Path(args.second_bundle)
    if args.sts:
        bundles["sarcoma_ct"] = REPO / "bundles" / "sarcoma_ct"
    figures: dict = {"bundles": list(bundles), "complete_after_s": args.complete_after}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        port = free_port()
        t0 = time.perf_counter()
        node = Node(tmp / "work", bundles, Destination.parse(pacs.destination), port=port,
                    complete_after=args.complete_after, reserve_bytes=0, poll=0.05, device="cpu")  # fmt: skip
        figures["start_s"] = round(time.perf_counter() - t0, 2)
        thread = threading.Thread(target=node.serve_forever, daemon=True)
        thread.start()

        def run_one(folder: Path) -> float:
            uid = str(pydicom.dcmread(next(folder.iterdir())).SeriesInstanceUID)
            send_series(folder, port)
            sent = time.perf_counter()
            while uid not in arrivals():
                time.sleep(0.01)
            return arrivals()[uid] - sent - args.complete_after - infer_seconds[series_key(uid)]

        run_one(synthetic_series(tmp / "warm", seed=99))
        overheads = [run_one(synthetic_series(tmp / f"lat{k}", seed=k)) for k in range(args.latency)]
        figures["latency_overhead_s"] = {
            "median": round(statistics.median(overheads), 2),
            "max": round(max(overheads), 2),
            "series": len(overheads),
        }
        if args.sts:
            figures["sts_019_overhead_s"] = round(run_one(Path(args.sts)), 2)

        folders = [synthetic_series(tmp / f"load{k}", seed=100 + k) for k in range(args.load)]
        uids = {str(pydicom.dcmread(next(f.iterdir())).SeriesInstanceUID) for f in folders}
        before = len(pacs.received)
        start = time.perf_counter()
        for folder in folders:
            send_series(folder, port)
        all_sent = time.perf_counter() - start
        while not uids <= set(arrivals()):
            time.sleep(0.05)
        elapsed = time.perf_counter() - start
        time.sleep(1.0)
        segs = pacs.received[before:]
        figures["load"] = {
            "series": args.load,
            "seconds": round(elapsed, 1),
            "sending_s": round(all_sent, 1),
            "series_per_minute": round(60 * args.load / elapsed, 1),
            "segs_received": len(segs),
            "one_seg_per_series": sorted(str(d.ReferencedSeriesSequence[0].SeriesInstanceUID) for d in segs)
            == sorted(uids),
            "median_inference_s": round(statistics.median(infer_seconds.values()), 2),
        }
        node.stop()
        thread.join(timeout=30)
    pacs.stop()
    figures["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(figures, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
