"""The change poller: one greenlet per worker turns committed change-log rows into events.

Guarantees (see docs/websocket-api.md, "Ordering and delivery"):

* every committed change is delivered, even when transactions commit out of
  ``seq`` order: a ``seq`` missing below the highest one seen is a *gap*, asked
  for again on every tick until it shows up or ``POLL_GAP_TIMEOUT`` passes
  (then it is taken as rolled back);
* no change is delivered twice: the poller only reads above its head or in
  its gaps;
* a change this process committed and announced (a REST write) is delivered
  as announced, without a read, only when it is the next of the stream
  (right above the head, no gap open); otherwise the next read has it;
* a value never goes backwards: several changes of one metric in a tick are
  conflated to the newest, and a late gap row is dropped when the metric's
  current value (``metric_values``, in the same snapshot) has a higher ``seq``;
* a poller that starts while PostgreSQL transactions are in flight does not
  skip them: the seqs missing just below its starting head are gaps too;
* a subscribe reads its snapshot in the same database snapshot as a tick and
  under the same lock, so each change is either in the snapshot or delivered
  after it, and every update after it has ``seq`` greater than the snapshot's;
* a layout change reaches the entities that showed its dashboard at its ``seq``
  (:func:`layout_recipients`): an entity that moved to another dashboard gets no
  layout change of the old one after its ``replaced``, nor of the new one before.
"""

import contextlib
import logging
import time
from dataclasses import dataclass, field

from gevent.lock import RLock
from sqlalchemy.exc import SQLAlchemyError

from app.database import CommitProbe, consistent_read, database_outage, is_unavailable, unavailable_error
from app.extensions import db
from app.models import CHANGE_DASHBOARD, CHANGE_ENTITY, CHANGE_METRIC
from app.realtime.rooms import DASHBOARD_NAMESPACE, UPDATES_NAMESPACE, room_for
from app.serializers import chart_metrics
from app.services import changes as change_log
from app.services.entities import entity_snapshot
from app.services.history import chart_history
from app.services.resume import resume_entity
from app.telemetry import POLL_ANNOUNCED, POLL_FAILURES, POLL_SKIPS, observe_poll

log = logging.getLogger(__name__)

#: A jump in seq wider than this is not tracked seq by seq (taken as never written).
MAX_TRACKED_GAP = 10_000
#: On PostgreSQL, seqs missing this far below the starting head are waited for as gaps.
STARTUP_GAP_WINDOW = 1_000
#: Seconds a ``dashboard:initial`` snapshot (or a ``dashboard:resume``) serves other subscribers of its entity while
#: the entity does not change.
SNAPSHOT_REUSE_SECONDS = 1.0
#: Snapshots (and resumes) kept for reuse at most (all dropped when full: a storm refills what it needs in a second).
SNAPSHOTS_KEPT = 10_000


def layout_recipients(layout_changes, showing_now, moves):
    """Map each layout change's seq to the ``(tenant_id, entity_id)`` pairs that showed its dashboard then.

    ``showing_now`` maps dashboard ids to the pairs that show them in the
    snapshot read; ``moves`` are the entity changes (``EntityMove``) of that
    snapshot after the first layout change. Walking back from the newest, each
    move puts its entity back on the dashboard it left.
    """
    current = {}
    by_dashboard = {}
    for dashboard_id, pairs in showing_now.items():
        by_dashboard[dashboard_id] = set(pairs)
        current.update(dict.fromkeys(pairs, dashboard_id))
    pending = sorted(moves, key=lambda m: m.seq, reverse=True)
    recipients = {}
    i = 0
    for change in sorted(layout_changes, key=lambda c: c.seq, reverse=True):
        while i < len(pending) and pending[i].seq > change.seq:
            move = pending[i]
            i += 1
            pair = (move.tenant_id, move.entity_id)
            by_dashboard.get(current.get(pair), set()).discard(pair)
            current[pair] = move.previous
            by_dashboard.setdefault(move.previous, set()).add(pair)
        recipients[change.seq] = sorted(by_dashboard.get(change.dashboard_id, ()))
    return recipients


@dataclass
class _Batch:
    changes: list = field(default_factory=list)
    layout_recipients: dict = field(default_factory=dict)
    histories: dict = field(default_factory=dict)  # seq of an entity change -> the chart history it carries
    current_seqs: dict = field(default_factory=dict)
    head: int | None = None
    missing: list = field(default_factory=list)
    full: bool = False


class ChangePoller:
    """Owns the read position in the change log and the fan-out of what it reads."""

    def __init__(self, app, sio, fanout):
        config = app.config
        self._app = app
        self._sio = sio
        self._fanout = fanout
        self._interval = config["POLL_INTERVAL"]
        self._batch_size = config["POLL_BATCH_SIZE"]
        self._gap_timeout = config["POLL_GAP_TIMEOUT"]
        self._max_backoff = config["POLL_MAX_BACKOFF"]
        self._max_resume = config["RESUME_MAX_CHANGES"]
        self._lock = RLock()
        self._wake = sio.eio.create_event()
        self._head = None  # highest seq read; None until the first successful read
        self._gaps = {}  # seq -> monotonic time it was first found missing
        self._snapshots = {}  # (tenant, entity) -> (type, monotonic time, dashboard:initial): _kept_snapshot
        self._resumes = {}  # (tenant, entity) -> (type, since_seq, monotonic time, dashboard:resume): _kept_resume
        self._startup_window = STARTUP_GAP_WINDOW if config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql") else 0
        self._announced = []  # changes this process committed and announced since the last tick (_on_commit)
        self._must_read = True  # a wake-up other than an announcement asked for a read of the log
        self._running = False

    @property
    def started(self):
        """True once the poller has read the change log's head: from then on ``position`` is real."""
        return self._head is not None

    @property
    def position(self):
        """The change-log position: every change at or below it has been delivered or reflected."""
        if self._head is None:
            return 0
        return min(self._gaps) - 1 if self._gaps else self._head

    def start(self):
        """Start polling in a background task."""
        self._running = True
        change_log.change_committed.connect(self._on_commit, weak=False)
        self._sio.start_background_task(self._run)

    def stop(self):
        """Stop polling after the current tick."""
        self._running = False
        change_log.change_committed.disconnect(self._on_commit)
        self._wake.set()

    def wake(self, seq=None):
        """Read now instead of at the next tick (a commit was announced): unless ``seq``, the highest seq of the
        commit (a NOTIFY's), is delivered already (this process's own writes, handed over by ``_on_commit``)."""
        if seq is not None and self._head is not None and seq <= self.position:
            return
        self._must_read = True
        self._wake.set()

    def _on_commit(self, _sender=None, changes=(), **_kwargs):
        """A transaction of this process committed: tick now, handing over the ``changes`` it names
        (``services.changes.Change``, all it appended), or reading the log when it names none."""
        if changes and len(self._announced) + len(changes) <= self._batch_size:
            self._announced.extend(changes)
        else:
            self._must_read = True
        self._wake.set()

    def _run(self):
        with self._app.app_context():
            probe = CommitProbe(db.engine)
        try:
            self._poll(probe)
        finally:
            probe.close()

    def _poll(self, probe):
        """Tick until stopped; skip a timed tick when the probe knows nothing was committed (SQLite).

        A read is due anyway on the first round, after a wake-up that asks for
        one, a full batch or a failure, and while gaps are waited for; the probe
        is not asked then. A wake-up that only announces changes this process
        committed (a REST write) delivers them without a read (``tick``), and does
        not ask the probe either: a query per REST write for nothing. Otherwise
        the probe is asked before the tick reads, so a commit landing during a
        tick is seen at the next round; after rounds that did not ask it, the
        version it holds is older still, which can only make it answer yes once
        too often.
        """
        backoff = 0.0
        due = True
        outage = database_outage(self._app)
        while self._running:
            try:
                if due or self._must_read or self._gaps:
                    more = self.tick()
                elif self._announced:  # before the probe, which this process's own commit changed
                    more = self.tick(read=False)
                elif probe.changed():
                    more = self.tick()
                else:
                    more = False
                    POLL_SKIPS.inc()
                backoff = 0.0
                outage.recovered("poll")
            except Exception as exc:
                backoff = min(max(backoff * 2, self._interval, 0.05), self._max_backoff)
                POLL_FAILURES.inc()
                if is_unavailable(exc):
                    outage.failed("poll", exc)  # logged once per outage
                else:
                    log.exception("change poll failed; retrying in %.2fs", backoff)
                due = True
                # Back off, but read at once when woken: a commit in this process, a NOTIFY, or the
                # change listener connecting again all say the database answers again.
                self._wake.wait(backoff)
                self._wake.clear()
                continue
            if more or self._wake.is_set():
                # Busy: tick again, but first let whoever waits for the lock in (a
                # subscribe); waiting on a set event or ticking at once would not
                # yield, and a steady stream of changes would starve subscribers.
                self._wake.clear()
                self._sio.sleep(0)
                due = more
            else:
                self._wake.wait(self._interval)  # woken: _must_read or _announced says what for
                self._wake.clear()
                due = False

    def tick(self, read=True):
        """Read and deliver one batch of changes; return True when more are waiting.

        With ``read`` false, the changes this process committed and announced
        since the last tick are delivered as announced, without a read of the
        log, when they are the very next ones of the stream (``_continuing``);
        otherwise the tick reads, as with ``read``, and the read has them.
        """
        started = time.perf_counter()
        with self._lock:
            announced, self._announced = self._announced, []
            batch = None if read else self._continuing(announced)
            if batch is not None:
                self._deliver(batch)
                POLL_ANNOUNCED.inc()
            else:
                self._must_read = False  # this read answers every wake-up so far
                with self._app.app_context():
                    with consistent_read():
                        batch = self._read()
                    self._deliver(batch)
        observe_poll(time.perf_counter() - started, len(batch.changes))
        return batch.full

    def _continuing(self, announced):
        """A batch of the ``announced`` changes not delivered yet, when they continue the stream; else None.

        They continue it when the first is right above the head, none is missing
        between them and no gap is waited for: every change below them has been
        delivered, so delivering them keeps the order, and the next read starts
        above them. Announced changes that a read (a subscribe's catch-up) has
        delivered already make an empty batch: nothing else asked for a read.
        """
        if self._head is None or self._gaps:
            return None
        fresh = sorted((c for c in announced if c.seq > self._head), key=lambda c: c.seq)
        if any(change.seq != self._head + n for n, change in enumerate(fresh, 1)):
            return None
        return _Batch(changes=fresh)

    def subscribe(self, sid, namespace, tenant_id, entity_id, entity_type, since_seq=None):
        """Join ``sid`` to the entity's room and send it its state; return ``(event, payload)`` (``_subscribe``).

        A subscribe that meets the database down (a connection dropped by a
        restart, say) tries once more, on a fresh connection, before it answers;
        if that fails too it raises UNAVAILABLE (ANALYTICS_1300): the client
        should subscribe again in a moment.
        """
        outage = database_outage(self._app)
        for attempt in (1, 2):
            try:
                sent = self._subscribe(sid, namespace, tenant_id, entity_id, entity_type, since_seq)
            except SQLAlchemyError as exc:
                if not is_unavailable(exc):
                    raise
                outage.failed("socket", exc)
                if attempt == 2:
                    raise unavailable_error() from None
            else:
                outage.recovered("socket")
                return sent
        return None  # not reached

    def _subscribe(self, sid, namespace, tenant_id, entity_id, entity_type, since_seq):
        """Join ``sid`` to the entity's room and send it its state; return ``(event, payload)``.

        Without ``since_seq``: ``dashboard:initial``. With it: ``dashboard:resume``
        (only what changed after it) when that can be complete, else
        ``dashboard:initial`` with ``recovered: false``. Raises UNKNOWN_ENTITY
        (after delivering what it read) when the tenant has no such entity.
        Returns None when the socket left meanwhile. Delivering before the
        snapshot query is safe: emits never yield (they queue a packet or write
        it without blocking).
        """
        with self._lock, self._app.app_context():
            if since_seq is None:
                event, kept = "dashboard:initial", self._kept_snapshot(tenant_id, entity_id, entity_type)
            else:
                event, kept = "dashboard:resume", self._kept_resume(tenant_id, entity_id, entity_type, since_seq)
            if kept is not None:
                payload = kept
            else:
                event, payload = self._read_state(tenant_id, entity_id, entity_type, since_seq)
            if not self._sio.is_connected(sid, namespace):
                return None
            self._sio.enter_room(sid, room_for(tenant_id, entity_id), namespace=namespace)
            payload["seq"] = self.position
            self._sio.emit(event, payload, to=sid, namespace=namespace, ignore_queue=True)
            return event, payload

    def _read_state(self, tenant_id, entity_id, entity_type, since_seq):
        """``(event, payload)`` of a subscribe, read after catching up with the database (under the lock)."""
        with consistent_read():
            # Catch up with everything this database snapshot holds, however many
            # batches that takes, so the snapshot is never ahead of the stream.
            while True:
                batch = self._read()
                self._deliver(batch)
                if not batch.full:
                    break
            event, payload = "dashboard:resume", None
            if since_seq is not None:
                head = self._head or 0
                payload = resume_entity(tenant_id, entity_id, entity_type, since_seq, head, self._max_resume)
                if payload is not None:
                    payload = self._keep(self._resumes, (tenant_id, entity_id), (entity_type, since_seq), payload)
            if payload is None:
                event, payload = "dashboard:initial", self._snapshot(tenant_id, entity_id, entity_type)
                if since_seq is not None:
                    payload["recovered"] = False
        return event, payload

    def _kept_snapshot(self, tenant_id, entity_id, entity_type):
        """A ``dashboard:initial`` of the entity read within SNAPSHOT_REUSE_SECONDS, still current, or None.

        A subscriber storm (a deploy, ten thousand dashboards reconnecting) asks
        for the same few entities again and again. A snapshot read with no gap
        open is the state the stream has reached for its entity until the poller
        reads a change of that entity: a value, a layout change reaching it, or
        an entity change (every change goes through the change log, and
        ``_forget_snapshots`` drops the snapshot when one is read); whatever was
        committed since reaches the room at the next tick. So the next
        subscribers get it without a read of their own, not even the catch-up,
        however busy the rest of the log is. The time bound keeps the chart
        history's window current.
        """
        kept = self._snapshots.get((tenant_id, entity_id))
        if kept is None or self._gaps or kept[0] != entity_type or time.monotonic() - kept[1] >= SNAPSHOT_REUSE_SECONDS:
            return None
        return dict(kept[2])

    def _kept_resume(self, tenant_id, entity_id, entity_type, since_seq):
        """A ``dashboard:resume`` of the entity from ``since_seq``, read within SNAPSHOT_REUSE_SECONDS and still
        current, or None.

        After a deploy the clients of an entity all resume from about the same
        seq (the last one they had). What changed for the entity after
        ``since_seq`` stays what was read until the poller reads a change of
        that entity, as for ``_kept_snapshot``: the next resume from the same
        seq skips every read. One ``since_seq`` is kept per entity, the last read.
        """
        kept = self._resumes.get((tenant_id, entity_id))
        if (
            kept is None
            or self._gaps
            or kept[0] != entity_type
            or kept[1] != since_seq
            or time.monotonic() - kept[2] >= SNAPSHOT_REUSE_SECONDS
        ):
            return None
        return dict(kept[3])

    def _keep(self, kept, key, what, payload):
        """Keep ``payload`` under ``key`` in ``kept`` (``_snapshots`` or ``_resumes``) as ``(*what, time, payload)``
        when no gap is open; return a dict of the caller's own (the same parts)."""
        if not self._gaps:
            if len(kept) >= SNAPSHOTS_KEPT:
                kept.clear()
            kept[key] = (*what, time.monotonic(), payload)
        return dict(payload)

    def _forget_snapshots(self, changes, layout_recipients):
        """Drop the kept snapshots and resumes that ``changes`` (just read) make stale: of their entities, and of
        the entities a layout change reaches (``layout_recipients`` by seq)."""
        for change in changes:
            if change.kind == CHANGE_DASHBOARD:
                stale = layout_recipients.get(change.seq, ())
            else:
                stale = ((change.tenant_id, change.entity_id),)
            for pair in stale:
                self._snapshots.pop(pair, None)
                self._resumes.pop(pair, None)

    def _snapshot(self, tenant_id, entity_id, entity_type):
        """The entity's ``dashboard:initial`` with its chart history, read now (kept for ``_kept_snapshot``).

        Raises UNKNOWN_ENTITY like ``entity_snapshot``.
        """
        payload = entity_snapshot(tenant_id, entity_id, entity_type)
        names, current = chart_metrics(payload["tiles"]), payload["metrics"]
        payload["history"] = chart_history(tenant_id, entity_id, names, self._app.config, current)
        return self._keep(self._snapshots, (tenant_id, entity_id), (entity_type,), payload)

    def _replaced_history(self, change):
        """The chart history a ``replaced`` entity change carries (its new dashboard's ``line`` tiles)."""
        payload = change.payload if isinstance(change.payload, dict) else {}
        names = chart_metrics(payload.get("tiles") or [])
        room = room_for(change.tenant_id, change.entity_id)
        if not names or not any(self._sio.has_subscribers(ns, room) for ns in (DASHBOARD_NAMESPACE, UPDATES_NAMESPACE)):
            return {}
        return chart_history(change.tenant_id, change.entity_id, names, self._app.config)

    def _read(self):
        """Query the database; changes nothing in the poller."""
        if self._head is None:
            head = change_log.latest_seq()
            missing = change_log.missing_below(head, self._startup_window) if self._startup_window else []
            return _Batch(head=head, missing=missing)
        rows = change_log.fetch_changes(self._head, self._gaps.keys(), self._batch_size)
        layout = [c for c in rows if c.kind == CHANGE_DASHBOARD]
        recipients = {}
        if layout:
            showing_now = change_log.entities_using({c.dashboard_id for c in layout})
            moves = change_log.moves_after(min(c.seq for c in layout))
            recipients = layout_recipients(layout, showing_now, moves)
        late = {
            (c.tenant_id, c.entity_id, c.metric_name) for c in rows if c.kind == CHANGE_METRIC and c.seq in self._gaps
        }
        return _Batch(
            changes=rows,
            layout_recipients=recipients,
            histories={c.seq: self._replaced_history(c) for c in rows if c.kind == CHANGE_ENTITY},
            current_seqs=change_log.current_seqs(late),
            full=len(rows) >= self._batch_size,
        )

    def _accept(self, batch, now):
        """Advance head and gaps over the batch; return the changes not seen before, in seq order."""
        accepted = []
        for change in batch.changes:
            seq = change.seq
            if seq in self._gaps:
                del self._gaps[seq]
            elif seq > self._head:
                if seq - self._head <= MAX_TRACKED_GAP:
                    for missing in range(self._head + 1, seq):
                        self._gaps[missing] = now
                else:
                    log.warning(
                        "change log jumped from seq %d to %d; not waiting for the rows between", self._head, seq
                    )
                self._head = seq
            else:
                continue
            accepted.append(change)
        for seq, since in list(self._gaps.items()):
            if now - since > self._gap_timeout:
                del self._gaps[seq]
                log.info("seq %d never committed within %.1fs; taken as rolled back", seq, self._gap_timeout)
        return accepted

    def _deliver(self, batch):
        if batch.head is not None:
            if self._head is None:
                self._head = batch.head
                now = time.monotonic()
                self._gaps = dict.fromkeys(batch.missing, now)
            return
        accepted = self._accept(batch, time.monotonic())
        if self._snapshots or self._resumes:
            self._forget_snapshots(accepted, batch.layout_recipients)
        newest = {}
        outgoing = []
        for change in accepted:
            if change.kind == CHANGE_METRIC:
                newest[(change.tenant_id, change.entity_id, change.metric_name)] = change
            else:
                outgoing.append(change)
        for key, change in newest.items():
            if batch.current_seqs.get(key, 0) > change.seq:
                continue  # a late row older than the metric's current value
            outgoing.append(change)
        outgoing.sort(key=lambda c: c.seq)
        # Corking pays off when a socket may get several changes; for one it is only overhead.
        with self._fanout.batch() if len(outgoing) > 1 else contextlib.nullcontext():
            for change in outgoing:
                if change.kind == CHANGE_METRIC:
                    self._fanout.metric(change)
                elif change.kind == CHANGE_ENTITY:
                    self._fanout.entity(change, batch.histories.get(change.seq))
                else:
                    self._fanout.dashboard(change, batch.layout_recipients.get(change.seq, ()))
