/*
 * Only in the second build of the rolling-upgrade tests
 * (p4/testing/fabric_v2.p4): one table the fabric pipeline does not have,
 * so that build is a real new version (another P4Info, another bmv2
 * JSON), made the way docs/operations.md says a rollable change must be:
 * an addition whose default forwards exactly as before. The controller
 * writes no entries to it; its default action changes nothing.
 */
control UpgradeProbe(inout headers_t hdr, inout fabric_metadata_t meta) {
    /* Would count or mark frames of one EtherType; never used. */
    action seen() { }

    table upgrade_probe {
        key = { hdr.ethernet.ether_type : exact; }
        actions = { seen; NoAction; }
        default_action = NoAction();
        size = 16;
    }

    apply {
        upgrade_probe.apply();
    }
}
