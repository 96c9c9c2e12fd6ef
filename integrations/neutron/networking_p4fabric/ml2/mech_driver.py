"""The ML2 mechanism driver `p4fabric`.

Binds VLAN segments of ports whose server the fabric knows (a hypervisor
in [ml2_p4fabric] host_attachments, or a bare-metal port's
local_link_information), and after every commit brings the affected etcd
keys in line with Neutron's database (networking_p4fabric.sync). It never
raises from a postcommit: a write etcd refuses or cannot take stays queued
and is retried in order (etcd_client.RetryQueue); a periodic full sync
repairs anything else.
"""

from neutron_lib.api.definitions import portbindings
from neutron_lib import constants as n_const
from neutron_lib import context as n_context
from neutron_lib.plugins import directory
from neutron_lib.plugins.ml2 import api
from oslo_config import cfg
from oslo_log import log as logging

from networking_p4fabric import config
from networking_p4fabric import etcd_client
from networking_p4fabric import mapping as m
from networking_p4fabric import sync

LOG = logging.getLogger(__name__)


class PluginNotLoaded(RuntimeError):
    """The sync at start ran before ML2 finished loading (retried)."""


class P4FabricMechanismDriver(api.MechanismDriver):

    def initialize(self):
        config.register_opts(cfg.CONF)
        conf = cfg.CONF[config.GROUP]
        self.mapping = m.Mapping.from_conf(conf)
        self.store = etcd_client.EtcdStore(
            conf.etcd_endpoints, conf.etcd_prefix, conf.etcd_timeout,
            conf.etcd_ca_cert, conf.etcd_cert_file, conf.etcd_key_file)
        self.reconciler = sync.Reconciler(self.store, self._load_desired)
        self.queue = etcd_client.RetryQueue(
            self.reconciler, conf.retry_interval, conf.sync_interval)
        # The full sync at start runs in the worker thread once the plugin
        # is loaded (it reads Neutron's database).
        self.queue.put(etcd_client.ALL)
        LOG.info('p4fabric: writing %s on %s; hosts %s',
                 conf.etcd_prefix, ', '.join(conf.etcd_endpoints),
                 self.mapping.hosts)

    def stop(self):
        """Stops the retry thread (tests; neutron-server just exits)."""
        self.queue.stop()

    def full_sync(self):
        """Makes etcd equal to Neutron for the driver's keys now; True if
        done, False if etcd was unreachable (then it stays queued)."""
        self.queue.put(etcd_client.ALL)
        return self._flush()

    # -- reading Neutron --------------------------------------------------

    def _load_desired(self, scope):
        """The driver's keys from Neutron's database. Only what `scope`
        needs is read: VLAN keys need networks and subnets, host and
        attachment keys networks and ports."""
        plugin = directory.get_plugin()
        if plugin is None:
            raise PluginNotLoaded('ML2 plugin not loaded yet')
        every = scope is etcd_client.ALL
        vlans = every or any(k.startswith('vlans/') for k in scope)
        others = every or any(not k.startswith('vlans/') for k in scope)
        ctx = n_context.get_admin_context()
        return m.desired(self.mapping, plugin.get_networks(ctx),
                         plugin.get_subnets(ctx) if vlans else [],
                         plugin.get_ports(ctx) if others else [],
                         log=LOG)

    def _flush(self):
        if self.queue.flush():
            return True
        self.queue.kick()
        return False

    def _write(self, keys):
        self.queue.put(keys)
        self._flush()

    def _vlan_key(self, network):
        vlan = self.mapping.network_vlan(network)
        return {'vlans/%d' % vlan} if vlan is not None else set()

    @staticmethod
    def _port_keys(port):
        # A binding change can move VLANs between attachments: every
        # attachment key (ports/, lags/) the driver writes or wrote is
        # recomputed with the port's host key.
        return {'hosts/' + port['id'], 'ports/', 'lags/'}

    # -- networks and subnets ---------------------------------------------

    def create_network_postcommit(self, context):
        self._write(self._vlan_key(context.current))

    def update_network_postcommit(self, context):
        self._write(self._vlan_key(context.current) |
                    self._vlan_key(context.original))

    def delete_network_postcommit(self, context):
        self._write(self._vlan_key(context.current))

    def _subnet_vlan_key(self, context):
        return self._vlan_key(context.network.current)

    def create_subnet_postcommit(self, context):
        self._write(self._subnet_vlan_key(context))

    def update_subnet_postcommit(self, context):
        self._write(self._subnet_vlan_key(context))

    def delete_subnet_postcommit(self, context):
        self._write(self._subnet_vlan_key(context))

    # -- ports ------------------------------------------------------------

    def create_port_postcommit(self, context):
        self._write(self._port_keys(context.current))

    def update_port_postcommit(self, context):
        self._write(self._port_keys(context.current))

    def delete_port_postcommit(self, context):
        self._write(self._port_keys(context.current))

    def bind_port(self, context):
        port = context.current
        att, reason = self.mapping.resolve(port, host=context.host)
        if att is None:
            LOG.info('p4fabric: not binding port %s on host %s: %s',
                     port['id'], context.host, reason)
            return
        for segment in context.segments_to_bind:
            seg = self.mapping.fabric_segment([{
                'network_type': segment[api.NETWORK_TYPE],
                'physical_network': segment[api.PHYSICAL_NETWORK],
                'segmentation_id': segment[api.SEGMENTATION_ID]}])
            if seg is None:
                continue
            context.set_binding(
                segment[api.ID], portbindings.VIF_TYPE_OTHER,
                {'p4fabric_attachment': att.value(),
                 portbindings.VIF_DETAILS_VLAN: seg['segmentation_id']},
                status=n_const.PORT_STATUS_ACTIVE)
            LOG.info('p4fabric: bound port %s on host %s to %r, VLAN %s',
                     port['id'], context.host, att, seg['segmentation_id'])
            return
        LOG.info('p4fabric: not binding port %s on host %s: no VLAN segment '
                 'of the fabric among %s', port['id'], context.host,
                 [s[api.NETWORK_TYPE] for s in context.segments_to_bind])
