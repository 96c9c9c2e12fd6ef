"""The retry queue: nothing dropped while writes fail, order kept."""

import threading
import unittest

from networking_p4fabric import etcd_client


class TestRetryQueue(unittest.TestCase):

    def test_failed_entries_stay_queued_in_order(self):
        applied = []
        fail = [True]

        def apply(scope):
            if fail[0]:
                raise etcd_client.EtcdUnavailable('down')
            applied.append(scope)

        q = etcd_client.RetryQueue(apply, retry_interval=60)
        self.addCleanup(q.stop)
        q.put({'hosts/a'})
        q.put({'vlans/10', 'hosts/b'})
        self.assertFalse(q.flush())
        self.assertFalse(q.flush())
        self.assertEqual([frozenset({'hosts/a'}),
                          frozenset({'vlans/10', 'hosts/b'})], q.pending())
        # (The queue's own thread may have tried too.)
        self.assertGreaterEqual(q.failures, 2)
        fail[0] = False
        self.assertTrue(q.flush())
        self.assertEqual([{'hosts/a', 'vlans/10', 'hosts/b'}], applied)
        self.assertEqual([], q.pending())

    def test_full_sync_covers_everything(self):
        applied = []
        q = etcd_client.RetryQueue(applied.append, retry_interval=60)
        self.addCleanup(q.stop)
        q.put({'hosts/a'})
        q.put(etcd_client.ALL)
        self.assertTrue(q.flush())
        self.assertIs(etcd_client.ALL, applied[-1])
        self.assertEqual([], q.pending())

    def test_worker_retries_until_it_succeeds(self):
        calls = []
        done = threading.Event()

        def apply(scope):
            calls.append(scope)
            if len(calls) < 3:
                raise etcd_client.EtcdUnavailable('down')
            done.set()

        q = etcd_client.RetryQueue(apply, retry_interval=0.05)
        self.addCleanup(q.stop)
        q.put({'hosts/a'})
        q.kick()
        self.assertTrue(done.wait(10))
        self.assertEqual([], q.pending())
        self.assertEqual(3, len(calls))


if __name__ == '__main__':
    unittest.main()
