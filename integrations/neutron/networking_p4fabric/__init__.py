"""OpenStack Neutron ML2 mechanism driver for p4fabric (docs/neutron.md)."""
