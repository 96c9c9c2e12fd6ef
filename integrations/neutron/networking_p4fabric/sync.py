"""Making etcd equal to Neutron for the keys the driver owns.

One routine serves both the single writes of postcommit (a scope of a few
keys) and the full sync (every key): read etcd, then read Neutron's
database, then write the difference in guarded transactions (each key's
mod_revision as read, or "absent"). Reading etcd *before* the database
means a conflicting writer (another neutron-server worker or host) either
wrote before our read — then our database read is at least as new as
theirs — or after it, and our transaction fails and is redone from the
start. Keys an operator wrote (no ``"owner": "neutron"``) are never
changed or deleted.
"""

from oslo_log import log as logging

from networking_p4fabric import etcd_client
from networking_p4fabric import mapping as m

LOG = logging.getLogger(__name__)

MAX_ATTEMPTS = 10


class Reconciler:
    def __init__(self, store, load_desired):
        """`load_desired(scope)` returns {key: value} from Neutron's
        database, right for every key in `scope` (it may leave out the
        rest)."""
        self._store = store
        self._load_desired = load_desired
        self.conflicts = 0

    def __call__(self, scope):
        """Brings `scope` (a set of relative keys and directories ending
        in '/', or etcd_client.ALL) in line; raises EtcdUnavailable (the caller retries later)."""
        for _ in range(MAX_ATTEMPTS):
            try:
                return self._once(scope)
            except etcd_client.Conflict as e:
                self.conflicts += 1
                LOG.debug('p4fabric: %s changed meanwhile, redoing', e)
        raise etcd_client.EtcdUnavailable(
            'keys kept changing under %d attempts' % MAX_ATTEMPTS)

    def _once(self, scope):
        _, current = self._store.snapshot()
        want = self._load_desired(scope)
        keys = set()
        for entry in ([''] if scope is etcd_client.ALL else scope):
            if entry.endswith('/') or entry == '':
                # A directory (or everything): the owned keys under it and
                # the wanted ones.
                keys |= {k for k, c in current.items()
                         if k.startswith(entry) and m.is_owned(c.value)}
                keys |= {k for k in want if k.startswith(entry)}
            else:
                keys.add(entry)
        changes = []  # (key, new value or None, expected mod_revision)
        for key in sorted(keys):
            cur = current.get(key)
            new = want.get(key)
            if cur is not None and not m.is_owned(cur.value):
                if new is not None:
                    LOG.warning('p4fabric: %s exists and is not owned by '
                                'neutron (an operator wrote it): left as is',
                                key)
                continue
            if new is None:
                if cur is not None:
                    changes.append((key, None, cur.mod_revision))
            elif cur is None or cur.value != new:
                changes.append((key, new, cur.mod_revision if cur else 0))
        # Within one transaction order does not matter; when a full sync
        # needs several, VLANs come before the attachments and hosts that
        # use them (and go after them), so each one is valid on its own.
        changes.sort(key=_order)
        for i in range(0, len(changes), etcd_client.MAX_TXN_OPS):
            chunk = changes[i:i + etcd_client.MAX_TXN_OPS]
            self._store.commit(
                {k: v for k, v, _ in chunk if v is not None},
                [k for k, v, _ in chunk if v is None],
                {k: rev for k, _, rev in chunk})
        for key, v, _ in changes:
            LOG.info('p4fabric: %s %s', 'put' if v is not None else 'deleted',
                     key)
        return changes


def _order(change):
    key, value, _ = change
    kind = key.split('/', 1)[0]
    rank = {'vlans': 0, 'ports': 1, 'lags': 1, 'hosts': 2}.get(kind, 3)
    # Puts: VLANs, then attachments, then hosts; deletes the other way.
    return (1, -rank, key) if value is None else (0, rank, key)
