"""A real etcd for the tests: Debian's etcd-server (or $P4FABRIC_ETCD_BIN)
on 127.0.0.1, free ports, a temporary data directory; stoppable and
restartable on the same ports and data (the "etcd down" tests)."""

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request


def binary():
    path = os.environ.get('P4FABRIC_ETCD_BIN') or shutil.which('etcd') or \
        '/usr/bin/etcd'
    return path if os.path.exists(path) else None


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


class EtcdServer:
    def __init__(self):
        self.bin = binary()
        if self.bin is None:
            raise RuntimeError('etcd not installed (apt-get install '
                               'etcd-server, or set P4FABRIC_ETCD_BIN)')
        self.dir = tempfile.mkdtemp(prefix='p4fabric-neutron-etcd-')
        self.client_port = _free_port()
        self.peer_port = _free_port()
        self.proc = None
        self.log = open(os.path.join(self.dir, 'etcd.log'), 'ab')

    @property
    def endpoint(self):
        return 'http://127.0.0.1:%d' % self.client_port

    def start(self, timeout=20):
        client = self.endpoint
        peer = 'http://127.0.0.1:%d' % self.peer_port
        self.proc = subprocess.Popen(
            [self.bin, '--name=default',
             '--data-dir=' + os.path.join(self.dir, 'data'),
             '--listen-client-urls=' + client,
             '--advertise-client-urls=' + client,
             '--listen-peer-urls=' + peer,
             '--initial-advertise-peer-urls=' + peer,
             '--initial-cluster=default=' + peer,
             '--log-level=warn'],
            stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError('etcd exited: see %s/etcd.log' % self.dir)
            try:
                with urllib.request.urlopen(client + '/health',
                                            timeout=1) as r:
                    if json.load(r).get('health') == 'true':
                        return self
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError('etcd did not become healthy in %ss' % timeout)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def close(self):
        self.stop()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
