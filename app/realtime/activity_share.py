"""Sharing each worker's socket activity with the others, so the admin page counts every worker.

Every ACTIVITY_SHARE_INTERVAL a worker writes a snapshot of its figures
(``SocketActivity.snapshot``, JSON, bounded to MAX_SNAPSHOT_BYTES):

* to ``SERVER_RUN_DIR/activity-<pid>.json`` (replaced atomically), when that is
  set: the other workers of this gunicorn server read it;
* to Redis, when REDIS_URL is set: the key ``<REDIS_CHANNEL>:activity:<worker>``,
  expiring after STALE_INTERVALS intervals, listed in the sorted set
  ``<REDIS_CHANNEL>:activity-workers``; every worker of every node on the same
  Redis and channel reads them.

A reader uses Redis when it is set (it covers this node too) and the files when
not, or when Redis does not answer. A worker that stopped refreshing is not
counted: its key expires, and its file is ignored (and removed) once older than
STALE_INTERVALS intervals or when its process is gone. What is read is bounded
(MAX_WORKERS_READ snapshots of at most MAX_SNAPSHOT_BYTES) and checked
(``Snapshot.parse``); a malformed one is left out and logged once.
"""

import contextlib
import json
import logging
import os
import re
import secrets
import socket
import stat
import time

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from app.background import BackgroundLoop
from app.realtime.activity import (
    MAX_SHARED_GROUPS,
    MAX_SHARED_REFS,
    MAX_SNAPSHOT_BYTES,
    MalformedSnapshot,
    Snapshot,
    idle_snapshot,
)

log = logging.getLogger(__name__)

#: A snapshot not refreshed for this many intervals is taken as its worker's end.
STALE_INTERVALS = 3
#: Workers share their figures in full for this many intervals after an admin page last asked for them.
WANTED_INTERVALS = 30
#: The file in SERVER_RUN_DIR whose time says when an admin page last asked (not a snapshot: FILE_NAME skips it).
WANTED_FILE = "activity-wanted"
#: At most this many other workers' snapshots are read for one admin request (the freshest).
MAX_WORKERS_READ = 64
#: At most this many names in SERVER_RUN_DIR are looked at for snapshots.
MAX_FILES_SCANNED = 256
#: Seconds a Redis call may take, here and in the admin request.
REDIS_TIMEOUT = 1.0
#: The longest worker name believed from Redis.
MAX_WORKER_NAME = 200
#: Workers named in the Redis set that have not refreshed for this long are taken out of it (their keys expired).
REGISTRY_KEEP = 60.0
#: At most this many sources are each warned about once (a malformed snapshot is logged once, not every round).
MAX_WARNED = 64

FILE_NAME = re.compile(r"activity-([0-9]{1,10})\.json")


class ActivityShare(BackgroundLoop):
    """Writes this worker's snapshot every interval; reads the other workers' for the admin page."""

    def __init__(self, config, sio, activity):
        super().__init__(sio, config["ACTIVITY_SHARE_INTERVAL"])
        self._activity = activity
        self._run_dir = config["SERVER_RUN_DIR"] or None
        self._redis_url = config["REDIS_URL"] or None
        self._prefix = f"{config['REDIS_CHANNEL']}:activity"
        self._redis = None
        self._pid = self.worker = None
        self._name_worker()
        self._failing = set()  # the destinations whose last write failed ("file", "redis")
        self._warned = set()
        self.redis_down = False
        self._stopped = False

    @property
    def enabled(self):
        """True when there is somewhere to share: SERVER_RUN_DIR or REDIS_URL."""
        return bool(self._run_dir or self._redis_url)

    @property
    def stale_after(self):
        """Seconds after which an unrefreshed snapshot no longer counts."""
        return STALE_INTERVALS * self.interval

    def _name_worker(self):
        """This worker's names: its pid (its file) and a name unique on every node (its Redis key)."""
        self._pid = os.getpid()
        self.worker = f"{socket.gethostname()}:{self._pid}:{secrets.token_hex(4)}"

    def start(self):
        """Share every interval, when there is somewhere to share."""
        if os.getpid() != self._pid:  # the app was created before gunicorn forked this worker (preload_app)
            self._name_worker()
        self._stopped = False
        if self.enabled:
            super().start()

    def stop(self):
        """Stop sharing and withdraw this worker's snapshot, so that it is not counted any more."""
        running = self._running
        super().stop()
        self._stopped = True
        if running:
            self._withdraw()

    def step(self):
        """Share this worker's snapshot: in full while an admin page wants figures and another worker reads them.

        Otherwise it shares an idle one, which only says that it is here, and
        spares the CPU of the full one (in proportion to its rooms: about a third of
        the worker's CPU at 5 writes a second with 5,000 sockets on 5,000 entities,
        in stalls of tens of ms). An admin page asking for figures (``want``) marks
        them wanted for WANTED_INTERVALS intervals; every worker shares in full
        from its next round. Alone on its node (no other worker's file in
        SERVER_RUN_DIR) and without Redis, nobody reads it: idle too.
        """
        self.publish(full=(bool(self._redis_url) or self._has_siblings()) and self._wanted())

    def publish(self, full=True):
        """Write this worker's snapshot (``full``) or an idle one where it is shared."""
        blob = self.encode() if full else self.encode_idle()
        if self._run_dir:
            self._attempt("file", self._write_file, blob)
        if self._redis_url:
            self._attempt("redis", self._write_redis, blob)
        if self._stopped:  # stopped while writing: do not leave the snapshot behind
            self._withdraw()

    def encode(self):
        """This worker's snapshot as JSON bytes, at most MAX_SNAPSHOT_BYTES (fewer groups and events if need be)."""
        groups, refs = MAX_SHARED_GROUPS, MAX_SHARED_REFS
        while True:
            snapshot = self._activity.snapshot(groups, refs)
            snapshot["worker"] = self.worker
            blob = json.dumps(snapshot, separators=(",", ":")).encode()
            if len(blob) <= MAX_SNAPSHOT_BYTES or not (groups or refs):
                return blob
            self._warn_once(
                "size", "activity snapshot over %d bytes: sharing fewer rooms and events", MAX_SNAPSHOT_BYTES
            )
            groups, refs = groups // 2, refs // 2

    def encode_idle(self):
        """A snapshot of this worker without figures, as JSON bytes."""
        return json.dumps({**idle_snapshot(), "worker": self.worker}, separators=(",", ":")).encode()

    def want(self):
        """Mark the figures wanted (an admin page asks for them): every worker shares in full for a while.

        A file in SERVER_RUN_DIR (its time) and, with Redis, a key that expires.
        """
        if self._run_dir:
            try:
                fd = os.open(self._wanted_file, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600)
                try:
                    os.utime(fd)
                finally:
                    os.close(fd)
            except OSError as exc:
                self._warn_once("want", "activity: cannot mark the figures wanted in %s: %s", self._run_dir, exc)
        if self._redis_url and not self.redis_down:  # down: do not wait for it twice per request (others() tries)
            with contextlib.suppress(redis.RedisError):  # others() tells that Redis does not answer
                self._client().set(self._wanted_key, b"1", px=max(1, round(self._wanted_for * 1000)))

    def _wanted(self):
        """True when an admin page asked for figures within WANTED_INTERVALS intervals (or that cannot be told)."""
        if self._run_dir:
            try:
                if time.time() - os.stat(self._wanted_file, follow_symlinks=False).st_mtime <= self._wanted_for:
                    return True
            except FileNotFoundError:
                pass
            except OSError:
                return True
        if self._redis_url:
            try:
                return bool(self._client().exists(self._wanted_key))
            except redis.RedisError:
                return True
        return False

    @property
    def _wanted_for(self):
        return WANTED_INTERVALS * self.interval

    @property
    def _wanted_file(self):
        return os.path.join(self._run_dir, WANTED_FILE)

    @property
    def _wanted_key(self):
        return f"{self._prefix}-wanted"

    def others(self):
        """``(snapshots, scope, unreadable)``: the other workers' checked snapshots, freshest first, and their reach.

        ``scope``: "cluster" (Redis), "node" (SERVER_RUN_DIR: Redis unset or not
        answering) or "process" (neither). ``unreadable``: snapshots left out as malformed.
        """
        if self._redis_url:
            try:
                found = self._read_redis()
            except redis.RedisError as exc:
                if not self.redis_down:
                    log.warning("activity: Redis did not answer (%s); counting this server's workers only", exc)
                self.redis_down = True
            else:
                if self.redis_down:
                    log.info("activity: Redis answers again")
                self.redis_down = False
                return found[0], "cluster", found[1]
        if self._run_dir:
            found = self._read_files()
            return found[0], "node", found[1]
        return [], "process", 0

    # --- files in SERVER_RUN_DIR --------------------------------------------------------------------------------------

    def _file(self, pid):
        return os.path.join(self._run_dir, f"activity-{pid}.json")

    def _write_file(self, blob):
        temporary = os.path.join(self._run_dir, f".activity-{self._pid}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(blob)
        os.replace(temporary, self._file(self._pid))

    def _sibling_files(self):
        """``[(pid, path)]``: the other workers' snapshot files among the first MAX_FILES_SCANNED names, or None."""
        candidates = []
        try:
            with os.scandir(self._run_dir) as entries:
                for scanned, entry in enumerate(entries):
                    if scanned >= MAX_FILES_SCANNED:
                        self._warn_once("scan", "activity: more than %d names in %s", MAX_FILES_SCANNED, self._run_dir)
                        break
                    match = FILE_NAME.fullmatch(entry.name)
                    if match and int(match[1]) != self._pid:
                        candidates.append((int(match[1]), entry.path))
        except OSError as exc:
            self._warn_once("scandir", "activity: cannot list %s: %s", self._run_dir, exc)
            return None
        return candidates

    def _has_siblings(self):
        """True when another live worker of this node has a snapshot file: that worker reads this one's."""
        if not self._run_dir:
            return False
        candidates = self._sibling_files()
        return candidates is None or any(_process_exists(pid) for pid, _ in candidates)  # unlistable: share

    def _read_files(self):
        """The other workers' snapshot files: the freshest MAX_WORKERS_READ of the first MAX_FILES_SCANNED names."""
        now = time.time()
        candidates = self._sibling_files()
        if candidates is None:
            return [], 0
        found = []
        for pid, path in candidates:
            try:
                info = os.stat(path, follow_symlinks=False)
            except OSError:
                continue  # removed meanwhile
            if not stat.S_ISREG(info.st_mode):
                self._warn_once(path, "activity: %s is not a regular file; ignored", path)
                continue
            if now - info.st_mtime > self.stale_after or not _process_exists(pid):
                _remove(path)  # that worker is gone (a new one has a new pid)
                continue
            found.append((info.st_mtime, pid, path))
        found.sort(reverse=True)
        snapshots, unreadable = [], 0
        for _mtime, pid, path in found[:MAX_WORKERS_READ]:
            try:
                blob = _read_regular_file(path, MAX_SNAPSHOT_BYTES + 1)
            except OSError:
                continue  # replaced or removed meanwhile
            snapshot = self._parse(blob, str(pid), path)
            if snapshot is None:
                unreadable += 1
            else:
                snapshots.append(snapshot)
        return snapshots, unreadable

    # --- Redis -------------------------------------------------------------------------------------------------------

    def _client(self):
        if self._redis is None:
            # No retries: a call that fails is tried again next round (or next admin request).
            self._redis = redis.Redis.from_url(
                self._redis_url,
                socket_timeout=REDIS_TIMEOUT,
                socket_connect_timeout=REDIS_TIMEOUT,
                retry=Retry(NoBackoff(), 0),
            )
        return self._redis

    @property
    def _registry(self):
        return f"{self._prefix}-workers"

    def _key(self, worker):
        return f"{self._prefix}:{worker}"

    def _write_redis(self, blob):
        now = time.time()
        ttl = max(1, round(self.stale_after * 1000))
        pipe = self._client().pipeline(transaction=False)
        pipe.set(self._key(self.worker), blob, px=ttl)
        pipe.zadd(self._registry, {self.worker: now})
        pipe.zremrangebyscore(self._registry, "-inf", now - max(REGISTRY_KEEP, 2 * self.stale_after))
        pipe.pexpire(self._registry, max(ttl, round(REGISTRY_KEEP * 1000)))
        pipe.execute()

    def _read_redis(self):
        """The other workers' snapshots in Redis: the MAX_WORKERS_READ most recently registered."""
        client = self._client()
        names = []
        for raw in client.zrevrange(self._registry, 0, MAX_WORKERS_READ):
            try:
                name = raw.decode()
            except UnicodeDecodeError:
                continue
            if len(name) <= MAX_WORKER_NAME and name != self.worker:
                names.append(name)
        names = names[:MAX_WORKERS_READ]
        if not names:
            return [], 0
        pipe = client.pipeline(transaction=False)
        for name in names:
            pipe.getrange(self._key(name), 0, MAX_SNAPSHOT_BYTES)  # at most one byte more than allowed
        snapshots, unreadable = [], 0
        for name, blob in zip(names, pipe.execute(), strict=True):
            if not blob:
                continue  # expired: that worker is gone
            snapshot = self._parse(blob, name, f"Redis key {self._key(name)}")
            if snapshot is None:
                unreadable += 1
            else:
                snapshots.append(snapshot)
        return snapshots, unreadable

    # --- helpers -----------------------------------------------------------------------------------------------------

    def _parse(self, blob, worker, where):
        try:
            return Snapshot.parse(blob, worker)
        except MalformedSnapshot as exc:
            self._warn_once(where, "activity: ignoring the snapshot in %s: %s", where, exc)
            return None

    def _attempt(self, destination, write, blob):
        """One write, logged when it starts failing and when it works again (not every round)."""
        try:
            write(blob)
        except (OSError, redis.RedisError) as exc:
            if destination not in self._failing:
                log.warning("activity: cannot share this worker's snapshot (%s): %s", destination, exc)
            self._failing.add(destination)
        else:
            if destination in self._failing:
                log.info("activity: sharing this worker's snapshot again (%s)", destination)
            self._failing.discard(destination)

    def _withdraw(self):
        """Take this worker's snapshot away (its file, its Redis key)."""
        if self._run_dir:
            _remove(self._file(self._pid))
        if self._redis_url:
            try:
                pipe = self._client().pipeline(transaction=False)
                pipe.delete(self._key(self.worker))
                pipe.zrem(self._registry, self.worker)
                pipe.execute()
            except redis.RedisError as exc:  # the key expires by itself
                log.warning("activity: could not remove this worker's snapshot from Redis: %s", exc)

    def _warn_once(self, source, message, *args):
        if source in self._warned or len(self._warned) >= MAX_WARNED:
            return
        self._warned.add(source)
        log.warning(message, *args)


def _read_regular_file(path, limit):
    """At most ``limit`` bytes of the regular file at ``path`` (not through a symlink; a FIFO never blocks)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as source:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path} is not a regular file")
        return source.read(limit)


def _remove(path):
    with contextlib.suppress(OSError):
        os.remove(path)


def _process_exists(pid):
    """True when a process ``pid`` exists on this machine (SERVER_RUN_DIR is per node)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
