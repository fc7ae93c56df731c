"""For the child processes the shutdown and close tests run: a store of one
session record in one file, written whole (temporary file, fsync, rename),
and the environment that lets a child import it and the package under test."""

import json
import os

import freshtoken


class OneFileStore(freshtoken.TokenStoreBase):
    """The record of every key in the file ``path``."""

    def __init__(self, path):
        self.path = path

    def load(self, key):
        try:
            with open(self.path) as file:
                return file.read()
        except FileNotFoundError:
            return None

    def save(self, key, record):
        """Writes ``record`` whole (temporary file, fsync, rename)."""
        with open(self.path + ".tmp", "w") as file:
            file.write(record)
            file.flush()
            os.fsync(file.fileno())
        os.replace(self.path + ".tmp", self.path)


def is_rotated(record):
    """Whether ``record`` (a save's text) is a rotation, not the write-ahead marker."""
    return json.loads(record).get("in_doubt") is not True


def child_env():
    """``os.environ`` with the package under test and this directory importable."""
    env = dict(os.environ)
    package = os.path.dirname(os.path.dirname(freshtoken.__file__))
    env["PYTHONPATH"] = os.pathsep.join([package, os.path.dirname(os.path.abspath(__file__))])
    return env
