"""What the sockets of this server are doing: who is subscribed now, and the last events sent.

Each worker process knows its own sockets (their Socket.IO rooms) and what it
sent (a small ring buffer per entity); the fan-out and the namespaces report to
it. With several workers, and several nodes, ``ActivityShare``
(app/realtime/activity_share.py) makes the admin page count them all: every
ACTIVITY_SHARE_INTERVAL each worker shares a snapshot of its figures
(:meth:`SocketActivity.snapshot`), and the admin request merges its own live
figures with the other workers' snapshots (:func:`merge_figures`). Subscriber
counts sum; one change sent by several workers (the same ``seq``) is one event
whose recipients sum. The figures are as old as the oldest snapshot used
(``asOf``), about one interval at most. Without SERVER_RUN_DIR and REDIS_URL
(flask commands, tests in process) only this process is counted (docs/admin.md).
"""

import itertools
import json
import math
import time
from collections import Counter, OrderedDict, defaultdict, deque
from dataclasses import dataclass

from app.realtime.rooms import DASHBOARD_NAMESPACE, UPDATES_NAMESPACE, room_for

#: Events remembered per (tenant, entity).
EVENTS_KEPT = 20
#: At most this many (tenant, entities, sockets) groups in one worker's snapshot: the largest are kept.
MAX_SHARED_GROUPS = 2_000
#: At most this many (entity, event) references in one worker's snapshot: the most recently active entities first.
MAX_SHARED_REFS = 2_000
#: A snapshot is at most this long; a larger one is written with fewer groups and events, and never read.
MAX_SNAPSHOT_BYTES = 512 * 1024
#: The longest string a snapshot may hold (ids, event names, summaries); a longer one makes it malformed.
MAX_SHARED_TEXT = 512
#: The most entities one group of a snapshot may name (a socket follows at most MAX_SUBSCRIPTIONS_PER_CONNECTION).
MAX_GROUP_ENTITIES = 1_000
#: Counts above this are not believed.
MAX_SHARED_COUNT = 10**9

SNAPSHOT_VERSION = 1
#: What the admin page shows of an event; a snapshot adds the worker's own ``id`` of it.
SHOWN_FIELDS = ("at", "event", "summary", "recipients", "seq")
NAMESPACES = (DASHBOARD_NAMESPACE, UPDATES_NAMESPACE)


class SocketActivity:
    """Subscriber counts read from the Socket.IO rooms, and a small ring buffer of emits per entity."""

    def __init__(self, sio, kept=EVENTS_KEPT):
        self._sio = sio
        self._kept = kept
        # (tenant_id, entity_id) -> deque of event entries, newest last; the entity recorded last is last.
        # Every subscribe records an event, so the keys also name every room a socket of this process joined.
        self._events = OrderedDict()
        self._ids = itertools.count(1)
        self.share = None  # the ActivityShare that brings the other workers' figures, or None

    def sharing(self, config):
        """The background worker that shares this process's figures and reads the others' (``ActivityShare``)."""
        from app.realtime.activity_share import ActivityShare

        self.share = ActivityShare(config, self._sio, self)
        return self.share

    def subscriber_count(self, tenant_id, entity_ids):
        """Sockets (one per namespace connection) subscribed right now to any of the tenant's ``entity_ids``."""
        rooms = [room_for(tenant_id, entity_id) for entity_id in entity_ids]
        return sum(len(self._sio.subscribers(ns, rooms)) for ns in NAMESPACES)

    def record(self, tenant_id, entity_ids, event, summary, recipients, seq=None):
        """Remember that ``event`` went to the rooms of ``entity_ids`` (``recipients`` sockets).

        ``seq``: the change it carries, when it is one (the same change sent by
        several workers is merged by it); None for an event sent to one socket.
        """
        entry = {
            "id": next(self._ids),
            "at": time.time(),
            "event": event,
            "summary": summary,
            "recipients": recipients,
            "seq": seq,
        }
        for entity_id in entity_ids:
            key = (tenant_id, entity_id)
            if key not in self._events:
                self._events[key] = deque(maxlen=self._kept)
            else:
                self._events.move_to_end(key)
            self._events[key].append(entry)

    def recent(self, tenant_id, entity_ids, limit=10):
        """The last ``limit`` events sent for any of the tenant's ``entity_ids``, newest first."""
        seen = {}
        for entity_id in entity_ids:
            for entry in self._events.get((tenant_id, entity_id), ()):
                seen[entry["id"]] = entry
        return [_shown(e) for e in sorted(seen.values(), key=lambda e: e["id"], reverse=True)[:limit]]

    def room_size(self, namespace, room):
        """Sockets in one room of one namespace."""
        return self._sio.subscriber_count(namespace, room)

    def figures(self, tenant_id, entity_ids, limit=10):
        """``{subscribers, events, workers, asOf, scope, unreadable, truncated, problem}`` for the admin page.

        This process's live figures, merged with the other workers' snapshots
        when they are shared (``scope`` "node": this server's workers, "cluster":
        every worker on the same Redis; else "process").
        """
        subscribers = self.subscriber_count(tenant_id, entity_ids)
        if self.share is None or not self.share.enabled:
            return {
                "subscribers": subscribers,
                "events": self.recent(tenant_id, entity_ids, limit),
                **coverage("process", time.time(), 1),
            }
        self.share.want()
        snapshots, scope, unreadable = self.share.others()
        problem = "Redis did not answer" if self.share.redis_down else None
        return merge_figures(
            tenant_id,
            entity_ids,
            subscribers,
            self.recent(tenant_id, entity_ids, limit=None),
            snapshots,
            limit,
            scope=scope,
            unreadable=unreadable,
            problem=problem,
        )

    # --- sharing ----------------------------------------------------------------------------------------------------

    def snapshot(self, max_groups=MAX_SHARED_GROUPS, max_refs=MAX_SHARED_REFS):
        """This process's figures as plain data, bounded, for the other workers (:class:`Snapshot` reads it).

        ``subscriptions``: ``[tenant, [entity, ...], sockets]``, the sockets that
        follow exactly those entities of the tenant (most follow one), the
        ``max_groups`` largest. ``recent``: ``[tenant, entity, [event id, ...]]``
        newest first, for the most recently active entities, ``max_refs`` ids in
        all; ``events``: those events. ``truncated`` when something was left out.
        """
        groups = self._subscription_groups()
        kept_groups = groups.most_common(max_groups)
        refs, events = [], {}
        truncated = len(kept_groups) < len(groups)
        left = max_refs
        for (tenant_id, entity_id), ring in reversed(self._events.items()):
            if left <= 0:
                truncated = True
                break
            ids = []
            for entry in itertools.islice(reversed(ring), left):
                ids.append(entry["id"])
                events.setdefault(entry["id"], {"id": entry["id"], **_shown(entry)})
            left -= len(ids)
            truncated = truncated or len(ids) < len(ring)
            refs.append([tenant_id, entity_id, ids])
        return {
            "v": SNAPSHOT_VERSION,
            "at": time.time(),
            "subscriptions": [[tenant_id, list(entity_ids), n] for (tenant_id, entity_ids), n in kept_groups],
            "recent": refs,
            "events": list(events.values()),
            "truncated": truncated,
        }

    def _subscription_groups(self):
        """``Counter`` of ``(tenant, entity ids) -> sockets``: this process's sockets by the entities they follow.

        A socket following several entities of a tenant is one group of its own, so
        that it counts once for a dashboard those entities share, as here.
        """
        by_tenant = defaultdict(list)
        for tenant_id, entity_id in self._events:
            by_tenant[tenant_id].append((entity_id, room_for(tenant_id, entity_id)))
        groups = Counter()
        for namespace in NAMESPACES:
            for tenant_id, rooms in by_tenant.items():
                live = [(entity_id, room) for entity_id, room in rooms if self._sio.has_subscribers(namespace, room)]
                if len(live) == 1:
                    entity_id, room = live[0]
                    groups[tenant_id, (entity_id,)] += self._sio.subscriber_count(namespace, room)
                    continue
                members = {entity_id: self._sio.subscribers(namespace, [room]) for entity_id, room in live}
                seen = Counter(itertools.chain.from_iterable(members.values()))
                several = {sid for sid, n in seen.items() if n > 1}
                follows = defaultdict(list)
                for entity_id, sids in members.items():
                    groups[tenant_id, (entity_id,)] += len(sids - several)
                    for sid in sids & several:
                        follows[sid].append(entity_id)
                for entity_ids in follows.values():
                    groups[tenant_id, tuple(sorted(entity_ids))] += 1
        return +groups  # without the groups that came to 0


def idle_snapshot():
    """A snapshot without figures: the worker is there, but did not compute them (nobody asked, or nobody reads)."""
    return {
        "v": SNAPSHOT_VERSION,
        "at": time.time(),
        "subscriptions": [],
        "recent": [],
        "events": [],
        "truncated": False,
        "idle": True,
    }


def _shown(entry):
    """An event as the admin page shows it."""
    return {k: entry[k] for k in SHOWN_FIELDS}


def coverage(scope, as_of, workers, unreadable=0, truncated=False, problem=None, idle=0):
    """What the figures cover: the keys the admin page's sentence is made of.

    ``problem``: why they cover less than they should (Redis did not answer), or None.
    ``idle``: workers whose snapshot has no figures yet (they compute them from their next round).
    """
    return {
        "scope": scope,
        "asOf": as_of,
        "workers": workers,
        "unreadable": unreadable,
        "truncated": truncated,
        "problem": problem,
        "idle": idle,
    }


def merge_figures(tenant_id, entity_ids, subscribers, events, snapshots, limit, scope, unreadable=0, problem=None):
    """This process's ``subscribers`` and ``events`` (live), plus what the other workers' ``snapshots`` hold.

    Subscriber counts sum. An event of a change (``seq`` set) is one entry whatever
    number of workers sent it: the earliest time, the recipients summed. Events sent
    to one socket (``seq`` None) stay apart. ``asOf`` is the oldest snapshot's time.
    """
    wanted = set(entity_ids)
    now = time.time()
    merged, single = {}, []
    for source in [events, *(snapshot.events_for(tenant_id, wanted) for snapshot in snapshots)]:
        for event in source:
            if event["seq"] is None:
                single.append(dict(event))
                continue
            key = (event["event"], event["seq"])
            if key not in merged:
                merged[key] = dict(event)
            else:
                merged[key]["recipients"] += event["recipients"]
                merged[key]["at"] = min(merged[key]["at"], event["at"])
    shown = sorted([*merged.values(), *single], key=lambda e: (e["at"], e["seq"] or 0), reverse=True)
    return {
        "subscribers": subscribers + sum(snapshot.subscribers(tenant_id, wanted) for snapshot in snapshots),
        "events": shown[:limit],
        **coverage(
            scope,
            min([now, *(snapshot.at for snapshot in snapshots)]),
            1 + len(snapshots),
            unreadable=unreadable,
            truncated=any(snapshot.truncated for snapshot in snapshots),
            problem=problem,
            idle=sum(snapshot.idle for snapshot in snapshots),
        ),
    }


# --- reading another worker's snapshot ------------------------------------------------------------------------------


class MalformedSnapshot(ValueError):
    """A snapshot that is not what :meth:`SocketActivity.snapshot` writes."""


@dataclass(frozen=True)
class Snapshot:
    """Another worker's figures, checked: only numbers and short strings, in the shapes expected."""

    worker: str
    at: float
    groups: tuple  # ((tenant, frozenset of entity ids, sockets), ...)
    recent: dict  # (tenant, entity) -> (event id, ...)
    events: dict  # event id -> event as shown
    truncated: bool
    idle: bool = False  # no figures computed (``idle_snapshot``)

    def subscribers(self, tenant_id, entity_ids):
        """Sockets of that worker following any of the tenant's ``entity_ids``."""
        return sum(
            n for tenant, entities, n in self.groups if tenant == tenant_id and not entities.isdisjoint(entity_ids)
        )

    def events_for(self, tenant_id, entity_ids):
        """That worker's events for any of the tenant's ``entity_ids``, each once."""
        ids = {i for entity_id in entity_ids for i in self.recent.get((tenant_id, entity_id), ())}
        return [self.events[i] for i in ids if i in self.events]

    @classmethod
    def parse(cls, blob, worker):
        """The snapshot in ``blob`` (bytes) shared by ``worker``; raises MalformedSnapshot."""
        if len(blob) > MAX_SNAPSHOT_BYTES:
            raise MalformedSnapshot(f"longer than {MAX_SNAPSHOT_BYTES} bytes")
        try:
            data = json.loads(blob)
        except (ValueError, RecursionError) as exc:
            raise MalformedSnapshot(f"not JSON: {str(exc)[:80]}") from None
        _check(isinstance(data, dict) and data.get("v") == SNAPSHOT_VERSION, "not a snapshot of this version")
        at = data.get("at")
        _check(_is_number(at) and at > 0, "no time")
        subscriptions, recent, events = data.get("subscriptions"), data.get("recent"), data.get("events")
        _check(_is_list(subscriptions, MAX_SHARED_GROUPS), "bad subscriptions")
        _check(_is_list(recent, MAX_SHARED_REFS) and _is_list(events, MAX_SHARED_REFS), "bad events")
        groups = []
        for group in subscriptions:
            _check(_is_list(group) and len(group) == 3, "bad subscription group")
            tenant, entities, n = group
            _check(_is_text(tenant) and _is_list(entities, MAX_GROUP_ENTITIES) and entities, "bad subscription group")
            _check(all(_is_text(e) for e in entities) and _is_count(n), "bad subscription group")
            groups.append((tenant, frozenset(entities), n))
        shown = {}
        for event in events:
            _check(isinstance(event, dict), "bad event")
            _check(_is_count(event.get("id")) and _is_number(event.get("at")), "bad event")
            _check(_is_text(event.get("event")) and _is_text(event.get("summary")), "bad event")
            _check(_is_count(event.get("recipients")), "bad event")
            _check(event.get("seq") is None or _is_count(event.get("seq")), "bad event")
            shown[event["id"]] = {k: event.get(k) for k in SHOWN_FIELDS}
        refs, total = {}, 0
        for ref in recent:
            _check(_is_list(ref) and len(ref) == 3, "bad event reference")
            tenant, entity, ids = ref
            _check(_is_text(tenant) and _is_text(entity) and _is_list(ids), "bad event reference")
            _check(all(_is_count(i) for i in ids), "bad event reference")
            total += len(ids)
            _check(total <= MAX_SHARED_REFS, "too many event references")
            refs[tenant, entity] = tuple(ids)
        truncated, idle = data.get("truncated", False), data.get("idle", False)
        _check(isinstance(truncated, bool), "bad truncated")
        _check(isinstance(idle, bool), "bad idle")
        return cls(worker, float(at), tuple(groups), refs, shown, truncated, idle)


def _check(condition, problem):
    if not condition:
        raise MalformedSnapshot(problem)


def _is_number(value):
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_count(value):
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_SHARED_COUNT


def _is_text(value):
    return isinstance(value, str) and len(value) <= MAX_SHARED_TEXT


def _is_list(value, limit=None):
    return isinstance(value, list) and (limit is None or len(value) <= limit)
