#!/usr/bin/env python3
"""Fixes uniffi 0.32's Swift output for objects renamed in uniffi.toml.

uniffi.toml renames the generated TokenClient and UserSession to
FfiTokenClient and FfiUserSession ([bindings.swift.rename]), so that the
hand-written TokenClient/UserSession (Sources/FreshToken/Client.swift) own
those names. uniffi-bindgen 0.32 renames the class and its converter, but a
secondary constructor (`fromCredentialsJson`, `withClock`) still returns the
old type through the old converter:

    public static func withClock(...) throws  -> TokenClient  {
        return try  FfiConverterTypeTokenClient_lift(...)

This rewrites exactly those return types and converter calls to the new
names, and fails (exit 1) when the expected pattern is missing, so that a
uniffi upgrade that fixes or changes it is noticed.

    python3 bindings/swift/scripts/patch_generated.py ROOT GENERATED.swift
"""

import re
import sys
import tomllib
from pathlib import Path


def renamed_objects(root):
    config = tomllib.loads((root / "uniffi.toml").read_text())
    renames = config.get("bindings", {}).get("swift", {}).get("rename", {})
    return {old: new for old, new in renames.items() if "." not in old}


def main():
    root, path = Path(sys.argv[1]), Path(sys.argv[2])
    text = path.read_text()
    changed = 0
    for old, new in renamed_objects(root).items():
        if f"func FfiConverterType{new}_lift(" not in text:
            continue  # not an object, or not renamed by uniffi
        text, n_lift = re.subn(rf"\bFfiConverterType{old}_lift\(", f"FfiConverterType{new}_lift(", text)
        text, n_ret = re.subn(rf"(static func \w+\([^)]*\)\s*throws\s*->\s*){old}(\s*\{{)", rf"\g<1>{new}\g<2>", text)
        if n_lift != n_ret:
            print(f"patch_generated: {old}: {n_lift} converter call(s) but {n_ret} return type(s)", file=sys.stderr)
            sys.exit(1)
        changed += n_lift
    if re.search(r"\bFfiConverterType(TokenClient|UserSession)_lift\(", text):
        print("patch_generated: an unrenamed converter call is left", file=sys.stderr)
        sys.exit(1)
    path.write_text(text)
    print(f"[patch_generated] {path}: {changed} secondary constructor(s) fixed")


if __name__ == "__main__":
    main()
