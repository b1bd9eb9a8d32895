"""The node's durable queue: one SQLite table (write-ahead log) holding every series and the state it is in.

A series moves through these states, each change one transaction::

    received --(quiet for complete_after s)--> complete --(worker)--> running --> ready --(sender)--> sent
        \\-> ignored (no routing rule)                          \\-> failed (reason)   \\-> (retried, backoff)

- ``received``: instances are arriving; ``last_instance`` is the time of the newest.
- ``complete``: no instance for ``complete_after`` seconds; routed to a bundle, waiting for the worker (oldest
  first).
- ``running``: the worker is segmenting it. A node that was killed finds it ``running`` on restart and puts it back
  to ``complete`` (after ``MAX_RUNS`` starts it is ``failed``).
- ``ready``: the result (SEG or RTSTRUCT) is written and its SOP Instance UID recorded (``result_uid``, the
  idempotency key: a restart re-sends that same file, never a new one); the sender delivers it, retrying a
  destination that is down with backoff (``next_try``).
- ``sent``, ``failed`` (with ``reason``), ``ignored`` (no rule matched, with ``reason``): final.

An instance arriving for a series past ``received`` (a late or re-sent series) that the node did not hold before
puts it back to ``received``: it is segmented again with all its instances. Transitions out of ``running`` and
``ready`` name the state they expect, so a worker finishing a series that was reopened meanwhile changes nothing.

Example::

    queue = JobQueue("work/queue.sqlite")
    queue.record_instance("1.2.3.4", now=time.time())
    queue.close_quiet(after=10.0)           # received -> complete for series quiet for 10 s
    job = queue.claim()                     # complete -> running, oldest first
    queue.finish(job.series_uid, "results/x_seg.dcm", "1.2.826.…")   # running -> ready
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["MAX_RUNS", "STATES", "Job", "JobQueue", "series_key"]

#: Every state, in the order a series passes through them (the last three are final).
STATES = ("received", "complete", "running", "ready", "sent", "failed", "ignored")
#: Starts of a series' segmentation (crashes included) before it is marked failed.
MAX_RUNS = 3

_SCHEMA = """
CREATE TABLE IF NOT EXISTS series (
    series_uid    TEXT PRIMARY KEY,
    key           TEXT NOT NULL,
    state         TEXT NOT NULL,
    bundle        TEXT,
    instances     INTEGER NOT NULL DEFAULT 0,
    runs          INTEGER NOT NULL DEFAULT 0,
    send_attempts INTEGER NOT NULL DEFAULT 0,
    next_try      REAL NOT NULL DEFAULT 0,
    reason        TEXT,
    result_path   TEXT,
    result_uid    TEXT,
    first_instance REAL NOT NULL,
    last_instance REAL NOT NULL,
    completed     REAL,
    updated       REAL NOT NULL
)
"""


def series_key(series_uid: str) -> str:
    """The hashed name of a series in logs and folder names (the UID itself never appears in a log)."""
    return hashlib.sha256(series_uid.encode()).hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class Job:
    """One row of the queue."""

    series_uid: str
    key: str
    state: str
    bundle: str | None
    instances: int
    runs: int
    send_attempts: int
    next_try: float
    reason: str | None
    result_path: str | None
    result_uid: str | None
    first_instance: float
    last_instance: float
    completed: float | None
    updated: float


class JobQueue:
    """The queue in ``path`` (created when absent); safe to use from several threads and processes.

    Args:
        path: the SQLite file (``<workdir>/queue.sqlite``).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._transaction() as db:
            db.execute(_SCHEMA)
            db.execute("CREATE INDEX IF NOT EXISTS series_state ON series (state, completed)")

    # -- connections ------------------------------------------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            self._local.db = db
        return db

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    # -- reading ----------------------------------------------------------------------------------------------

    def get(self, series_uid: str) -> Job | None:
        row = self._db().execute("SELECT * FROM series WHERE series_uid = ?", (series_uid,)).fetchone()
        return Job(**dict(row)) if row else None

    def jobs(self, state: str | None = None) -> list[Job]:
        """Every job (or those in ``state``), oldest first."""
        sql, args = "SELECT * FROM series", ()
        if state is not None:
            sql, args = sql + " WHERE state = ?", (state,)  # type: ignore[assignment]
        return [Job(**dict(r)) for r in self._db().execute(sql + " ORDER BY first_instance", args)]

    def status(self, now: float | None = None) -> dict:
        """Counts per state and the oldest job not yet final (hashed key, state, age in seconds)."""
        now = time.time() if now is None else now
        counts = dict.fromkeys(STATES, 0)
        for row in self._db().execute("SELECT state, COUNT(*) AS n FROM series GROUP BY state"):
            counts[row["state"]] = row["n"]
        waiting = "state IN ('received', 'complete', 'running', 'ready')"
        sql = f"SELECT key, state, first_instance FROM series WHERE {waiting} ORDER BY first_instance LIMIT 1"
        row = self._db().execute(sql).fetchone()
        oldest = None
        if row:
            oldest = {"series": row["key"], "state": row["state"], "age_s": round(now - row["first_instance"], 1)}
        return {"counts": counts, "oldest_waiting": oldest}

    # -- transitions ------------------------------------------------------------------------------------------

    def record_instance(self, series_uid: str, now: float | None = None, new: bool = True) -> str:
        """Records an instance of ``series_uid`` (stored already); returns the series' state afterwards.

        ``new`` is False for an instance the node held already (a re-send): it does not reopen a series.
        """
        now = time.time() if now is None else now
        with self._transaction() as db:
            row = db.execute("SELECT state FROM series WHERE series_uid = ?", (series_uid,)).fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO series (series_uid, key, state, instances, first_instance, last_instance, updated)"
                    " VALUES (?, ?, 'received', 1, ?, ?, ?)",
                    (series_uid, series_key(series_uid), now, now, now),
                )
                return "received"
            if row["state"] in ("received", "complete") or new:
                db.execute(
                    "UPDATE series SET state = 'received', instances = instances + ?, last_instance = ?, "
                    "runs = CASE WHEN state IN ('received', 'complete') THEN runs ELSE 0 END, "
                    "bundle = NULL, reason = NULL, result_path = NULL, result_uid = NULL, send_attempts = 0, "
                    "next_try = 0, completed = NULL, updated = ? WHERE series_uid = ?",
                    (int(new), now, now, series_uid),
                )
                return "received"
            return row["state"]

    def quiet_series(self, after: float, now: float | None = None) -> list[Job]:
        """Series ``received`` with no instance for ``after`` seconds (candidates for :meth:`mark_complete`)."""
        now = time.time() if now is None else now
        rows = self._db().execute(
            "SELECT * FROM series WHERE state = 'received' AND last_instance <= ? ORDER BY first_instance",
            (now - after,),
        )
        return [Job(**dict(r)) for r in rows]

    def mark_complete(self, series_uid: str, bundle: str | None, reason: str | None = None, last: float = 0) -> bool:
        """``received`` -> ``complete`` routed to ``bundle``, or -> ``ignored`` with ``reason`` when it is None.

        ``last`` is the ``last_instance`` the caller saw: an instance that arrived since keeps it ``received``.
        """
        state = "complete" if bundle else "ignored"
        now = time.time()
        with self._transaction() as db:
            cur = db.execute(
                "UPDATE series SET state = ?, bundle = ?, reason = ?, completed = ?, updated = ? "
                "WHERE series_uid = ? AND state = 'received' AND last_instance <= ?",
                (state, bundle, reason, now, now, series_uid, last or now),
            )
            return cur.rowcount == 1

    def claim(self, bundles: list[str] | None = None) -> Job | None:
        """The oldest ``complete`` series (of ``bundles`` when given), now ``running``; ``None`` when there is none.

        A series that has been started ``MAX_RUNS`` times already is marked failed instead.
        """
        now = time.time()
        with self._transaction() as db:
            while True:
                row = db.execute(
                    "SELECT * FROM series WHERE state = 'complete' ORDER BY completed, first_instance LIMIT 1"
                ).fetchone()
                if row is None:
                    return None
                if row["runs"] >= MAX_RUNS:
                    db.execute(
                        "UPDATE series SET state = 'failed', reason = ?, updated = ? WHERE series_uid = ?",
                        (f"segmentation started {row['runs']} times without finishing", now, row["series_uid"]),
                    )
                    continue
                db.execute(
                    "UPDATE series SET state = 'running', runs = runs + 1, updated = ? WHERE series_uid = ?",
                    (now, row["series_uid"]),
                )
                return self.get(row["series_uid"])

    def finish(self, series_uid: str, result_path: str, result_uid: str) -> bool:
        """``running`` -> ``ready``: the result file is written and ``result_uid`` is its SOP Instance UID."""
        return self._move(series_uid, "running", "ready", result_path=result_path, result_uid=result_uid)

    def fail(self, series_uid: str, reason: str, expect: str = "running") -> bool:
        """``expect`` -> ``failed`` with ``reason`` (one line, no patient data)."""
        return self._move(series_uid, expect, "failed", reason=reason)

    def due(self, now: float | None = None) -> list[Job]:
        """``ready`` series whose next delivery attempt is due, oldest first."""
        now = time.time() if now is None else now
        rows = self._db().execute(
            "SELECT * FROM series WHERE state = 'ready' AND next_try <= ? ORDER BY completed, first_instance", (now,)
        )
        return [Job(**dict(r)) for r in rows]

    def delivered(self, series_uid: str, result_uid: str) -> bool:
        """``ready`` -> ``sent``, for the result with this SOP Instance UID only."""
        now = time.time()
        with self._transaction() as db:
            cur = db.execute(
                "UPDATE series SET state = 'sent', reason = NULL, updated = ? "
                "WHERE series_uid = ? AND state = 'ready' AND result_uid = ?",
                (now, series_uid, result_uid),
            )
            return cur.rowcount == 1

    def retry_later(self, series_uid: str, reason: str, delay: float) -> bool:
        """Records a failed delivery; the series stays ``ready`` and is tried again in ``delay`` seconds."""
        now = time.time()
        with self._transaction() as db:
            cur = db.execute(
                "UPDATE series SET send_attempts = send_attempts + 1, next_try = ?, reason = ?, updated = ? "
                "WHERE series_uid = ? AND state = 'ready'",
                (now + delay, reason, now, series_uid),
            )
            return cur.rowcount == 1

    def recover(self) -> int:
        """After a restart: ``running`` series (their worker died) go back to ``complete``, and ``ready`` results
        are due at once; returns how many series were running."""
        with self._transaction() as db:
            db.execute("UPDATE series SET next_try = 0 WHERE state = 'ready'")
            return db.execute(
                "UPDATE series SET state = 'complete', updated = ? WHERE state = 'running'", (time.time(),)
            ).rowcount

    def retry(self, keys: list[str] | None = None, state: str = "failed") -> int:
        """Puts ``failed`` (or ``ignored``) series back to ``received`` so they are routed and run again.

        Args:
            keys: hashed series keys (as ``unet-med serve status`` and the logs show them); all when ``None``.
            state: ``failed`` or ``ignored``.
        """
        if state not in ("failed", "ignored"):
            raise ValueError(f"retry: state {state!r}: only failed or ignored series can be retried")
        now = time.time()
        sql = (
            "UPDATE series SET state = 'received', runs = 0, send_attempts = 0, next_try = 0, reason = NULL, "
            "bundle = NULL, result_path = NULL, result_uid = NULL, completed = NULL, last_instance = ?, updated = ? "
            "WHERE state = ?"
        )
        args: tuple = (now - 1e9, now, state)  # quiet at once: the watcher routes them on its next pass
        if keys is not None:
            sql += f" AND key IN ({','.join('?' * len(keys))})"
            args += tuple(keys)
        with self._transaction() as db:
            return db.execute(sql, args).rowcount

    def _move(self, series_uid: str, expect: str, state: str, **values: str) -> bool:
        sets = "".join(f", {k} = ?" for k in values)
        with self._transaction() as db:
            cur = db.execute(
                f"UPDATE series SET state = ?, updated = ?{sets} WHERE series_uid = ? AND state = ?",
                (state, time.time(), *values.values(), series_uid, expect),
            )
            return cur.rowcount == 1
