"""The pure mapping from Neutron dicts to p4fabric keys."""

import unittest

from networking_p4fabric import mapping as m


def mapping():
    return m.Mapping({'compute1': 'leaf1/3', 'compute2': 'lag:bond1'},
                     ['bond1:1:leaf1/4+leaf2/4', 'bm1:7:leaf1/5+leaf2/5:static'],
                     {'sw-a': 'leaf1'})


class TestOptions(unittest.TestCase):

    def test_bad_options_are_refused(self):
        for lags in (['bond1'], ['bond1:0:leaf1/4'], ['bond1:1:leaf1'],
                     ['bond1:1:leaf1/4:fast'], ['bad name:1:leaf1/4'],
                     ['bond1:1:']):
            with self.assertRaises(m.ConfigError, msg=lags):
                m.parse_lags(lags)
        with self.assertRaises(m.ConfigError):
            m.Mapping({'c1': 'lag:nope'}, [])
        with self.assertRaises(m.ConfigError):
            m.Mapping({'c1': 'leaf1'}, [])

    def test_lag_option(self):
        lag = m.parse_lags(['bm1:7:leaf1/5+leaf2/5:static'])['bm1']
        self.assertEqual((7, 'static', ['leaf1/5', 'leaf2/5']),
                         (lag.lag_id, lag.protocol,
                          [p.ref() for p in lag.members]))


class TestResolve(unittest.TestCase):

    def test_hosts(self):
        mp = mapping()
        self.assertEqual((m.PortAttachment('leaf1', 3), None),
                         mp.resolve({'binding:host_id': 'compute1'}))
        att, _ = mp.resolve({'binding:host_id': 'compute2'})
        self.assertEqual('lags/bond1', att.key())
        att, why = mp.resolve({'binding:host_id': 'compute9'})
        self.assertIsNone(att)
        self.assertIn('compute9', why)
        self.assertIsNone(mp.resolve({})[0])

    def test_local_link_information(self):
        mp = mapping()
        one = {'binding:vnic_type': 'baremetal', 'binding:profile': {
            'local_link_information': [{'switch_info': 'sw-a',
                                        'port_id': '9'}]}}
        self.assertEqual((m.PortAttachment('leaf1', 9), None),
                         mp.resolve(one))
        two = {'binding:profile': {'local_link_information': [
            {'switch_info': 'leaf2', 'port_id': '5'},
            {'switch_info': 'leaf1', 'port_id': '5'}]}}
        self.assertEqual('bm1', mp.resolve(two)[0].name)
        for links in ([{'switch_info': 'leaf1', 'port_id': 'Ethernet5'}],
                      [{'port_id': '5'}],
                      [{'switch_info': 'leaf1', 'port_id': '5'},
                       {'switch_info': 'leaf2', 'port_id': '6'}]):
            att, why = mp.resolve(
                {'binding:profile': {'local_link_information': links}})
            self.assertIsNone(att, links)
            self.assertTrue(why)
        self.assertIsNone(mp.resolve({'binding:vnic_type': 'baremetal',
                                      'binding:host_id': 'compute1'})[0])


class TestDesired(unittest.TestCase):

    def test_networks_subnets_ports(self):
        mp = m.Mapping({'compute1': 'leaf1/3'}, [], physical_network='phys')
        nets = [
            {'id': 'n1', 'name': 'web', 'project_id': 't',
             'provider:network_type': 'vlan',
             'provider:physical_network': 'phys',
             'provider:segmentation_id': 10},
            {'id': 'n2', 'name': 'other', 'project_id': 't',
             'provider:network_type': 'vlan',
             'provider:physical_network': 'elsewhere',
             'provider:segmentation_id': 11},
            {'id': 'n3', 'name': 'vx', 'project_id': 't',
             'provider:network_type': 'vxlan',
             'provider:segmentation_id': 12},
        ]
        subnets = [
            {'id': 's2', 'network_id': 'n1', 'ip_version': 4,
             'cidr': '10.0.11.0/24', 'gateway_ip': '10.0.11.1',
             'created_at': '2026-02-01'},
            {'id': 's1', 'network_id': 'n1', 'ip_version': 4,
             'cidr': '10.0.10.0/24', 'gateway_ip': '10.0.10.1',
             'created_at': '2026-01-01'},
            {'id': 's3', 'network_id': 'n1', 'ip_version': 6,
             'cidr': '2001:db8::/64', 'gateway_ip': None},
        ]
        port = {'id': 'p1', 'network_id': 'n1', 'mac_address': 'fa:16:3e:00:00:01',
                'fixed_ips': [{'ip_address': '10.0.10.5'}],
                'binding:host_id': 'compute1', 'binding:vif_type': 'ovs'}
        unbound = dict(port, id='p2', **{'binding:vif_type': 'unbound'})
        want = m.desired(mp, nets, subnets, [port, unbound])
        self.assertEqual({
            'vlans/10': {'name': 'web', 'tenant': 't',
                         'ipv4_gateway': '10.0.10.1/24', 'owner': 'neutron'},
            'hosts/p1': {'mac': 'fa:16:3e:00:00:01', 'vlan': 10,
                         'ips': ['10.0.10.5'],
                         'attachment': {'port': 'leaf1/3'},
                         'owner': 'neutron'},
            'ports/leaf1/3': {'mode': 'trunk', 'vlans': [10],
                              'description': 'neutron', 'owner': 'neutron'},
        }, want)


if __name__ == '__main__':
    unittest.main()
