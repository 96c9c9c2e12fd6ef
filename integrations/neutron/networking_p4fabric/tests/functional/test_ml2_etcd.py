"""The driver inside real Neutron: ML2 loads `p4fabric` through its entry
point (Neutron's own plugin test base, sqlite), against a real etcd
started here. With $P4FABRIC_BIN, the keys written are then handed to the
p4fabric controller (`p4fabric check`): no rejected key, and the new
port's host reachable on in-process switches."""

import json
import os
import signal
import subprocess
import tempfile
import threading
import time
from unittest import mock

from neutron.conf.plugins.ml2 import config as ml2_config
from neutron.tests.unit.plugins.ml2 import test_plugin
from neutron_lib.api.definitions import portbindings
from oslo_config import cfg

from networking_p4fabric import config
from networking_p4fabric import etcd_client
from networking_p4fabric.ml2 import mech_driver
from networking_p4fabric.tests import etcd_server

ETCD = None
PREFIX = '/p4fabric/v1/'


def setUpModule():
    global ETCD
    ETCD = etcd_server.EtcdServer().start()


def tearDownModule():
    if ETCD is not None:
        ETCD.close()


def _store():
    return etcd_client.EtcdStore([ETCD.endpoint], PREFIX)


def keys():
    """{relative key: decoded value} of everything under the prefix."""
    _, cur = _store().snapshot()
    return {k: c.value if c.value is not None else c.raw
            for k, c in cur.items()}


def put_raw(key, value):
    """Writes a key as another writer would (no guard)."""
    s = _store()
    _, cur = s.snapshot()
    s.commit({key: value}, [], {key: cur[key].mod_revision if key in cur
                                else 0})


def wait_for(pred, timeout=20.0, what='condition'):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError('timed out after %ss waiting for %s; etcd holds %s'
                         % (timeout, what, json.dumps(keys(), indent=1)))


class P4FabricTestBase(test_plugin.Ml2PluginV2TestCase):
    _mechanism_drivers = ['logger', 'p4fabric']

    def setUp(self):
        # Every test starts with an empty prefix.
        _store()._call(lambda c: c.delete_prefix(PREFIX))
        config.register_opts(cfg.CONF)
        for name, value in {
                'etcd_endpoints': [ETCD.endpoint],
                'etcd_prefix': PREFIX,
                'etcd_timeout': 2.0,
                'host_attachments': {'compute1': 'leaf1/3',
                                     'compute2': 'lag:bond1'},
                'lags': ['bond1:1:leaf1/4+leaf2/4:static',
                         'bm1:2:leaf1/5+leaf2/5:static'],
                'sync_interval': 0,
                'retry_interval': 0.1}.items():
            cfg.CONF.set_override(name, value, group=config.GROUP)
        ml2_config.register_ml2_plugin_opts()
        cfg.CONF.set_override('project_network_types', ['vlan'],
                              group='ml2')
        super().setUp()
        self.mech = self.driver.mechanism_manager.mech_drivers[
            'p4fabric'].obj
        self.addCleanup(self.mech.stop)
        # The sync at start (queued by initialize) has nothing to do yet;
        # run it now so it cannot interleave with a test's own steps.
        self.assertTrue(self.mech.queue.flush())

    # -- helpers ----------------------------------------------------------

    def make_net(self, name='net1'):
        net = self._make_network(self.fmt, name, True, as_admin=True)['network']
        return net, net['provider:segmentation_id']

    def make_subnet(self, net, cidr='10.0.10.0/24', gateway='10.0.10.1',
                    ip_version=4, **kw):
        return self._make_subnet(self.fmt, {'network': net}, gateway, cidr,
                                 ip_version=ip_version, **kw)['subnet']

    def make_port(self, net, host=None, vnic_type=None, profile=None,
                  expected=None, **kw):
        args = {}
        if host is not None:
            args[portbindings.HOST_ID] = host
        if vnic_type is not None:
            args[portbindings.VNIC_TYPE] = vnic_type
        if profile is not None:
            args[portbindings.PROFILE] = profile
        args.update(kw)
        # binding:profile is the service role's (Nova, Ironic) to write.
        res = self._create_port(self.fmt, net['id'],
                                is_admin=profile is None,
                                is_service=profile is not None,
                                arg_list=tuple(args), **args)
        self._check_http_response(res)
        return self.deserialize(self.fmt, res)['port']

    def update_port(self, port_id, **attrs):
        return self._update('ports', port_id, {'port': attrs},
                            as_admin=True)['port']


class TestNetworksAndSubnets(P4FabricTestBase):

    def test_network_and_subnets_map_to_the_vlan_key(self):
        net, vlan = self.make_net('web')
        key = 'vlans/%d' % vlan
        self.assertEqual({'name': 'web', 'tenant': net['project_id'],
                          'owner': 'neutron'}, keys()[key])

        v4 = self.make_subnet(net, allocation_pools=[
            {'start': '10.0.10.10', 'end': '10.0.10.200'}])
        self.make_subnet(net, '2001:db8:10::/64', '2001:db8:10::1', 6)
        v = keys()[key]
        self.assertEqual('10.0.10.1/24', v['ipv4_gateway'])
        self.assertEqual('2001:db8:10::1/64', v['ipv6_gateway'])

        self._update('networks', net['id'], {'network': {'name': 'www'}})
        self._update('subnets', v4['id'],
                     {'subnet': {'gateway_ip': '10.0.10.254'}})
        v = keys()[key]
        self.assertEqual('www', v['name'])
        self.assertEqual('10.0.10.254/24', v['ipv4_gateway'])

        # No gateway: bridged only for that family.
        self._update('subnets', v4['id'], {'subnet': {'gateway_ip': None}})
        self.assertNotIn('ipv4_gateway', keys()[key])

        self._delete('subnets', v4['id'])
        v = keys()[key]
        self.assertNotIn('ipv4_gateway', v)
        self.assertEqual('2001:db8:10::1/64', v['ipv6_gateway'])

        self._delete('networks', net['id'])
        self.assertNotIn(key, keys())

    def test_operator_key_is_never_touched(self):
        # An operator wrote vlans/N before Neutron allocated N.
        net, vlan = self.make_net()
        key = 'vlans/%d' % vlan
        put_raw(key, {'name': 'operator'})
        self.make_subnet(net)
        self.assertEqual({'name': 'operator'}, keys()[key])
        self.assertTrue(self.mech.full_sync())
        self.assertEqual({'name': 'operator'}, keys()[key])
        self._delete('networks', net['id'])
        self.assertEqual({'name': 'operator'}, keys()[key])


class TestPortBinding(P4FabricTestBase):

    def test_known_host_is_bound_and_written(self):
        net, vlan = self.make_net()
        self.make_subnet(net)
        port = self.make_port(net, host='compute1')
        self.assertEqual(portbindings.VIF_TYPE_OTHER,
                         port[portbindings.VIF_TYPE])
        k = keys()
        self.assertEqual({'mac': port['mac_address'], 'vlan': vlan,
                          'ips': [ip['ip_address']
                                  for ip in port['fixed_ips']],
                          'attachment': {'port': 'leaf1/3'},
                          'owner': 'neutron'}, k['hosts/' + port['id']])
        self.assertEqual({'mode': 'trunk', 'vlans': [vlan],
                          'description': 'neutron', 'owner': 'neutron'},
                         k['ports/leaf1/3'])

        # Moved to the bonded hypervisor: the LAG carries the VLAN, the
        # old port is no longer needed.
        self.update_port(port['id'], **{portbindings.HOST_ID: 'compute2'})
        k = keys()
        self.assertEqual({'lag': 'bond1'},
                         k['hosts/' + port['id']]['attachment'])
        self.assertEqual({'id': 1, 'members': ['leaf1/4', 'leaf2/4'],
                          'protocol': 'static', 'mode': 'trunk',
                          'vlans': [vlan], 'description': 'neutron',
                          'owner': 'neutron'}, k['lags/bond1'])
        self.assertNotIn('ports/leaf1/3', k)

        # A second network on the same hypervisor: the trunk grows.
        net2, vlan2 = self.make_net('net2')
        self.make_subnet(net2, '10.0.20.0/24', '10.0.20.1')
        port2 = self.make_port(net2, host='compute2')
        self.assertEqual(sorted([vlan, vlan2]),
                         keys()['lags/bond1']['vlans'])

        self._delete('ports', port['id'])
        k = keys()
        self.assertNotIn('hosts/' + port['id'], k)
        self.assertEqual([vlan2], k['lags/bond1']['vlans'])
        self.update_port(port2['id'], **{portbindings.HOST_ID: ''})
        k = keys()
        self.assertNotIn('hosts/' + port2['id'], k)
        self.assertNotIn('lags/bond1', k)

    def test_unknown_host_is_not_bound(self):
        net, _ = self.make_net()
        self.make_subnet(net)
        with mock.patch.object(mech_driver.LOG, 'info') as info:
            port = self.make_port(net, host='compute9')
        self.assertEqual(portbindings.VIF_TYPE_BINDING_FAILED,
                         port[portbindings.VIF_TYPE])
        reasons = [c.args[0] % c.args[1:] for c in info.call_args_list]
        self.assertTrue(any('not binding port %s on host compute9' %
                            port['id'] in r and 'host_attachments' in r
                            for r in reasons), reasons)
        self.assertFalse([k for k in keys() if k.startswith('hosts/')])

    def test_baremetal_links(self):
        net, vlan = self.make_net()
        self.make_subnet(net)
        links = [{'switch_info': 'leaf1', 'port_id': '5',
                  'switch_id': 'aa:bb:cc:00:00:01'},
                 {'switch_info': 'leaf2', 'port_id': '5',
                  'switch_id': 'aa:bb:cc:00:00:02'}]
        bonded = self.make_port(
            net, host='ironic-conductor', vnic_type='baremetal',
            profile={'local_link_information': links})
        self.assertEqual(portbindings.VIF_TYPE_OTHER,
                         bonded[portbindings.VIF_TYPE])
        single = self.make_port(
            net, host='ironic-conductor', vnic_type='baremetal',
            profile={'local_link_information': [
                {'switch_info': 'leaf2', 'port_id': '6'}]})
        k = keys()
        self.assertEqual({'lag': 'bm1'},
                         k['hosts/' + bonded['id']]['attachment'])
        self.assertEqual({'id': 2, 'members': ['leaf1/5', 'leaf2/5'],
                          'protocol': 'static', 'mode': 'access',
                          'vlan': vlan, 'description': 'neutron',
                          'owner': 'neutron'}, k['lags/bm1'])
        self.assertEqual({'port': 'leaf2/6'},
                         k['hosts/' + single['id']]['attachment'])
        self.assertEqual({'mode': 'access', 'vlan': vlan,
                          'description': 'neutron', 'owner': 'neutron'},
                         k['ports/leaf2/6'])

        # Links no LAG matches: refused, never a guessed attachment.
        odd = self.make_port(
            net, host='ironic-conductor', vnic_type='baremetal',
            profile={'local_link_information': [
                {'switch_info': 'leaf1', 'port_id': '7'},
                {'switch_info': 'leaf2', 'port_id': '7'}]})
        self.assertEqual(portbindings.VIF_TYPE_BINDING_FAILED,
                         odd[portbindings.VIF_TYPE])
        self.assertNotIn('hosts/' + odd['id'], keys())

        self._delete('ports', single['id'])
        self.assertNotIn('ports/leaf2/6', keys())


class TestNothingLost(P4FabricTestBase):

    def test_port_created_while_etcd_is_down_appears_after(self):
        net, vlan = self.make_net()
        self.make_subnet(net)
        ETCD.stop()
        try:
            port = self.make_port(net, host='compute1')
            self.assertEqual(portbindings.VIF_TYPE_OTHER,
                             port[portbindings.VIF_TYPE])
            self.assertTrue(self.mech.queue.pending())
            self.assertGreater(self.mech.queue.failures, 0)
        finally:
            ETCD.start()
        # The retry thread writes it, nobody calls the driver again.
        key = 'hosts/' + port['id']
        wait_for(lambda: key in keys(), what=key)
        self.assertEqual(vlan, keys()[key]['vlan'])
        self.assertEqual([vlan], keys()['ports/leaf1/3']['vlans'])
        wait_for(lambda: not self.mech.queue.pending(), what='empty queue')

    def test_port_created_while_etcd_hangs_appears_after(self):
        # etcd frozen (SIGSTOP): requests time out (etcd_timeout, 2 s here)
        # instead of being refused.
        net, vlan = self.make_net()
        self.make_subnet(net)
        ETCD.proc.send_signal(signal.SIGSTOP)
        try:
            port = self.make_port(net, host='compute1')
            self.assertTrue(self.mech.queue.pending())
        finally:
            ETCD.proc.send_signal(signal.SIGCONT)
        key = 'hosts/' + port['id']
        wait_for(lambda: key in keys(), what=key)
        self.assertEqual(vlan, keys()[key]['vlan'])

    def test_full_sync_repairs_what_changed_while_down(self):
        net, vlan = self.make_net()
        self.make_subnet(net)
        port = self.make_port(net, host='compute1')
        good = keys()
        host_key = 'hosts/' + port['id']
        vlan_key = 'vlans/%d' % vlan
        # While the driver was down: its host key deleted, its VLAN key
        # changed, a binding of a port Neutron no longer has left behind,
        # and an operator key that is not the driver's business.
        s = _store()
        _, cur = s.snapshot()
        s.commit({}, [host_key], {host_key: cur[host_key].mod_revision})
        put_raw(vlan_key, dict(good[vlan_key], ipv4_gateway='10.9.9.1/24'))
        put_raw('hosts/gone', {'mac': '02:00:00:00:09:09', 'vlan': vlan,
                               'attachment': {'port': 'leaf1/3'},
                               'owner': 'neutron'})
        put_raw('vlans/3000', {'name': 'operator'})

        # A driver starting (a neutron-server restart) syncs on its own.
        fresh = mech_driver.P4FabricMechanismDriver()
        fresh.initialize()
        self.addCleanup(fresh.stop)
        wait_for(lambda: host_key in keys() and 'hosts/gone' not in keys(),
                 what='the sync at start')
        want = dict(good, **{'vlans/3000': {'name': 'operator'}})
        self.assertEqual(want, keys())

    def test_periodic_sync_repairs_without_any_call(self):
        net, vlan = self.make_net()
        self.make_subnet(net)
        port = self.make_port(net, host='compute1')
        good = keys()
        cfg.CONF.set_override('sync_interval', 1, group=config.GROUP)
        ticking = mech_driver.P4FabricMechanismDriver()
        ticking.initialize()
        self.addCleanup(ticking.stop)
        wait_for(lambda: not ticking.queue.pending(), what='sync at start')
        host_key = 'hosts/' + port['id']
        s = _store()
        _, cur = s.snapshot()
        s.commit({}, [host_key], {host_key: cur[host_key].mod_revision})
        wait_for(lambda: host_key in keys(), timeout=10,
                 what='the periodic sync to restore ' + host_key)
        self.assertEqual(good, keys())

    def test_workers_do_not_fight(self):
        net, vlan = self.make_net()
        self.make_subnet(net)
        port = self.make_port(net, host='compute1')
        good = keys()
        vlan_key = 'vlans/%d' % vlan
        # Worker B changes the VLAN key after worker A read etcd, before A
        # writes: A's guarded transaction fails and A redoes its work from
        # a fresh read instead of overwriting B.
        other = mech_driver.P4FabricMechanismDriver()
        other.initialize()
        self.addCleanup(other.stop)
        self.assertTrue(other.queue.flush())
        real = self.mech.reconciler._load_desired
        put_raw(vlan_key, dict(good[vlan_key], name='stale1'))
        raced = []

        def load_then_race(scope):
            if not raced:
                raced.append(True)
                put_raw(vlan_key, dict(good[vlan_key], name='stale2'))
            return real(scope)
        self.mech.reconciler._load_desired = load_then_race
        self.assertTrue(self.mech.full_sync())
        self.assertEqual([True], raced)
        self.assertGreaterEqual(self.mech.reconciler.conflicts, 1)
        self.assertEqual(good, keys())

        # Many writers at once: the result is Neutron's state. (The test
        # database is one in-memory sqlite connection that cannot serve
        # two threads at once, so the database reads take turns; the etcd
        # reads and guarded writes race freely.)
        db = threading.Lock()

        def serialized(load):
            def call(scope):
                with db:
                    return load(scope)
            return call
        self.mech.reconciler._load_desired = serialized(real)
        other.reconciler._load_desired = serialized(
            other.reconciler._load_desired)
        put_raw(vlan_key, dict(good[vlan_key], name='stale'))
        self._delete('ports', port['id'])
        after = dict(keys(), **{vlan_key: good[vlan_key]})
        results = []
        threads = [threading.Thread(
            target=lambda d=d: results.append(d.full_sync()))
            for d in (self.mech, other) * 3]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual([True] * 6, results)
        self.assertEqual(after, keys())
        self.assertEqual(net['name'], after[vlan_key]['name'])


def _free_port():
    return etcd_server._free_port()


FABRIC = """
switches:
  leaf1: {{address: "127.0.0.1:{0}", device_id: 1, role: leaf, label: 101, fabric_ports: [1]}}
  leaf2: {{address: "127.0.0.1:{1}", device_id: 2, role: leaf, label: 102, fabric_ports: [1]}}
  spine1: {{address: "127.0.0.1:{2}", device_id: 3, role: spine, label: 201, fabric_ports: [1, 2]}}
links:
  l1: {{a: leaf1/1, b: spine1/1}}
  l2: {{a: leaf2/1, b: spine1/2}}
vlans:
  200: {{name: infra, ipv4_gateway: 10.0.200.1/24}}
ports:
  leaf2/3: {{mode: access, vlan: 200}}
hosts:
  existing: {{mac: "02:00:00:00:02:0a", vlan: 200, ips: [10.0.200.10], attachment: {{port: leaf2/3}}}}
"""


class TestControllerAcceptsKeys(P4FabricTestBase):
    """Closes the loop through the p4fabric binary (run-tests.sh builds it
    and sets P4FABRIC_BIN)."""

    def p4fabric(self, *args):
        return subprocess.run(
            [self.bin] + list(args) + ['--etcd', ETCD.endpoint],
            capture_output=True, text=True, timeout=180)

    def test_new_port_reaches_existing_host(self):
        self.bin = os.environ.get('P4FABRIC_BIN')
        if not self.bin:
            self.skipTest('P4FABRIC_BIN not set (run-tests.sh sets it)')
        with tempfile.NamedTemporaryFile('w', suffix='.yaml') as f:
            f.write(FABRIC.format(_free_port(), _free_port(), _free_port()))
            f.flush()
            r = self.p4fabric('apply', '-f', f.name)
            self.assertEqual(0, r.returncode, r.stdout + r.stderr)

            net, vlan = self.make_net('tenant')
            self.make_subnet(net)
            vm = self.make_port(net, host='compute1')
            bm = self.make_port(
                net, host='ironic', vnic_type='baremetal',
                profile={'local_link_information': [
                    {'switch_info': 'leaf1', 'port_id': '5'},
                    {'switch_info': 'leaf2', 'port_id': '5'}]})
            for port in (vm, bm):
                self.assertIn('hosts/' + port['id'], keys())

            # The operator re-applies the fabric with --prune: Neutron's
            # keys stay.
            before = keys()
            r = self.p4fabric('apply', '--prune', '-f', f.name)
            self.assertEqual(0, r.returncode, r.stdout + r.stderr)
            self.assertEqual(before, keys())

        for src, dst in ((vm['id'], 'existing'), ('existing', bm['id']),
                         (bm['id'], vm['id'])):
            r = self.p4fabric('check', '--from', src, '--to', dst)
            print(r.stdout)
            self.assertEqual(0, r.returncode, r.stdout + r.stderr)
            self.assertIn('0 rejected key(s)', r.stdout)
            self.assertIn('reachable', r.stdout)

        # The check can fail: a host on a VLAN the fabric does not have.
        put_raw('hosts/bogus', {'mac': '02:00:00:00:0b:0b', 'vlan': 4000,
                                'attachment': {'port': 'leaf1/3'},
                                'owner': 'neutron'})
        r = self.p4fabric('check', '--from', vm['id'], '--to', 'existing')
        self.assertNotEqual(0, r.returncode, r.stdout)
        self.assertIn('REJECTED hosts/bogus', r.stdout)
