"""The driver's options: section [ml2_p4fabric] of ml2_conf.ini."""

from oslo_config import cfg

GROUP = 'ml2_p4fabric'

OPTS = [
    cfg.ListOpt('etcd_endpoints', default=['http://127.0.0.1:2379'],
                help='etcd client URLs (http:// or https://); the first '
                     'that answers is used.'),
    cfg.StrOpt('etcd_prefix', default='/p4fabric/v1/',
               help='Key prefix of the p4fabric configuration API.'),
    cfg.FloatOpt('etcd_timeout', default=5.0,
                 help='Seconds to wait for one etcd request.'),
    cfg.StrOpt('etcd_ca_cert', help='PEM CA certificate of etcd.'),
    cfg.StrOpt('etcd_cert_file', help='PEM client certificate for etcd.'),
    cfg.StrOpt('etcd_key_file', help='PEM client key for etcd.'),
    cfg.DictOpt('host_attachments', default={},
                help='Where each hypervisor (binding:host_id) is wired: '
                     'host:SWITCH/PORT for one edge port or host:lag:NAME '
                     'for a LAG listed in `lags`, comma separated, e.g. '
                     'compute1:leaf1/3,compute2:lag:bond1.'),
    cfg.ListOpt('lags', default=[],
                help='LAGs the driver may write, NAME:ID:MEMBER+MEMBER'
                     '[:lacp|static], e.g. bond1:1:leaf1/4+leaf2/4. A '
                     'bare-metal port whose local_link_information names '
                     'exactly the members of one of these is attached to '
                     'it.'),
    cfg.DictOpt('switch_names', default={},
                help='Ironic switch_info (or switch_id) -> p4fabric switch '
                     'name, for switches whose LLDP name differs; by '
                     'default switch_info is the switch name.'),
    cfg.StrOpt('physical_network',
               help='Only VLAN segments on this physical network are '
                    'fabric VLANs (default: every VLAN segment).'),
    cfg.IntOpt('sync_interval', default=300, min=0,
               help='Seconds between full syncs (etcd made equal to '
                    'Neutron for the keys the driver owns); 0: only at '
                    'start.'),
    cfg.FloatOpt('retry_interval', default=1.0, min=0.05,
                 help='First delay before retrying a failed etcd write; '
                      'doubles up to 30 s while etcd stays unreachable.'),
]


def register_opts(conf=cfg.CONF):
    conf.register_opts(OPTS, group=GROUP)


def list_opts():
    return [(GROUP, OPTS)]
