#!/usr/bin/env python3
"""Static checks of the Swift binding that need no Swift compiler.

Called by scripts/check-swift-bindings.sh (repository root), which has just
regenerated target/bindings/swift/. Prints one line per check:

    ok<TAB>name
    fail<TAB>name<TAB>reason[<US>reason...]

These are grep-level checks with a small Swift lexer (comments and string
literals blanked, brackets matched). They catch a misspelt or renamed type,
case, label, member or protocol requirement, a wrong error-code string, and
unbalanced brackets; they do not type-check Swift.
"""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[3]
PKG = ROOT / "bindings/swift"
SRC = PKG / "Sources/FreshToken"
GENERATED_DIR = ROOT / "target/bindings/swift"
COMMITTED_SWIFT = SRC / "FreshToken.swift"
COMMITTED_HEADER = PKG / "Sources/FreshTokenFFI/include/FreshTokenFFI.h"
COMMITTED_MODULEMAP = PKG / "Sources/FreshTokenFFI/include/module.modulemap"
HAND_WRITTEN = [
    SRC / "Client.swift",
    SRC / "URLSessionHttpClient.swift",
    SRC / "KeychainTokenStore.swift",
    SRC / "FreshTokenError+Code.swift",
]

# Apple SDK and Swift standard-library names the hand-written files may use.
# Any other capitalised identifier must be declared by the generated
# FreshToken.swift or by the hand-written files themselves.
PLATFORM_NAMES = {
    # Swift
    "Any", "AnyObject", "Bool", "Double", "Error", "Int", "Int64", "Never",
    "Optional", "Result", "Self", "Sendable", "String", "Swift", "Task",
    "UInt16", "UInt64", "UInt8", "Int32", "Int64", "Void", "CancellationError",
    # Foundation
    "Data", "Foundation", "HTTPURLResponse", "NSObject", "TimeInterval",
    "URL", "URLError", "URLRequest", "URLResponse", "URLSession",
    "URLSessionConfiguration", "URLSessionTask", "URLSessionTaskDelegate",
    "URLSessionDelegate", "NSLock", "Date",
    # Security / CoreFoundation
    "CFDictionary", "CFTypeRef", "OSStatus", "Security",
    "SecItemAdd", "SecItemCopyMatching", "SecItemDelete", "SecItemUpdate",
}

LOGGING = re.compile(r"(?<![\w.])(print|debugPrint|dump|NSLog|os_log|Logger)\s*\(|\bimport\s+(os|OSLog)\b")

results = []


def ok(name):
    results.append(("ok", name, []))


def fail(name, reasons):
    results.append(("fail", name, list(reasons)))


def check(name, reasons):
    if reasons:
        fail(name, reasons)
    else:
        ok(name)


# --------------------------------------------------------------------------
# A small Swift lexer: blanks comments and string contents (keeping string
# interpolations as code), keeps newlines, and reports unbalanced brackets.

def lex(src):
    out = []
    errors = []
    stack = []  # '(' '[' '{' 'I' (interpolation) 'S' (string) 'M' (multi-line string)
    i, n, line = 0, len(src), 1
    closing = {")": "(", "]": "[", "}": "{"}
    while i < n:
        c = src[i]
        top = stack[-1][0] if stack else None
        if c == "\n":
            line += 1
            if top == "S":
                errors.append(f"line {line - 1}: unterminated string")
                stack.pop()
            out.append(c)
            i += 1
            continue
        if top in ("S", "M"):
            if c == "\\" and i + 1 < n:
                if src[i + 1] == "(":
                    stack.append(("I", line))
                    out.append("\\(")
                else:
                    out.append("  ")
                i += 2
                continue
            if top == "M" and src.startswith('"""', i):
                stack.pop()
                out.append('"""')
                i += 3
                continue
            if top == "S" and c == '"':
                stack.pop()
                out.append('"')
                i += 1
                continue
            out.append(" ")
            i += 1
            continue
        # code
        if src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
            continue
        if src.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if src.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif src.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            if depth:
                errors.append(f"line {line}: unterminated comment")
            chunk = src[i:j]
            out.append("".join("\n" if ch == "\n" else " " for ch in chunk))
            line += chunk.count("\n")
            i = j
            continue
        if src.startswith('"""', i):
            stack.append(("M", line))
            out.append('"""')
            i += 3
            continue
        if c == '"':
            stack.append(("S", line))
            out.append('"')
            i += 1
            continue
        if c in "([{":
            stack.append((c, line))
        elif c in ")]}":
            if c == ")" and top == "I":
                stack.pop()
            elif top == closing[c]:
                stack.pop()
            else:
                errors.append(f"line {line}: unmatched '{c}'")
        out.append(c)
        i += 1
    for kind, at in stack:
        errors.append(f"line {at}: unclosed '{kind}'")
    return "".join(out), errors


def matching(text, start):
    """Index just past the bracket matching text[start] (blanked text)."""
    pairs = {"(": ")", "[": "]", "{": "}", "<": ">"}
    opening = text[start]
    close = pairs[opening]
    depth = 0
    for j in range(start, len(text)):
        if text[j] == opening:
            depth += 1
        elif text[j] == close:
            depth -= 1
            if depth == 0:
                return j + 1
    return len(text)


def split_top(args):
    """Splits an argument or parameter list at top-level commas."""
    parts, depth, cur = [], 0, []
    for ch in args:
        if ch in "([{<":
            depth += 1
        elif ch in ")]}>":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if "".join(cur).strip():
        parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def labels(args):
    """Argument labels of a call or parameter list ('_' when unlabelled)."""
    found = []
    for part in split_top(args):
        m = re.match(r"(\w+)\s*(\w+)?\s*:(?!:)", part)
        found.append(m.group(1) if m else "_")
    return found


def squash(text):
    return re.sub(r"\s+", "", text)


def block_after(text, match_end):
    """Body of the '{' block that starts at or after match_end."""
    start = text.index("{", match_end)
    return text[start + 1:matching(text, start) - 1]


# --------------------------------------------------------------------------
# The generated API, from the committed FreshToken.swift.

class Api:
    def __init__(self, code):
        self.protocols = {}  # name -> {func name -> [normalized signatures]}
        self.records = {}    # name -> {"init": [labels], "fields": {name: type}}
        self.enums = {}      # name -> {case -> [labels] or None}
        self.classes = {}    # name -> set of member names
        self.types = set()
        for m in re.finditer(r"\b(?:public|open)\s+(?:final\s+)?(class|struct|protocol|enum)\s+(\w+)", code):
            self.types.add(m.group(2))
        for m in re.finditer(r"\btypealias\s+(\w+)", code):
            self.types.add(m.group(1))
        for m in re.finditer(r"\bpublic\s+protocol\s+(\w+)\s*:[^{]*", code):
            body = block_after(code, m.end())
            reqs = {}
            for f in re.finditer(r"\bfunc\s+(\w+)\s*\(", body):
                end = matching(body, f.end() - 1)
                rest = body[end:].split("\n", 1)[0]
                reqs.setdefault(f.group(1), []).append(
                    squash(f.group(1) + body[f.end() - 1:end] + rest))
            self.protocols[m.group(1)] = reqs
        for m in re.finditer(r"\bpublic\s+struct\s+(\w+)\s*:\s*Equatable[^{]*", code):
            body = block_after(code, m.end())
            init = re.search(r"\bpublic\s+init\s*\(", body)
            fields = dict(re.findall(r"\bpublic\s+var\s+(\w+)\s*:\s*([^\n=]+)", body))
            self.records[m.group(1)] = {
                "init": labels(body[init.end():matching(body, init.end() - 1) - 1]) if init else [],
                "fields": {k: v.strip() for k, v in fields.items()},
            }
        for m in re.finditer(r"\bpublic\s+enum\s+(\w+)\s*:[^{]*", code):
            body = block_after(code, m.end())
            cases, depth, i = {}, 0, 0
            # Only cases at the enum's own level.
            for c in re.finditer(r"[{}]|\bcase\s+(\w+)\s*(\()?", body):
                if c.group(0) == "{":
                    depth += 1
                elif c.group(0) == "}":
                    depth -= 1
                elif depth == 0:
                    if c.group(2):
                        start = c.end() - 1
                        cases[c.group(1)] = labels(body[start + 1:matching(body, start) - 1])
                    else:
                        cases[c.group(1)] = None
            members = set(re.findall(r"\b(?:var|func)\s+(\w+)", body))
            self.enums[m.group(1)] = {"cases": cases, "members": members}
        for m in re.finditer(r"\bopen\s+class\s+(\w+)\s*:[^{]*", code):
            body = block_after(code, m.end())
            self.classes[m.group(1)] = set(re.findall(r"\bfunc\s+(\w+)", body))

    def members_of(self, name):
        if name in self.protocols:
            return set(self.protocols[name])
        if name in self.enums:
            return set(self.enums[name]["cases"]) | self.enums[name]["members"]
        if name in self.records:
            return set(self.records[name]["fields"])
        return self.classes.get(name, set())


# --------------------------------------------------------------------------

def hand_written_sources():
    sources = {}
    for path in HAND_WRITTEN:
        if path.exists():
            sources[path] = path.read_text()
    return sources


def rust_map(path, pattern):
    return dict(re.findall(pattern, path.read_text()))


def fn_body(text, header_regex):
    m = re.search(header_regex, text)
    if not m:
        return None
    return block_after(text, m.end())


def main():
    missing = [str(p.relative_to(ROOT)) for p in HAND_WRITTEN + [COMMITTED_SWIFT, COMMITTED_HEADER, COMMITTED_MODULEMAP, PKG / "Package.swift", PKG / "README.md"] if not p.exists()]
    check("package layout: every committed file is present", [f"missing {m}" for m in missing])
    if not COMMITTED_SWIFT.exists():
        return

    gen_code, gen_errors = lex(COMMITTED_SWIFT.read_text())
    api = Api(gen_code)
    sources = hand_written_sources()
    lexed = {}
    reasons = [f"FreshToken.swift {e}" for e in gen_errors]
    for path, src in sources.items():
        code, errors = lex(src)
        lexed[path] = code
        reasons += [f"{path.name} {e}" for e in errors]
    package = PKG / "Package.swift"
    if package.exists():
        reasons += [f"Package.swift {e}" for e in lex(package.read_text())[1]]
    check("Swift sources: brackets, strings and comments balanced", reasons)

    # ---- module map and Package.swift ---------------------------------
    reasons = []
    generated_map = (GENERATED_DIR / "FreshTokenFFI.modulemap").read_text()
    committed_map = COMMITTED_MODULEMAP.read_text() if COMMITTED_MODULEMAP.exists() else ""
    want_module = re.search(r"\bmodule\s+(\w+)", generated_map).group(1)
    want_header = re.search(r'\bheader\s+"([^"]+)"', generated_map).group(1)
    got_module = re.search(r"^\s*module\s+(\w+)\s*\{", committed_map, re.M)
    got_header = re.search(r'\bheader\s+"([^"]+)"', committed_map)
    if not got_module or got_module.group(1) != want_module:
        reasons.append(f"module.modulemap must declare `module {want_module}` (not a framework module)")
    if not got_header or got_header.group(1) != want_header:
        reasons.append(f'module.modulemap must name header "{want_header}"')
    elif not (COMMITTED_MODULEMAP.parent / got_header.group(1)).exists():
        reasons.append(f"{got_header.group(1)} is not beside module.modulemap")
    if "export *" not in committed_map:
        reasons.append("module.modulemap lacks `export *`")
    if f"canImport({want_module})" not in COMMITTED_SWIFT.read_text():
        reasons.append(f"FreshToken.swift does not import {want_module}")
    check(f"module map: module {want_module}, header {want_header}, as uniffi generated them", reasons)

    reasons = []
    text = package.read_text() if package.exists() else ""
    swift_module = re.search(r'module_name\s*=\s*"(\w+)"', (ROOT / "uniffi.toml").read_text()).group(1)
    for what, pattern in [
        ("swift-tools-version 5.9", r"^// swift-tools-version:\s*5\.9\b"),
        ("iOS 15", r"\.iOS\(\.v15\)"),
        ("macOS 12", r"\.macOS\(\.v12\)"),
        (f"binaryTarget {want_module} at {want_module}.xcframework",
         rf'\.binaryTarget\(\s*name:\s*"{want_module}",\s*path:\s*"{want_module}\.xcframework"'),
        (f"target {swift_module} (uniffi.toml module_name) depending on {want_module}",
         rf'\.target\(\s*name:\s*"{swift_module}",\s*dependencies:\s*\["{want_module}"\],\s*path:\s*"Sources/{swift_module}"'),
        ("library product", rf'\.library\(name:\s*"{swift_module}"'),
    ]:
        if not re.search(pattern, text, re.M):
            reasons.append(f"Package.swift: no {what}")
    check("Package.swift: tools 5.9, iOS 15+/macOS 12+, binary FFI target, FreshToken target", reasons)

    # ---- error and reason codes vs Rust --------------------------------
    error_rs = ROOT / "src/error.rs"
    rust_text = error_rs.read_text()
    as_str = re.search(r"impl ErrorCode \{.*?\n\}", rust_text, re.S).group(0)
    rust_codes = dict(re.findall(r'ErrorCode::(\w+)\s*=>\s*"([a-z_]+)"', as_str))
    ffi_to_code = rust_map(ROOT / "src/ffi/error.rs", r"FreshTokenError::(\w+)\s*\{\s*\.\.\s*\}\s*=>\s*ErrorCode::(\w+)")
    swift_cases = api.enums.get("FreshTokenError", {}).get("cases", {})
    code_src = sources.get(SRC / "FreshTokenError+Code.swift", "")
    code_body = fn_body(code_src, r"extension\s+FreshTokenError\s*\{[^}]*?var\s+code\s*:\s*String\s*") or ""
    swift_codes = dict(re.findall(r'case\s+\.(\w+)\s*:\s*return\s+"([a-z_]+)"', code_body))
    reasons = []
    if len(rust_codes) < 10:
        reasons.append(f"parsed only {len(rust_codes)} codes from ErrorCode::as_str in src/error.rs")
    for case in swift_cases:
        if case not in ffi_to_code:
            reasons.append(f"FreshTokenError.{case}: no ErrorCode in src/ffi/error.rs code()")
        elif case not in swift_codes:
            reasons.append(f"FreshTokenError.{case}: missing from Swift `code`")
        elif swift_codes[case] != rust_codes.get(ffi_to_code[case]):
            reasons.append(f"FreshTokenError.{case}: Swift \"{swift_codes[case]}\", Rust \"{rust_codes.get(ffi_to_code[case])}\"")
    for case in set(swift_codes) - set(swift_cases):
        reasons.append(f"Swift `code` names .{case}, which FreshTokenError does not have")
    if set(swift_codes.values()) != set(rust_codes.values()):
        reasons.append(f"code sets differ: Swift {sorted(swift_codes.values())} vs Rust {sorted(rust_codes.values())}")
    check(f"error codes: Swift FreshTokenError.code = Rust ErrorCode::as_str ({len(swift_codes)} codes)", reasons)

    reason_as_str = dict(re.findall(r'ReauthReason::(\w+)\s*=>\s*"([a-z_]+)"', rust_text))
    core_to_ffi = rust_map(ROOT / "src/ffi/types.rs", r"ReauthReason::(\w+)\s*=>\s*ReauthorizationReason::(\w+)")
    ffi_to_string = {ffi: reason_as_str[core] for core, ffi in core_to_ffi.items() if core in reason_as_str}
    reason_body = fn_body(code_src, r"extension\s+ReauthorizationReason\s*\{[^}]*?var\s+code\s*:\s*String\s*") or ""
    swift_reasons = dict(re.findall(r'case\s+\.(\w+)\s*:\s*return\s+"([a-z_]+)"', reason_body))
    reasons = []
    for case in api.enums.get("ReauthorizationReason", {}).get("cases", {}):
        rust_name = case[0].upper() + case[1:]  # uniffi: lowerCamelCase enum cases
        if rust_name not in ffi_to_string:
            reasons.append(f"ReauthorizationReason.{case}: no Rust reason string")
        elif swift_reasons.get(case) != ffi_to_string[rust_name]:
            reasons.append(f"ReauthorizationReason.{case}: Swift {swift_reasons.get(case)!r}, Rust {ffi_to_string[rust_name]!r}")
    if len(swift_reasons) != len(ffi_to_string) or not swift_reasons:
        reasons.append(f"Swift has {len(swift_reasons)} reason strings, Rust {len(ffi_to_string)}")
    check(f"reason codes: Swift ReauthorizationReason.code = Rust ReauthReason::as_str ({len(swift_reasons)})", reasons)

    # ---- events: kind names vs Rust, the closure listener, TokenEvent's extras
    kind_as_str = dict(re.findall(r'EventKind::(\w+)\s*=>\s*"([a-z_]+)"', (ROOT / "src/events.rs").read_text()))
    core_to_ffi_kind = rust_map(ROOT / "src/ffi/events.rs", r"K::(\w+)\s*=>\s*EventKind::(\w+)")
    ffi_kind_to_string = {ffi: kind_as_str[core] for core, ffi in core_to_ffi_kind.items() if core in kind_as_str}
    client_src = sources.get(SRC / "Client.swift", "")
    kind_body = fn_body(client_src, r"extension\s+EventKind\s*\{[^}]*?var\s+code\s*:\s*String\s*") or ""
    swift_kinds = dict(re.findall(r'case\s+\.(\w+)\s*:\s*return\s+"([a-z_]+)"', kind_body))
    reasons = []
    swift_kind_cases = api.enums.get("EventKind", {}).get("cases", {})
    if not swift_kind_cases:
        reasons.append("the generated FreshToken.swift has no enum EventKind")
    for case in swift_kind_cases:
        rust_name = case[0].upper() + case[1:]  # uniffi: lowerCamelCase enum cases
        if rust_name not in ffi_kind_to_string:
            reasons.append(f"EventKind.{case}: no Rust name (src/events.rs as_str through src/ffi/events.rs)")
        elif swift_kinds.get(case) != ffi_kind_to_string[rust_name]:
            reasons.append(f"EventKind.{case}: Swift {swift_kinds.get(case)!r}, Rust {ffi_kind_to_string[rust_name]!r}")
    if len(swift_kinds) != len(kind_as_str) or not swift_kinds:
        reasons.append(f"Swift has {len(swift_kinds)} kind names, Rust {len(kind_as_str)}")
    check(f"event kinds: Swift EventKind.code = Rust EventKind::as_str ({len(swift_kinds)})", reasons)

    client_code = lexed.get(SRC / "Client.swift", "")
    reasons = []
    listener = re.search(r"\bpublic\s+final\s+class\s+ClosureEventListener\s*:\s*([^{]+)\{", client_code)
    if not listener or "EventListener" not in [p.strip() for p in listener.group(1).split(",")]:
        reasons.append("Client.swift has no `public final class ClosureEventListener: EventListener`")
    else:
        body = block_after(client_code, listener.end() - 1)
        closure = r"@Sendable\s*\(\s*TokenEvent\s*\)\s*throws\s*->\s*Void"
        if not re.search(r"\blet\s+handler\s*:\s*" + closure, body):
            reasons.append("ClosureEventListener does not keep a `let handler: @Sendable (TokenEvent) throws -> Void`")
        if not re.search(r"\bpublic\s+init\s*\(\s*_\s+handler\s*:\s*@escaping\s+" + closure + r"\s*\)", body):
            reasons.append("ClosureEventListener has no `public init(_ handler: @escaping @Sendable (TokenEvent) throws -> Void)`")
        on_event = fn_body(body, r"\bpublic\s+func\s+onEvent\s*\(\s*event\s*:\s*TokenEvent\s*\)\s*throws\s*")
        if on_event is None or not re.fullmatch(r"\s*try\s+handler\(\s*event\s*\)\s*", on_event):
            reasons.append("ClosureEventListener.onEvent(event:) does not just call the closure (`try handler(event)`)")
        if re.search(r"\bvar\b", body):
            reasons.append("ClosureEventListener has a `var`: it must stay immutable (Sendable)")
    extension = re.search(r"\bextension\s+TokenEvent\s*\{", client_code)
    extras = block_after(client_code, extension.end() - 1) if extension else ""
    for what, pattern in [
        ("TokenEvent.kindCode: String (kind.code)", r"public\s+var\s+kindCode\s*:\s*String\s*\{\s*kind\.code\s*\}"),
        ("TokenEvent.at: Date (from atMs)", r"public\s+var\s+at\s*:\s*Date\s*\{\s*date\(fromMs:\s*atMs\)\s*\}"),
        ("TokenEvent.reasonCode: String? (reason?.code)", r"public\s+var\s+reasonCode\s*:\s*String\?\s*\{\s*reason\?\.code\s*\}"),
    ]:
        if not re.search(pattern, extras):
            reasons.append(f"no {what} in `extension TokenEvent`")
    check("events: ClosureEventListener (a @Sendable closure as the generated EventListener), TokenEvent.kindCode / at: Date / reasonCode", reasons)

    # ---- references from the hand-written files -------------------------
    declared = set()
    refinements = {}  # hand-written protocol -> generated protocols it refines
    protocol_file = {}
    for path, code in lexed.items():
        for m in re.finditer(r"\b(class|struct|protocol|enum|typealias)\s+(\w+)", code):
            declared.add(m.group(2))
        for m in re.finditer(r"<\s*(\w+)\s*(?::[^>]*)?>", code):
            declared.add(m.group(1))
        for m in re.finditer(r"\bprotocol\s+(\w+)\s*:\s*([^{]+)\{", code):
            refinements[m.group(1)] = [p.strip() for p in m.group(2).split(",")]
            protocol_file[m.group(1)] = path

    reasons = []
    for name in sorted(declared & api.types):
        reasons.append(f"{name} is declared both by hand and in the generated FreshToken.swift")
    for path, code in lexed.items():
        for m in re.finditer(r"(?<![.\w])([A-Z]\w*)", code):
            name = m.group(1)
            if name not in api.types and name not in declared and name not in PLATFORM_NAMES:
                line = code[:m.start()].count("\n") + 1
                reasons.append(f"{path.name}:{line}: unknown type or name {name}")
    check("identifiers: every type the hand-written files name is generated, declared there, or Apple/Swift", sorted(set(reasons)))

    def signatures(code):
        sigs = set()
        for f in re.finditer(r"\bfunc\s+(\w+)\s*\(", code):
            end = matching(code, f.end() - 1)
            rest = re.split(r"[{\n]", code[end:], 1)[0]
            sigs.add(squash(f.group(1) + code[f.end() - 1:end] + rest))
        return sigs

    reasons = []
    conformances = 0
    for path, code in lexed.items():
        for m in re.finditer(r"\b(?:final\s+)?(class|struct)\s+(\w+)\s*:\s*([^{]+)\{", code):
            available = signatures(code)
            queue = [p.strip().replace("@unchecked ", "") for p in m.group(3).split(",")]
            seen = set()
            while queue:
                proto = queue.pop()
                if proto in seen:
                    continue
                seen.add(proto)
                if proto in refinements:
                    available |= signatures(lexed[protocol_file[proto]])
                    queue += refinements[proto]
                elif proto in api.protocols:
                    conformances += 1
                    for name, sigs in api.protocols[proto].items():
                        for sig in sigs:
                            if sig not in available:
                                reasons.append(f"{m.group(2)} ({path.name}) lacks {proto}'s `func {sig}`")
    if not conformances:
        reasons.append("found no conformance to a generated protocol")
    check(f"protocol requirements: hand-written conformances implement every generated requirement ({conformances} conformances)", reasons)

    # Cases, initialisers and labels: Type.case(…), Type(…), and `case .x`
    # patterns inside extensions of generated enums.
    reasons = []
    uses = 0
    for path, code in lexed.items():
        for m in re.finditer(r"(?<![.\w])([A-Z]\w*)(?:\.(\w+))?(\s*\()?", code):
            owner, member, call = m.group(1), m.group(2), m.group(3)
            if owner not in api.enums and owner not in api.records:
                continue
            where = f"{path.name}:{code[:m.start()].count(chr(10)) + 1}"
            args = None
            if call:
                start = m.end() - 1
                args = labels(code[start + 1:matching(code, start) - 1])
            if owner in api.enums and member:
                uses += 1
                cases = api.enums[owner]["cases"]
                if member not in cases and member not in api.enums[owner]["members"]:
                    reasons.append(f"{where}: {owner}.{member} does not exist")
                elif member in cases and args is not None and cases[member] != args:
                    reasons.append(f"{where}: {owner}.{member}({':'.join(args)}:) but the case has ({':'.join(cases[member] or [])}:)")
            elif owner in api.records and call and not member:
                uses += 1
                if api.records[owner]["init"] != args:
                    reasons.append(f"{where}: {owner}({', '.join(args)}) but init takes ({', '.join(api.records[owner]['init'])})")
        for ext in re.finditer(r"\bextension\s+(\w+)\s*\{", code):
            owner = ext.group(1)
            if owner not in api.enums:
                continue
            body = block_after(code, ext.end() - 1)
            cases = api.enums[owner]["cases"]
            for c in re.finditer(r"\bcase\s+(?:let\s+)?\.(\w+)(\s*\()?", body):
                uses += 1
                if c.group(1) not in cases:
                    reasons.append(f"{path.name}: extension {owner}: case .{c.group(1)} does not exist")
                elif c.group(2):
                    start = c.end() - 1
                    n = len(split_top(body[start + 1:matching(body, start) - 1]))
                    if n != len(cases[c.group(1)] or []):
                        reasons.append(f"{path.name}: extension {owner}: .{c.group(1)} binds {n} values, the case has {len(cases[c.group(1)] or [])}")
            covered = {c.group(1) for c in re.finditer(r"\bcase\s+(?:let\s+)?\.(\w+)", body)}
            for switch in re.finditer(r"\bswitch\s+self\s*\{", body):
                inner = block_after(body, switch.end() - 1)
                named = set(re.findall(r"\bcase\s+(?:let\s+)?\.(\w+)", inner))
                if "default" not in inner and named != set(cases):
                    reasons.append(f"{path.name}: extension {owner}: a switch misses {sorted(set(cases) - named)}")
    check(f"cases and initialisers: names, labels and arity match the generated enums and records ({uses} uses)", reasons)

    # Members of generated records read through typed parameters, and calls
    # to generated protocol members inside their extensions.
    reasons = []
    uses = 0
    for path, code in lexed.items():
        chunks = re.split(r"(?=\bfunc\s)", code)
        for chunk in chunks:
            typed = {}
            for p in re.finditer(r"(?:\b_\s+)?\b(\w+)\s*:\s*([A-Z]\w*)\b(?!\s*\.)", chunk):
                if p.group(2) in api.records:
                    typed[p.group(1)] = p.group(2)
            for loop in re.finditer(r"\bfor\s+(\w+)\s+in\s+(\w+)\.(\w+)", chunk):
                var, base, field = loop.groups()
                if base in typed:
                    element = api.records[typed[base]]["fields"].get(field, "")
                    inner = re.fullmatch(r"\[(\w+)\]", element)
                    if inner and inner.group(1) in api.records:
                        typed[var] = inner.group(1)
            for var, record in typed.items():
                for use in re.finditer(rf"(?<![.\w]){var}\.(\w+)", chunk):
                    uses += 1
                    if use.group(1) not in api.records[record]["fields"]:
                        reasons.append(f"{path.name}: {var}.{use.group(1)}: {record} has no field {use.group(1)}")
        for ext in re.finditer(r"\bextension\s+(\w+)\s*\{", code):
            owner = ext.group(1)
            protos = [owner] if owner in api.protocols else refinements.get(owner, [])
            reqs = {}
            for proto in protos:
                for name, sigs in api.protocols.get(proto, {}).items():
                    reqs.setdefault(name, []).extend(sigs)
            if not reqs:
                continue
            body = block_after(code, ext.end() - 1)
            defined = set(re.findall(r"\bfunc\s+(\w+)", body))
            for call in re.finditer(r"(?<![.\w])(\w+)\s*\(", body):
                name = call.group(1)
                if name not in reqs or re.search(r"\bfunc\s+$", body[:call.start()]):
                    continue
                uses += 1
                start = call.end() - 1
                got = labels(body[start + 1:matching(body, start) - 1])
                wanted = [labels(sig[sig.index("(") + 1:matching(sig, sig.index("(")) - 1]) for sig in reqs[name]]
                if got not in wanted and name not in defined:
                    reasons.append(f"{path.name}: extension {owner}: {name}({':'.join(got)}) matches no requirement of {protos}")
            for name in defined & set(api.members_of(owner)) - set(reqs):
                reasons.append(f"{path.name}: extension {owner} redeclares generated member {name}")
        for ext in re.finditer(r"\bextension\s+(\w+)\s*\{", code):
            owner = ext.group(1)
            if owner in api.protocols or owner in refinements:
                continue
            body = block_after(code, ext.end() - 1)
            for name in set(re.findall(r"\b(?:var|func)\s+(\w+)", body)) & api.members_of(owner):
                reasons.append(f"{path.name}: extension {owner} redeclares generated member {name}")
    check(f"members and calls: record fields and protocol calls exist with these labels ({uses} uses)", reasons)

    # ---- contracts, grep level ------------------------------------------
    reasons = []
    for path, code in lexed.items():
        for m in LOGGING.finditer(code):
            reasons.append(f"{path.name}:{code[:m.start()].count(chr(10)) + 1}: {m.group(0).strip()}")
    check("no logging in the hand-written files (bodies and headers carry secrets)", reasons)

    # Records that carry tokens or secrets print through the core's redacting
    # Debug/Display (#[uniffi::export(Debug, Display)] in src/ffi/types.rs):
    # print(), "\(x)", String(reflecting:) and debugPrint show no secret.
    reasons = []
    rust_types = (ROOT / "src" / "ffi" / "types.rs").read_text()
    redacted = re.findall(r"#\[uniffi::export\(Debug, Display\)\]\s*pub struct (\w+)", rust_types)
    if not redacted:
        reasons.append("src/ffi/types.rs exports Debug/Display on no record")
    for name in redacted:
        decl = re.search(r"public struct " + name + r"\s*:([^{]*)\{", gen_code)
        conforms = decl.group(1) if decl else ""
        for proto in ("CustomStringConvertible", "CustomDebugStringConvertible"):
            if proto not in conforms:
                reasons.append(f"generated {name} is not {proto}")
    check(f"secret-bearing records print through the core's redacting Display ({len(redacted)} records)", reasons)

    http = lexed.get(SRC / "URLSessionHttpClient.swift", "")
    http_raw = sources.get(SRC / "URLSessionHttpClient.swift", "")
    reasons = []
    for what, pattern in [
        ("ephemeral configuration", r"URLSessionConfiguration\.ephemeral"),
        ("no cookie storage", r"httpCookieStorage\s*=\s*nil"),
        ("cookies never accepted", r"httpCookieAcceptPolicy\s*=\s*\.never"),
        ("cookies never sent", r"httpShouldSetCookies\s*=\s*false"),
        ("no URL cache", r"urlCache\s*=\s*nil"),
        ("a redirect delegate", r"willPerformHTTPRedirection"),
        ("redirects refused", r"completionHandler\(\s*nil\s*\)"),
        ("timeout from timeoutMs", r"request\.timeoutMs"),
        ("limit from maxResponseBytes", r"request\.maxResponseBytes"),
        ("reading stops past the limit", r"body\.count\s*>\s*limit\s*\)?\s*\{\s*break\s*\}"),
        ("the body read as a byte stream", r"session\.bytes\(\s*for\s*:"),
        ("the transfer cancelled however reading ends", r"defer\s*\{\s*bytes\.task\.cancel\(\)\s*\}"),
        ("the whole exchange under one deadline", r"withDeadline\s*\(\s*nanoseconds\s*:"),
    ]:
        if not re.search(pattern, http):
            reasons.append(f"URLSessionHttpClient: no {what} ({pattern})")
    mapping = fn_body(http, r"func\s+hostError\s*\(\s*for\s+error\s*:\s*URLError\s*\)\s*->\s*HostError\s*") or ""
    not_sent = re.search(r"case\s+([^:]+):\s*return\s+HostError\.NotSent\b", mapping)
    codes = {c.strip().lstrip(".") for c in not_sent.group(1).split(",")} if not_sent else set()
    # Connections never made: DNS, TCP, the TLS handshake (certificates
    # included), and those the system would not open.
    if codes != {
        "cannotFindHost", "cannotConnectToHost", "dnsLookupFailed", "notConnectedToInternet",
        "secureConnectionFailed", "serverCertificateHasBadDate", "serverCertificateUntrusted",
        "serverCertificateHasUnknownRoot", "serverCertificateNotYetValid",
        "clientCertificateRejected", "clientCertificateRequired",
        "appTransportSecurityRequiresSecureConnection", "dataNotAllowed",
        "internationalRoamingOff", "callIsActive",
    }:
        reasons.append(f"URLError → NotSent maps {sorted(codes)}")
    if not re.search(r"case\s+\.timedOut\s*:\s*return\s+HostError\.Timeout\b", mapping):
        reasons.append("URLError.timedOut → HostError.Timeout missing")
    if not re.search(r"default\s*:\s*return\s+HostError\.Failed\b", mapping):
        reasons.append("other URLErrors → HostError.Failed missing")
    if re.search(r"\\\(\s*(request|urlRequest|body|bytes|http)\b", http_raw):
        reasons.append("a request or response value is interpolated into a message")
    check("URLSessionHttpClient: ephemeral, no cookies/cache, redirects refused, one deadline, size cap with the transfer cancelled, URLError mapping", reasons)

    keychain = lexed.get(SRC / "KeychainTokenStore.swift", "")
    reasons = []
    for what, pattern in [
        ("generic password items", r"kSecClass\s+as\s+String\s*:\s*kSecClassGenericPassword"),
        ("service attribute", r"kSecAttrService\s+as\s+String\s*:\s*service"),
        ("account = key", r"kSecAttrAccount\s+as\s+String\s*:\s*key"),
        ("AfterFirstUnlockThisDeviceOnly", r"kSecAttrAccessible\s+as\s+String\s*:\s*kSecAttrAccessibleAfterFirstUnlockThisDeviceOnly"),
        ("update first", r"SecItemUpdate\([\s\S]*errSecItemNotFound[\s\S]*SecItemAdd\("),
        ("supportsLease false", r"func\s+supportsLease\(\)\s*(?:throws\s*)?->\s*Bool\s*\{\s*false\s*\}"),
        ("supportsVersions false", r"func\s+supportsVersions\(\)\s*(?:throws\s*)?->\s*Bool\s*\{\s*false\s*\}"),
        ("a single-process store", r"class\s+KeychainTokenStore\s*:\s*SingleProcessTokenStore\b"),
    ]:
        if not re.search(pattern, keychain):
            reasons.append(f"KeychainTokenStore: no {what}")
    if re.search(r"\\\(\s*(record|data|item|query)\b", sources.get(SRC / "KeychainTokenStore.swift", "")):
        reasons.append("a record or query is interpolated into a message")
    check("KeychainTokenStore: generic password, service + account, this-device-only, update-or-add, single-process defaults", reasons)

    # ---- the mirror and the public surface (Client.swift) ----------------
    client = lexed.get(SRC / "Client.swift", "")
    reasons = []
    for name in ("TokenClient", "UserSession"):
        if re.search(rf"\b(?:class|struct|protocol)\s+{name}\b", gen_code):
            reasons.append(f"the generated FreshToken.swift declares {name}: rename it in uniffi.toml [bindings.swift.rename]")
        if not re.search(rf"\bpublic\s+final\s+class\s+{name}\b", client):
            reasons.append(f"Client.swift does not declare `public final class {name}`")
    check("public names: TokenClient and UserSession are the hand-written wrappers; the generated ones are Ffi*", reasons)

    def body_of(header):
        return fn_body(client, header) or ""

    def statements(body):
        return [line.strip() for line in body.splitlines() if line.strip()]

    reasons = []
    access = body_of(r"public\s+func\s+accessToken\s*\(\s*\)\s*async\s+throws\s*->\s*String\s*")
    lines = statements(access)
    if not access:
        reasons.append("UserSession has no `public func accessToken() async throws -> String`")
    else:
        mirror_read = access.find("client.mirror.token(key: key)")
        ffi_call = access.find("await ffi.accessToken()")
        if not lines or not lines[0].startswith("if let token = client.mirror.token(key: key)"):
            reasons.append("accessToken() does not begin by reading the mirror (`if let token = client.mirror.token(key: key)`)")
        if ffi_call < 0:
            reasons.append("accessToken() never calls the generated `ffi.accessToken()`")
        elif not 0 <= mirror_read < ffi_call:
            reasons.append("accessToken() calls the generated accessToken() before reading the mirror")
        elif "client.mirror.refill(key: key, from: ffi)" not in access[ffi_call:]:
            reasons.append("accessToken() does not refill the mirror after the generated accessToken()")
        if re.search(r"\b(native|dropped)\(\)", access[:max(mirror_read, 0)]):
            reasons.append("accessToken() touches the native handle before reading the mirror")
    token_body = body_of(r"func\s+token\s*\(\s*key\s*:\s*String\s*\)\s*->\s*String\?\s*")
    if "now < entry.freshUntilMs" not in token_body or "nowMs()" not in token_body:
        reasons.append("TokenMirror.token(key:) does not serve only while nowMs() < freshUntilMs")
    if "now >= entry.sinceMs" not in token_body:
        reasons.append("TokenMirror.token(key:) serves a token when the clock reads earlier than when it was mirrored")
    if "ffi" in token_body or "cachedToken" in token_body:
        reasons.append("TokenMirror.token(key:) calls into the core")
    refill = body_of(r"func\s+refill\s*\(\s*key\s*:\s*String\s*,\s*from\s+ffi\s*:\s*FfiUserSession\s*\)\s*->\s*String\?\s*")
    if "ffi.cachedToken()" not in refill or "lock.lock()" not in refill:
        reasons.append("TokenMirror.refill does not read the core's cachedToken() under the lock")
    now_body = body_of(r"func\s+nowMs\s*\(\s*\)\s*->\s*Int64\s*")
    if "clock.nowMs()" not in now_body or "timeIntervalSince1970" not in now_body:
        reasons.append("TokenMirror.nowMs() does not read the host clock first, else the system clock")
    check("mirror: UserSession.accessToken() serves the mirror (clock < freshUntilMs) before calling the generated async accessToken(), and refills from cachedToken() after", reasons)

    reasons = []
    for method in ("tokens", "refresh", "tokenRejected", "seed", "status"):
        body = body_of(rf"public\s+func\s+{method}\s*\([^)]*\)\s*async\s+throws[^{{]*")
        lines = statements(body)
        call = body.find(f"ffi.{method}(")
        if not lines or lines[0] != "let ffi = try native()":
            reasons.append(f"{method}() does not take the native handle first")
        elif call < 0 or "client.mirror.refill(key: key, from: ffi)" not in body[call:]:
            reasons.append(f"{method}() does not refill the mirror after ffi.{method}(...)")
        elif not re.search(rf"client\.mirror\.replacing\(key:\s*key\)\s*\{{\s*try\s+await\s+ffi\.{method}\(", body):
            reasons.append(f"{method}() does not run ffi.{method}(...) inside `client.mirror.replacing(key: key) {{ ... }}`")
    revoke = body_of(r"public\s+func\s+revoke\s*\(\s*\)\s*async\s+throws\s*")
    if not revoke:
        reasons.append("UserSession has no `public func revoke() async throws`")
    elif not re.search(r"client\.mirror\.replacing\(key:\s*key\)\s*\{\s*try\s+await\s+ffi\.revoke\(\)", revoke):
        reasons.append("revoke() does not run ffi.revoke() inside `client.mirror.replacing(key: key) { ... }`")
    exchange = body_of(r"public\s+func\s+exchangeCode\s*\([^)]*\)\s*async\s+throws[^{]*")
    if not re.search(r"mirror\.replacing\(key:\s*key\)\s*\{\s*try\s+await\s+ffi\.exchangeCode\(", exchange):
        reasons.append("exchangeCode() does not run the exchange inside `mirror.replacing(key: key) { ... }`")
    # replacing: marks the key busy and drops its entry before `call`
    # (begin), and unmarks and drops it again however `call` ends (end);
    # refill mirrors nothing for a busy key.
    replacing = body_of(r"func\s+replacing\s*<T>\s*\(\s*key\s*:\s*String\s*,\s*_\s+call\s*:\s*\(\)\s*async\s+throws\s*->\s*T\s*\)\s*async\s+throws\s*->\s*T\s*")
    begin = body_of(r"private\s+func\s+begin\s*\(\s*key\s*:\s*String\s*\)\s*")
    end = body_of(r"private\s+func\s+end\s*\(\s*key\s*:\s*String\s*\)\s*")
    if not re.search(r"begin\(key:\s*key\)\s*defer\s*\{\s*end\(key:\s*key\)\s*\}\s*return\s+try\s+await\s+call\(\)", replacing):
        reasons.append("TokenMirror.replacing does not begin, then end however `call` ends (`begin(key: key)`, `defer { end(key: key) }`, `return try await call()`)")
    if not re.search(r"busy\[key,\s*default:\s*0\]\s*\+=\s*1", begin) or "dropLocked(key: key)" not in begin or "lock.lock()" not in begin:
        reasons.append("TokenMirror.begin does not mark the key busy and drop its entry under the lock")
    if "busy[key] = nil" not in end or "dropLocked(key: key)" not in end or "lock.lock()" not in end:
        reasons.append("TokenMirror.end does not unmark the key and drop its entry under the lock")
    if "lock." in replacing:
        reasons.append("TokenMirror.replacing takes the NSLock in an async context (noasync)")
    refill = body_of(r"func\s+refill\s*\(\s*key\s*:\s*String\s*,\s*from\s+ffi\s*:\s*FfiUserSession\s*\)\s*->\s*String\?\s*")
    busy_check = refill.find("if busy[key] != nil { return cached.token }")
    store = refill.find("entries.updateValue(")
    if busy_check < 0 or not 0 <= busy_check < store:
        reasons.append("TokenMirror.refill mirrors a token while a call that may replace it runs")
    check("mirror: every other session call drops the key's entry before the FFI call and again however it ends, mirrors nothing for the key meanwhile, and refills it after a success", reasons)

    reasons = []
    for path, code in lexed.items():
        for number, line in enumerate(code.splitlines(), 1):
            if re.search(r"\b(public|open)\b", line) and re.search(r"\bUInt\d*\b", line):
                reasons.append(f"{path.name}:{number}: an unsigned type in a public declaration")
    for what, pattern in [
        ("TokenInfo.expiresAt: Date", r"extension\s+TokenInfo\s*\{[^}]*public\s+var\s+expiresAt\s*:\s*Date\b"),
        ("TokenInfo.refreshExpiresAt: Date?", r"public\s+var\s+refreshExpiresAt\s*:\s*Date\?"),
        ("SessionStatus.accessExpiresAt: Date?", r"extension\s+SessionStatus\s*\{[^}]*public\s+var\s+accessExpiresAt\s*:\s*Date\?"),
    ]:
        if not re.search(pattern, client):
            reasons.append(f"no {what}")
    if not re.search(r"public\s+var\s+code\s*:\s*String", lexed.get(SRC / "FreshTokenError+Code.swift", "")):
        reasons.append("FreshTokenError has no `public var code: String`")
    check("public wrapper: no unsigned integers, Date beside the milliseconds, errors with `code`", reasons)

    # uniffi 0.32 leaves renamed objects' secondary constructors calling the
    # old converter (scripts/patch_generated.py fixes them): every converter
    # the generated file calls must be one it defines.
    defined_converters = set(re.findall(r"\bfunc\s+(FfiConverter\w+_(?:lift|lower))\s*\(", gen_code))
    called_converters = set(re.findall(r"(?<![\w.])(FfiConverter\w+_(?:lift|lower))\s*\(", gen_code))
    check(f"generated Swift: every converter function called is defined ({len(called_converters)})",
          [f"FreshToken.swift calls {name}, which it does not define" for name in sorted(called_converters - defined_converters)])

    # ---- the C header against the Swift file and the built library -------
    header = COMMITTED_HEADER.read_text()
    declared_fns = set(re.findall(r"^[\w][\w \t\*]*?\b((?:uniffi|ffi)_freshtoken_\w+)\s*\(", header, re.M))
    called = set(re.findall(r"\b((?:uniffi|ffi)_freshtoken_\w+)\s*\(", gen_code))
    reasons = [f"FreshToken.swift calls {f}, not declared in FreshTokenFFI.h" for f in sorted(called - declared_fns)]
    if not called:
        reasons.append("found no FFI calls in FreshToken.swift")
    check(f"FFI calls: every C function FreshToken.swift calls is declared in FreshTokenFFI.h ({len(called)})", reasons)

    lib = ROOT / "target/debug/libfreshtoken.so"
    reasons = []
    try:
        nm = subprocess.run(["nm", "-D", "--defined-only", str(lib)], capture_output=True, text=True, check=True).stdout
        exported = set(re.findall(r"\b((?:uniffi|ffi)_freshtoken_\w+)$", nm, re.M))
        reasons = [f"{f} is declared but libfreshtoken.so does not export it" for f in sorted(declared_fns - exported)]
        reasons += [f"{f} is exported but not declared" for f in sorted(exported - declared_fns)]
    except (OSError, subprocess.CalledProcessError) as e:
        reasons.append(f"nm on {lib}: {e}")
    check(f"FFI symbols: FreshTokenFFI.h declares exactly the uniffi symbols libfreshtoken.so exports ({len(declared_fns)})", reasons)

    script = PKG / "scripts/build-xcframework.sh"
    reasons = []
    if not script.exists():
        reasons.append("missing")
    else:
        syntax = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        if syntax.returncode:
            reasons.append(f"bash -n: {syntax.stderr.strip()}")
        text = script.read_text()
        for target in ["aarch64-apple-ios", "aarch64-apple-ios-sim", "x86_64-apple-ios", "aarch64-apple-darwin", "x86_64-apple-darwin"]:
            if not re.search(rf"^\s*{re.escape(target)}\b", text, re.M):
                reasons.append(f"target {target} not listed")
        for what, pattern in [
            ("cargo with --release --features ffi --lib --target", r"cargo rustc [^\n]*--release --features ffi --lib --target"),
            ("a static library", r"--crate-type staticlib"),
            ("lipo", r"\blipo -create"),
            ("xcodebuild -create-xcframework", r"xcodebuild -create-xcframework"),
            ("the committed headers", r"Sources/FreshTokenFFI/include"),
            (f"output {want_module}.xcframework", rf"{want_module}\.xcframework"),
            ("a note that it cannot run here", r"MACOS WITH XCODE ONLY"),
        ]:
            if not re.search(pattern, text):
                reasons.append(f"no {what}")
    check("build-xcframework.sh: bash -n, five Apple targets, staticlib, lipo, xcodebuild", reasons)


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # a parser gave up: report it as a failed check
        fail("check_sources.py ran to the end", [f"{type(e).__name__}: {e}"])
    for status, name, reasons in results:
        print("\t".join([status, name, "\x1f".join(reasons)]) if reasons else f"{status}\t{name}")
