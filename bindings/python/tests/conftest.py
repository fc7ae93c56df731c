"""Fixtures: the assembled package on sys.path, and the token emulator.

The package under test is the one scripts/test-python.sh assembles in
bindings/python/build/dev/ (or $FRESHTOKEN_PYTHONPATH). The emulator is
the project's Rust binary (target/debug/freshtoken-emulator, or
$FRESHTOKEN_EMULATOR_BIN), started once per test module and stopped after.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
BINDING = os.path.dirname(HERE)
REPO = os.path.dirname(os.path.dirname(BINDING))

sys.path.insert(0, os.environ.get("FRESHTOKEN_PYTHONPATH") or os.path.join(BINDING, "build", "dev"))

import pytest  # noqa: E402

from helpers import Emulator  # noqa: E402


@pytest.fixture(scope="module")
def emulator():
    emu = Emulator.start()
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def emu(emulator):
    """The module's emulator, reset (tokens, counters, faults, clock) for this test."""
    emulator.reset()
    return emulator


@pytest.fixture
def ffi_calls(monkeypatch):
    """Counts every call into the generated UserSession and TokenClient
    objects (the FFI), by "Class.method"; clear() it to start counting."""
    import collections
    import functools

    from freshtoken._ffi import freshtoken as generated

    counts = collections.Counter()
    for cls in (generated.UserSession, generated.TokenClient):
        for name, member in list(vars(cls).items()):
            if name.startswith("_") or not callable(member) or isinstance(member, (staticmethod, classmethod)):
                continue

            def counting(original, label):
                @functools.wraps(original)
                def call(*args, **kwargs):
                    counts[label] += 1
                    return original(*args, **kwargs)
                return call

            monkeypatch.setattr(cls, name, counting(member, f"{cls.__name__}.{name}"))
    return counts
