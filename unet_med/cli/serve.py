"""``unet-med serve``: the DICOM node (see docs/dicom-node.md).

::

    unet-med serve --bundle DIR [--bundle DIR ...] --workdir DIR --destination AET@HOST:PORT
        [--ae-title UNETMED] [--port 11112] [--format dicom-seg|rtstruct] [--complete-after 10] [--rules FILE]
        [--allow-ae AET ...] [--allow-host ADDR ...] [--reserve-mb 1024] [--keep] [--device cpu|cuda]
    unet-med serve status --workdir DIR          # JSON: counts per state, the oldest waiting series
    unet-med serve retry --workdir DIR [--state failed|ignored] [KEY ...]

Exit status 2 when a bundle, the rules or the destination cannot be used (checked before the node listens).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import warnings
from pathlib import Path

__all__ = ["register"]


def _serve(args: argparse.Namespace) -> int:
    if args.serve_command == "status":
        return _status(args)
    if args.serve_command == "retry":
        return _retry(args)
    missing = [f"--{n}" for n in ("bundle", "workdir", "destination") if not getattr(args, n)]
    if missing:
        print(f"unet-med serve: {', '.join(missing)} required", file=sys.stderr)
        return 2
    import torch

    from unet_med.inference.bundle_model import BundleError
    from unet_med.inference.runtime import default_num_threads
    from unet_med.serve.node import Node
    from unet_med.serve.sender import Destination

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Patient data stays out of the log: pynetdicom's and highdicom's INFO lines name instance UIDs, pydicom's and
    # highdicom's validation warnings quote header values (a patient name highdicom finds odd, a too-long ID).
    for name in ("pynetdicom", "highdicom"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("pydicom").setLevel(logging.ERROR)
    for module in ("pydicom", "highdicom"):
        warnings.filterwarnings("ignore", category=UserWarning, module=module)
    torch.set_num_threads(args.threads or default_num_threads())
    names = [Path(b).resolve().name for b in args.bundle]
    if len(set(names)) != len(names):
        print(f"unet-med serve: two bundles share a folder name ({', '.join(names)})", file=sys.stderr)
        return 2
    try:
        listen_tls, send_tls = _tls(args)
        node = Node(
            args.workdir,
            dict(zip(names, args.bundle)),
            Destination.parse(args.destination),
            ae_title=args.ae_title,
            port=args.port,
            output_format=args.format,
            complete_after=args.complete_after,
            rules_file=args.rules,
            allow_ae=args.allow_ae or (),
            allow_hosts=args.allow_host or (),
            reserve_bytes=int(args.reserve_mb * (1 << 20)),
            keep=args.keep,
            listen_tls=listen_tls,
            send_tls=send_tls,
            device=args.device or ("cuda" if torch.cuda.is_available() else "cpu"),
        )
    except (BundleError, OSError, ValueError) as e:  # OSError: missing files, ssl.SSLError
        print(f"unet-med serve: {e}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: node.stopping.set())
    try:
        node.serve_forever()
    except KeyboardInterrupt:
        node.stop()
    return 0


def _tls(args: argparse.Namespace) -> tuple:
    """The SSL contexts for listening and sending asked for on the command line (``None`` for plain TCP)."""
    from unet_med.serve.tls import client_context, server_context

    if bool(args.tls_cert) != bool(args.tls_key):
        raise ValueError("--tls-cert and --tls-key go together")
    if args.tls_ca and not args.tls_cert:
        raise ValueError("--tls-ca (peers must present certificates) needs the node's own --tls-cert and --tls-key")
    listen = server_context(args.tls_cert, args.tls_key, args.tls_ca) if args.tls_cert else None
    send = None
    if args.destination_tls_ca:
        send = client_context(args.destination_tls_ca, args.tls_cert, args.tls_key)
    return listen, send


def _queue(args: argparse.Namespace):
    from unet_med.serve.node import queue_path
    from unet_med.serve.queue import JobQueue

    path = queue_path(args.workdir)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no queue here (is {args.workdir} a node's --workdir?)")
    return JobQueue(path)


def _status(args: argparse.Namespace) -> int:
    try:
        queue = _queue(args)
    except FileNotFoundError as e:
        print(f"unet-med serve status: {e}", file=sys.stderr)
        return 2
    status = queue.status()
    if args.jobs:
        status["jobs"] = [
            {"series": j.key, "state": j.state, "bundle": j.bundle, "instances": j.instances, "reason": j.reason}
            for j in queue.jobs()
        ]
    print(json.dumps(status, indent=2))
    return 0


def _retry(args: argparse.Namespace) -> int:
    try:
        n = _queue(args).retry(args.keys or None, state=args.state)
    except (FileNotFoundError, ValueError) as e:
        print(f"unet-med serve retry: {e}", file=sys.stderr)
        return 2
    print(f"{n} series back to received")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds ``serve`` (and ``serve status``, ``serve retry``) to the ``unet-med`` command line."""
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    p = subparsers.add_parser(
        "serve",
        help="run as a DICOM node: series in by C-STORE, segmentations back",
        description="A DICOM Storage SCP that segments complete series with the bundles and sends the results on.",
    )
    p.add_argument("--bundle", action="append", help="bundle folder (repeat for several)")
    p.add_argument("--workdir", help="the node's folder: queue, received series, results")
    p.add_argument("--destination", help="where results go, AET@HOST:PORT")
    p.add_argument("--ae-title", default="UNETMED", help="the node's AE title (default UNETMED)")
    p.add_argument("--port", type=int, default=11112, help="port to listen on (default 11112)")
    p.add_argument("--format", choices=("dicom-seg", "rtstruct"), default="dicom-seg", help="result format")
    p.add_argument("--complete-after", type=float, default=10.0, help="seconds of quiet before a series is complete")
    p.add_argument("--rules", default=None, help="routing rules (JSON); default: each bundle's task modality")
    p.add_argument("--allow-ae", action="append", help="a calling AE title accepted (repeat; default all)")
    p.add_argument("--allow-host", action="append", help="a peer IP address accepted (repeat; default all)")
    p.add_argument("--reserve-mb", type=float, default=1024, help="refuse instances below this free disk space")
    p.add_argument("--tls-cert", default=None, help="DICOM TLS: the node's certificate (PEM)")
    p.add_argument("--tls-key", default=None, help="DICOM TLS: the node's private key (PEM)")
    p.add_argument("--tls-ca", default=None, help="DICOM TLS: require peers' certificates signed by this CA (PEM)")
    p.add_argument("--destination-tls-ca", default=None, help="send over TLS; the destination's CA (PEM)")
    p.add_argument("--keep", action="store_true", help="keep received series and results after delivery")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: the cores this process may use)")
    p.add_argument("--verbose", action="store_true", help="log every stored instance")
    p.set_defaults(func=_serve, serve_command=None)
    sub = p.add_subparsers(dest="serve_command")
    s = sub.add_parser("status", help="queue counts per state and the oldest waiting series (JSON)")
    s.add_argument("--workdir", required=True)
    s.add_argument("--jobs", action="store_true", help="also list every series (hashed key, state, reason)")
    r = sub.add_parser("retry", help="put failed (or ignored) series back in the queue")
    r.add_argument("--workdir", required=True)
    r.add_argument("--state", choices=("failed", "ignored"), default="failed")
    r.add_argument("keys", nargs="*", help="hashed series keys (default: all in that state)")
