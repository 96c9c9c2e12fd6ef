//! Harness for end-to-end tests on real bmv2 switches.
