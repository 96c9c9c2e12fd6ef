#!/usr/bin/env python3
"""Compare our P4Runtime and gNMI descriptors with the official ones.

Usage: check_descriptors.py OURS.pb
OURS.pb is a FileDescriptorSet compiled by protoc from proto/ (the build
script writes one). The official descriptors come from PyPI packages: the
P4Runtime ones from `p4runtime`, gNMI's from `pygnmi` (which ships the
gnmi.proto of openconfig/gnmi compiled). Every message, field (number, name,
type, type name, label, oneof), enum value and RPC of the p4.* packages is
compared in both directions; our gnmi package is a subset (the Subscribe
RPC), so each of its symbols must match the official one and official
symbols we leave out are only counted.
Prints one line per mismatch and a summary; exits 1 on any mismatch, 3 when
a package of official descriptors is not importable.
"""
import os
import sys

os.environ.setdefault("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")

try:
    from google.protobuf import descriptor_pb2
    from p4.v1 import p4runtime_pb2, p4data_pb2  # noqa: F401
    from p4.config.v1 import p4info_pb2, p4types_pb2  # noqa: F401
    from pygnmi.spec.v080 import gnmi_pb2
except ImportError as e:  # pragma: no cover - environment dependent
    print(f"SKIPPED: python packages p4runtime and pygnmi not importable ({e})")
    sys.exit(3)


def flatten(files, wanted):
    """Map every symbol of the packages `wanted` accepts to a comparable
    description."""
    out = {}

    def enum(prefix, e):
        out[f"enum {prefix}.{e.name}"] = sorted((v.name, v.number) for v in e.value)

    def message(prefix, m):
        name = f"{prefix}.{m.name}"
        out[f"message {name}"] = m.options.map_entry
        for e in m.enum_type:
            enum(name, e)
        for n in m.nested_type:
            message(name, n)
        for f in m.field:
            oneof = m.oneof_decl[f.oneof_index].name if f.HasField("oneof_index") else ""
            out[f"field {name}.{f.name}"] = (f.number, f.type, f.type_name, f.label, oneof)

    for fd in files:
        if not wanted(fd.package):
            continue
        for e in fd.enum_type:
            enum(fd.package, e)
        for m in fd.message_type:
            message(fd.package, m)
        for s in fd.service:
            for meth in s.method:
                out[f"rpc {fd.package}.{s.name}.{meth.name}"] = (
                    meth.input_type,
                    meth.output_type,
                    meth.client_streaming,
                    meth.server_streaming,
                )
    return out


def official():
    files = []
    for mod in (p4types_pb2, p4info_pb2, p4data_pb2, p4runtime_pb2, gnmi_pb2):
        fd = descriptor_pb2.FileDescriptorProto()
        mod.DESCRIPTOR.CopyToProto(fd)
        files.append(fd)
    return files


def main():
    with open(sys.argv[1], "rb") as f:
        ours = descriptor_pb2.FileDescriptorSet.FromString(f.read()).file
    theirs = official()
    mismatches = 0
    p4 = lambda pkg: pkg.startswith("p4.")  # noqa: E731
    gnmi = lambda pkg: pkg == "gnmi"  # noqa: E731
    a, b = flatten(ours, p4), flatten(theirs, p4)
    ga, gb = flatten(ours, gnmi), flatten(theirs, gnmi)
    left_out = len(set(gb) - set(ga))
    if not ga:
        print("MISSING in ours: package gnmi")
        mismatches += 1
    # gnmi is a subset: only our symbols are compared.
    a.update(ga)
    b.update({k: v for k, v in gb.items() if k in ga})
    for key in sorted(set(a) | set(b)):
        if key not in a:
            print(f"MISSING in ours: {key} = {b[key]}")
        elif key not in b:
            print(f"EXTRA in ours:   {key} = {a[key]}")
        elif a[key] != b[key]:
            print(f"DIFFERENT:       {key}: ours {a[key]} official {b[key]}")
        else:
            continue
        mismatches += 1
    print(
        f"proto check: {len(b)} official symbols, {len(a)} ours, {mismatches} mismatches"
        f" ({left_out} official gnmi symbols outside our subset)"
    )
    sys.exit(1 if mismatches else 0)


if __name__ == "__main__":
    main()
