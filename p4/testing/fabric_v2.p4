/*
 * The second pipeline build of the rolling-upgrade tests: the fabric
 * pipeline plus one table (testing/upgrade_probe.p4). Compiled by
 * p4/compile.sh into p4/testing/build/fabric_v2.*; loaded by
 * p4fabric::testkit::second_pipeline.
 */
#define FABRIC_V2
#include "../fabric.p4"
