"""What the per-run integrity check costs: a packed, signed bundle compared with its manifest, as ``unet-med
predict`` and ``unet-med bundle run`` do on every run, against recognition itself.

The bundle (default ``bundles/em_membranes``, 20.8 MB) is packed with a fresh key, unpacked, then
:func:`unet_med.bundle.integrity.check_integrity` is timed ``--repeats`` times each way: hashing every file from
disk; the same with the signature checked against a pinned key; and hashing the bytes recognition already read
(what the gate does). Medians and minima in milliseconds, and recognition's best time, are printed.

Usage::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_integrity.py [--bundle bundles/em_membranes] [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from unet_med.bundle.integrity import check_integrity
from unet_med.bundle.pack import pack_bundle, unpack_bundle
from unet_med.bundle.recognize import recognize_bundle
from unet_med.bundle.signing import generate_key


def _times(repeats: int, run) -> list[float]:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        out.append((time.perf_counter() - start) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default="bundles/em_membranes")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "pinned").mkdir()
        generate_key(work / "sender.pem", work / "pinned" / "sender.pub.pem")
        zip_path = pack_bundle(args.bundle, work / "bundle.zip", key=work / "sender.pem", signer="bench")
        root = unpack_bundle(zip_path, work / "received")
        size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
        checked = recognize_bundle(root).checked()
        variants = {
            "files from disk": lambda: check_integrity(root),
            "files from disk + signature": lambda: check_integrity(root, trusted_keys=work / "pinned"),
            "checked bytes + signature": lambda: check_integrity(root, checked, trusted_keys=work / "pinned"),
        }
        print(f"{args.bundle}: {size / 1e6:.1f} MB in {sum(1 for p in root.rglob('*') if p.is_file())} files")
        for name, run in variants.items():
            if run().problems:
                raise SystemExit(f"{name}: the unpacked bundle does not pass its own check")
            ms = _times(args.repeats, run)
            print(f"  {name:<30} median {statistics.median(ms):6.1f} ms, min {min(ms):6.1f} ms")
        ms = _times(3, lambda: recognize_bundle(root))
        print(f"  {'recognition (for comparison)':<30} min {min(ms):6.0f} ms")


if __name__ == "__main__":
    main()
