"""What Neutron's objects become in p4fabric's etcd API (docs/etcd-api.md,
"OpenStack Neutron mapping"): pure functions from Neutron dicts to keys
(relative to the prefix) and JSON values. No I/O here.

Every value the driver writes carries ``"owner": "neutron"``: the driver
only ever changes or deletes keys with that marker (or creates absent
ones), and ``p4fabric apply --prune`` leaves them alone.
"""

import ipaddress
import re

OWNER = 'neutron'
OWNER_FIELD = 'owner'

VIF_UNBOUND = ('unbound', 'binding_failed', '', None)
VNIC_BAREMETAL = 'baremetal'

_NAME = re.compile(r'^[A-Za-z0-9_.:@-]{1,253}$')


class ConfigError(ValueError):
    """A driver option that cannot be read."""


class PortAttachment:
    """An edge port, SWITCH/PORT."""

    def __init__(self, switch, port):
        self.switch = switch
        self.port = int(port)

    def ref(self):
        return '%s/%d' % (self.switch, self.port)

    def key(self):
        return 'ports/' + self.ref()

    def value(self):
        return {'port': self.ref()}

    def __eq__(self, other):
        return isinstance(other, PortAttachment) and \
            (self.switch, self.port) == (other.switch, other.port)

    def __hash__(self):
        return hash(('port', self.switch, self.port))

    def __repr__(self):
        return self.ref()


class LagAttachment:
    """A LAG the driver may write: name, fabric-wide id, members."""

    def __init__(self, name, lag_id, members, protocol='lacp'):
        self.name = name
        self.lag_id = lag_id
        self.members = tuple(members)
        self.protocol = protocol

    def key(self):
        return 'lags/' + self.name

    def value(self):
        return {'lag': self.name}

    def __eq__(self, other):
        return isinstance(other, LagAttachment) and self.name == other.name

    def __hash__(self):
        return hash(('lag', self.name))

    def __repr__(self):
        return 'lag ' + self.name


def parse_port_ref(text):
    """'leaf1/3' -> PortAttachment, or ConfigError."""
    switch, sep, port = text.strip().rpartition('/')
    if not sep or not _NAME.match(switch) or not port.isdigit():
        raise ConfigError('%r is not SWITCH/PORT (e.g. leaf1/3)' % text)
    return PortAttachment(switch, int(port))


def parse_lags(entries):
    """`lags` option entries -> {name: LagAttachment}."""
    lags = {}
    for entry in entries:
        parts = entry.strip().split(':')
        if len(parts) not in (3, 4):
            raise ConfigError('lag %r is not NAME:ID:MEMBER+MEMBER[:lacp|static]'
                              % entry)
        name, lag_id, members = parts[0], parts[1], parts[2]
        protocol = parts[3] if len(parts) == 4 else 'lacp'
        if not _NAME.match(name):
            raise ConfigError('lag %r: invalid name %r' % (entry, name))
        if not lag_id.isdigit() or not 1 <= int(lag_id) <= 65535:
            raise ConfigError('lag %r: id must be 1..65535' % entry)
        if protocol not in ('lacp', 'static'):
            raise ConfigError('lag %r: protocol must be lacp or static' % entry)
        refs = [parse_port_ref(m) for m in members.split('+') if m]
        if not refs:
            raise ConfigError('lag %r has no members' % entry)
        lags[name] = LagAttachment(name, int(lag_id), refs, protocol)
    return lags


class Mapping:
    """The driver's view of the fabric's wiring, from its options."""

    def __init__(self, host_attachments, lags, switch_names=None,
                 physical_network=None):
        self.lags = parse_lags(lags)
        self.switch_names = dict(switch_names or {})
        self.physical_network = physical_network or None
        self.hosts = {}
        for host, where in (host_attachments or {}).items():
            if where.startswith('lag:'):
                name = where[len('lag:'):]
                if name not in self.lags:
                    raise ConfigError('host %s: lag %r is not in `lags`'
                                      % (host, name))
                self.hosts[host] = self.lags[name]
            else:
                self.hosts[host] = parse_port_ref(where)

    @classmethod
    def from_conf(cls, group):
        return cls(group.host_attachments, group.lags, group.switch_names,
                   group.physical_network)

    # -- segments ---------------------------------------------------------

    def fabric_segment(self, segments):
        """The first VLAN segment of a list of ML2 segment dicts (keys
        network_type / physical_network / segmentation_id) that is on our
        physical network, or None."""
        for s in segments:
            if s.get('network_type') != 'vlan':
                continue
            if (self.physical_network and
                    s.get('physical_network') != self.physical_network):
                continue
            if s.get('segmentation_id'):
                return s
        return None

    def network_vlan(self, network):
        """The fabric VLAN id of a network dict (single- or multi-segment
        provider attributes), or None."""
        if network.get('segments'):
            segs = [{'network_type': s.get('provider:network_type'),
                     'physical_network': s.get('provider:physical_network'),
                     'segmentation_id': s.get('provider:segmentation_id')}
                    for s in network['segments']]
        else:
            segs = [{'network_type': network.get('provider:network_type'),
                     'physical_network':
                         network.get('provider:physical_network'),
                     'segmentation_id':
                         network.get('provider:segmentation_id')}]
        seg = self.fabric_segment(segs)
        return int(seg['segmentation_id']) if seg else None

    # -- attachments ------------------------------------------------------

    def resolve(self, port, host=None):
        """(attachment, None) for where the port's server is wired, or
        (None, reason). `host` overrides binding:host_id (bind_port)."""
        profile = port.get('binding:profile') or {}
        links = profile.get('local_link_information') or []
        if links:
            return self._from_links(links)
        if port.get('binding:vnic_type') == VNIC_BAREMETAL:
            return None, 'bare-metal port without local_link_information'
        host = host if host is not None else port.get('binding:host_id')
        if not host:
            return None, 'no binding:host_id'
        att = self.hosts.get(host)
        if att is None:
            return None, ('host %r is not in [ml2_p4fabric] host_attachments'
                          % host)
        return att, None

    def _from_links(self, links):
        refs = []
        for link in links:
            switch = link.get('switch_info') or ''
            switch = self.switch_names.get(
                switch, self.switch_names.get(link.get('switch_id') or '',
                                              switch))
            port_id = str(link.get('port_id') or '')
            if not _NAME.match(switch or ''):
                return None, ('local_link_information %r: no usable '
                              'switch_info' % (link,))
            if not port_id.isdigit():
                return None, ('local_link_information %r: port_id must be '
                              'the switch port number' % (link,))
            refs.append(PortAttachment(switch, int(port_id)))
        if len(refs) == 1:
            return refs[0], None
        wanted = set(refs)
        for lag in self.lags.values():
            if set(lag.members) == wanted and len(lag.members) == len(refs):
                return lag, None
        return None, ('no LAG in [ml2_p4fabric] lags has exactly the members '
                      '%s' % '+'.join(sorted(r.ref() for r in refs)))


# -- values ---------------------------------------------------------------

def owned(value):
    """Marks a value as the driver's."""
    out = dict(value)
    out[OWNER_FIELD] = OWNER
    return out


def is_owned(value):
    return isinstance(value, dict) and value.get(OWNER_FIELD) == OWNER


def _sort_key(subnet):
    return (subnet.get('created_at') or '', subnet['id'])


def vlan_value(network, subnets):
    """vlans/<segid>: name, tenant and one gateway per address family (the
    oldest subnet with a gateway; the fabric has one subnet per family and
    VLAN)."""
    v = {'name': network.get('name') or '',
         'tenant': network.get('project_id') or network.get('tenant_id') or ''}
    for subnet in sorted(subnets, key=_sort_key):
        if not subnet.get('gateway_ip'):
            continue
        field = 'ipv4_gateway' if subnet['ip_version'] == 4 else \
            'ipv6_gateway'
        if field in v:
            continue
        prefixlen = ipaddress.ip_network(subnet['cidr'],
                                         strict=False).prefixlen
        v[field] = '%s/%d' % (subnet['gateway_ip'], prefixlen)
    return owned(v)


def is_bound(port):
    return bool(port.get('binding:host_id')) and \
        port.get('binding:vif_type') not in VIF_UNBOUND


def host_value(port, vlan, attachment):
    """hosts/<port id>."""
    return owned({
        'mac': port['mac_address'],
        'vlan': vlan,
        'ips': [ip['ip_address'] for ip in port.get('fixed_ips') or []],
        'attachment': attachment.value(),
    })


def attachment_value(attachment, vlans, untagged):
    """ports/<switch>/<port> or lags/<name>: the VLANs of the ports bound
    there. A bare-metal server (untagged) with one network gets an access
    port; hypervisors get a trunk of every VLAN bound on them."""
    vlans = sorted(vlans)
    if untagged and len(vlans) == 1:
        mode = {'mode': 'access', 'vlan': vlans[0]}
    else:
        mode = {'mode': 'trunk', 'vlans': vlans}
    if isinstance(attachment, LagAttachment):
        v = {'id': attachment.lag_id,
             'members': [m.ref() for m in attachment.members],
             'protocol': attachment.protocol}
        v.update(mode)
    else:
        v = mode
    v['description'] = 'neutron'
    return owned(v)


def desired(mapping, networks, subnets, ports, log=None):
    """Every key the driver should hold, from all of Neutron's networks,
    subnets and ports: {relative key: value}."""
    out = {}
    net_vlan = {}
    by_net = {}
    for s in subnets:
        by_net.setdefault(s['network_id'], []).append(s)
    for net in sorted(networks, key=lambda n: (n.get('created_at') or '',
                                               n['id'])):
        vlan = mapping.network_vlan(net)
        if vlan is None:
            continue
        key = 'vlans/%d' % vlan
        if key in out:
            if log:
                log.warning('p4fabric: network %s also uses VLAN %d (physical '
                            'networks share the fabric VLAN space): not '
                            'mapped', net['id'], vlan)
            continue
        net_vlan[net['id']] = vlan
        out[key] = vlan_value(net, by_net.get(net['id'], []))
    on = {}
    for port in ports:
        if not is_bound(port):
            continue
        vlan = net_vlan.get(port['network_id'])
        if vlan is None:
            continue
        att, _ = mapping.resolve(port)
        if att is None:
            continue
        out['hosts/' + port['id']] = host_value(port, vlan, att)
        vlans, untagged = on.setdefault(att, (set(), [True]))
        vlans.add(vlan)
        if port.get('binding:vnic_type') != VNIC_BAREMETAL:
            untagged[0] = False
    for att, (vlans, untagged) in on.items():
        out[att.key()] = attachment_value(att, vlans, untagged[0])
    return out

