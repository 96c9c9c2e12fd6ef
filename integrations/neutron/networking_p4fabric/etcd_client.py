"""Our thin layer over etcd3gw (etcd's gRPC-JSON gateway, /v3/ on etcd
3.4+): a consistent read of the prefix, and guarded transactions (every
write compares the key's mod_revision with the one read, so two writers
never overwrite each other blindly), plus the ordered retry queue that
keeps postcommit writes from being lost while etcd is unreachable.
"""

import base64
import json
import os
import threading
import time
import urllib.parse

from etcd3gw.client import Etcd3Client
from etcd3gw import exceptions as etcd_exc
from oslo_log import log as logging

LOG = logging.getLogger(__name__)

# etcd's default --max-txn-ops is 128.
MAX_TXN_OPS = 100
MAX_BACKOFF = 30.0


def _b64(data):
    """The gateway's encoding of keys and values."""
    if isinstance(data, str):
        data = data.encode('utf-8')
    return base64.b64encode(data).decode('ascii')


def _unb64(text):
    return base64.b64decode(text or '')


def _prefix_end(prefix):
    """The end of the key range of everything starting with `prefix`."""
    b = bytearray(prefix.encode('utf-8'))
    b[-1] += 1
    return bytes(b)


class EtcdUnavailable(Exception):
    """No endpoint answered (down, timeout, or an error response)."""


class Conflict(Exception):
    """A guarded transaction failed: a key changed since it was read."""


class Current:
    """One key as read: its decoded JSON (None if not JSON) and revision."""

    def __init__(self, raw, mod_revision):
        self.raw = raw
        self.mod_revision = mod_revision
        try:
            self.value = json.loads(raw)
        except ValueError:
            self.value = None


class EtcdStore:
    """The configuration keys under one prefix, on one of several
    endpoints (the first that answers)."""

    def __init__(self, endpoints, prefix, timeout=5.0, ca_cert=None,
                 cert_file=None, key_file=None):
        if not prefix.endswith('/'):
            prefix += '/'
        self.prefix = prefix
        self._clients = []
        for url in endpoints:
            u = urllib.parse.urlsplit(url if '://' in url else 'http://' + url)
            self._clients.append(Etcd3Client(
                host=u.hostname or '127.0.0.1', port=u.port or 2379,
                protocol=u.scheme or 'http', ca_cert=ca_cert,
                cert_key=key_file, cert_cert=cert_file, timeout=timeout,
                api_path='/v3/'))
        if not self._clients:
            raise ValueError('no etcd endpoint configured')

    def _call(self, fn):
        errors = []
        for i, c in enumerate(self._clients):
            try:
                result = fn(c)
            except etcd_exc.Etcd3Exception as e:
                errors.append('%s:%s: %s %s' % (c.host, c.port,
                                                type(e).__name__,
                                                e.detail_text or e))
                continue
            if i:
                # Prefer the endpoint that answered next time.
                self._clients.insert(0, self._clients.pop(i))
            return result
        raise EtcdUnavailable('; '.join(errors))

    def snapshot(self):
        """(revision, {relative key: Current}) of everything under the
        prefix, read at one revision."""
        def read(c):
            return c.post(c.get_url('/kv/range'), json={
                'key': _b64(self.prefix),
                'range_end': _b64(_prefix_end(self.prefix))})
        resp = self._call(read)
        revision = int(resp.get('header', {}).get('revision', 0))
        out = {}
        for kv in resp.get('kvs', []):
            key = _unb64(kv['key']).decode('utf-8')
            raw = _unb64(kv.get('value'))
            out[key[len(self.prefix):]] = Current(
                raw, int(kv.get('mod_revision', 0)))
        return revision, out

    def commit(self, puts, deletes, expect):
        """Writes `puts` ({key: value}) and deletes `deletes` in one
        transaction, only if every key of `expect` ({key: mod_revision,
        0 = absent}) is unchanged. Raises Conflict otherwise."""
        compare, success = [], []
        for key, rev in expect.items():
            k = _b64(self.prefix + key)
            if rev:
                compare.append({'key': k, 'result': 'EQUAL',
                                'target': 'MOD', 'mod_revision': rev})
            else:
                compare.append({'key': k, 'result': 'EQUAL',
                                'target': 'CREATE', 'create_revision': 0})
        for key, value in puts.items():
            data = json.dumps(value, sort_keys=True, separators=(',', ':'))
            success.append({'request_put': {
                'key': _b64(self.prefix + key), 'value': _b64(data)}})
        for key in deletes:
            success.append({'request_delete_range': {
                'key': _b64(self.prefix + key)}})
        if not success:
            return
        resp = self._call(lambda c: c.transaction(
            {'compare': compare, 'success': success, 'failure': []}))
        # The gateway leaves out false booleans.
        if not resp.get('succeeded', False):
            raise Conflict(', '.join(sorted(expect)))


ALL = None  # a queue entry meaning "every key the driver owns"


class RetryQueue:
    """Keeps what must be brought in line with Neutron until it is.

    Entries are sets of keys (or ALL), in the order postcommit queued them.
    `flush` hands the union of the queued entries to `apply` (which reads
    Neutron's database at that moment, so a retried write carries the
    newest state, never an older one written after a newer); only when
    `apply` succeeds are those entries dropped. While etcd is unreachable a
    background thread (one per process: neutron-server forks its workers
    after loading the driver) retries with capped exponential backoff, and
    every `sync_interval` seconds queues a full sync.
    """

    def __init__(self, apply, retry_interval=1.0, sync_interval=0):
        self._apply = apply
        self._retry_interval = retry_interval
        self._sync_interval = sync_interval
        self._pending = []
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._pid = None
        self._thread = None
        self.failures = 0

    def put(self, keys):
        with self._lock:
            self._pending.append(ALL if keys is ALL else frozenset(keys))
        self._ensure_worker()

    def pending(self):
        with self._lock:
            return list(self._pending)

    def flush(self):
        """Applies everything queued so far; True if done (entries queued
        meanwhile are their writers' to flush), False if it failed and
        stays queued."""
        with self._flush_lock:
            with self._lock:
                taken = list(self._pending)
            if not taken:
                return True
            scope = set()
            for entry in taken:
                if entry is ALL:
                    scope = ALL
                    break
                scope |= entry
            try:
                self._apply(scope)
            except Exception as e:  # noqa: BLE001 - retried, never lost
                self.failures += 1
                LOG.warning('p4fabric: syncing %s to etcd failed, will '
                            'retry: %s', 'all keys' if scope is ALL else
                            ', '.join(sorted(scope)), e)
                return False
            with self._lock:
                del self._pending[:len(taken)]
            return True

    def kick(self):
        self._ensure_worker()
        self._wake.set()

    def stop(self):
        self._stopped.set()
        self._wake.set()
        t = self._thread
        if t is not None and t.is_alive():
            t.join(timeout=10)

    def _ensure_worker(self):
        if self._pid == os.getpid() and self._thread is not None:
            return
        with self._lock:
            if self._pid == os.getpid() and self._thread is not None:
                return
            self._pid = os.getpid()
            self._thread = threading.Thread(
                target=self._run, name='p4fabric-etcd', daemon=True)
            self._thread.start()

    def _run(self):
        delay = self._retry_interval
        next_sync = (time.monotonic() + self._sync_interval
                     if self._sync_interval else None)
        while not self._stopped.is_set():
            if next_sync is not None and time.monotonic() >= next_sync:
                with self._lock:
                    self._pending.append(ALL)
                next_sync = time.monotonic() + self._sync_interval
            if self.flush():
                delay = self._retry_interval
                timeout = (max(0.0, next_sync - time.monotonic())
                           if next_sync is not None else None)
            else:
                timeout = delay
                delay = min(delay * 2, MAX_BACKOFF)
            self._wake.wait(timeout)
            self._wake.clear()
