"""Strings crossing into Rust are exact UTF-8, whatever ``str`` subclass
carries them (DESIGN 16): uniffi's generated converter lowered
``value.encode("utf-8")``, so a subclass overriding ``encode`` handed Rust
bytes of its choosing, and top-level ``String`` arguments are lifted
unchecked in Rust (undefined behaviour). freshtoken replaces the
converter's ``write``/``lower`` with ones calling ``str.encode`` itself
(``freshtoken/_strings.py``) and copies subclasses into exact ``str``s at
the boundary (``_check.text``). Against the token emulator: a garbled key,
client id, refresh token or stored record would be refused or misfiled
there, so each test fails if the subclass's bytes got through."""

import inspect
import json
import textwrap

import pytest

import freshtoken
from freshtoken import HostError, MemoryTokenStore, TokenStoreBase
from freshtoken._ffi import freshtoken as generated

from helpers import CLIENT_ID, CLIENT_SECRET, TestStore, make_sync_client, same


class Garbling(str):
    """A str whose own methods lie: ``encode`` gives bytes that are not its
    text (not even UTF-8), ``__str__`` and ``__getitem__`` other text."""

    def encode(self, encoding="utf-8", errors="strict"):
        return b"\xff\xfe" + str.encode(self, "latin-1", "replace")

    def __str__(self):
        return "not-the-text"

    def __getitem__(self, index):
        return "not-the-text"

    def isascii(self):
        return True


# What uniffi 0.32's generator writes, replaced by freshtoken/_strings.py.
GENERATED_WRITE = '''
    @staticmethod
    def write(value, buf):
        utf8_bytes = value.encode("utf-8")
        buf.write_i32(len(utf8_bytes))
        buf.write(utf8_bytes)
'''
GENERATED_LOWER = '''
    @staticmethod
    def lower(value):
        with _UniffiRustBuffer.alloc_with_builder() as builder:
            builder.write(value.encode("utf-8"))
            return builder.finalize()
'''


def test_the_replaced_converter_is_the_one_uniffi_generated():
    # A uniffi upgrade that changes the converter must be reviewed: the
    # replacement writes the same wire format.
    from freshtoken import _strings

    write, lower = _strings.GENERATED
    assert textwrap.dedent(inspect.getsource(write)) == textwrap.dedent(GENERATED_WRITE).lstrip("\n")
    assert textwrap.dedent(inspect.getsource(lower)) == textwrap.dedent(GENERATED_LOWER).lstrip("\n")
    converter = generated._UniffiFfiConverterString
    assert converter.write is not write and converter.lower is not lower, "replaced on import"


def test_the_converter_lowers_a_subclass_as_its_own_characters():
    converter = generated._UniffiFfiConverterString
    for text in ("jürgen", "ascii", "日本語", ""):
        assert converter.lift(converter.lower(Garbling(text))) == text
        with generated._UniffiRustBuffer.alloc_with_builder() as builder:
            converter.write(Garbling(text), builder)
            buffer = builder.finalize()
        with buffer.consume_with_stream() as stream:
            assert converter.read(stream) == text
    with pytest.raises(UnicodeEncodeError):
        converter.lower("lone \ud800")  # never bytes that are not UTF-8


def test_a_subclass_key_client_id_and_refresh_token_cross_intact(emu):
    client = freshtoken.Client(emu.token_endpoint, Garbling(CLIENT_ID), client_secret=Garbling(CLIENT_SECRET))
    store = MemoryTokenStore()
    family = emu.seed()
    session = client.session(Garbling("jürgen"), store)
    assert type(session.key) is str and session.key == "jürgen"
    session.seed(refresh_token=Garbling(family["refresh_token"]))
    token = session.access_token()
    # The emulator accepted the client id, the secret and the refresh token.
    assert emu.refresh_requests() == 1 and emu.refresh_token_state(family["refresh_token"]) == "consumed"
    assert list(store._records) == ["jürgen"] and all(type(k) is str for k in store._records)
    same(json.loads(store.get("jürgen"))["access_token"], token, "saved under the key's own text")
    # Had the subclass's bytes reached the core, the token would not be the
    # current one, and nothing would be refreshed.
    session.token_rejected(Garbling(token))
    assert emu.refresh_requests() == 2, "token_rejected compared the real text, and refreshed"


class CaseInsensitive(str):
    """A key type equal to, and hashing like, any spelling of its letters."""

    def __eq__(self, other):
        return isinstance(other, str) and str.lower(self) == str.lower(other)

    def __hash__(self):
        return hash(str.lower(self))


def test_a_subclass_key_equal_to_another_users_key_gets_its_own_session(emu):
    client, _ = make_sync_client(emu)
    store = MemoryTokenStore()
    alice = client.session("alice", store)
    alice.seed(refresh_token=emu.seed()["refresh_token"])
    alices_token = alice.access_token()
    assert client.session("alice", store) is alice, "an exact str is looked up"
    other = client.session(CaseInsensitive("ALICE"), store)
    assert other is not alice and other.key == "ALICE", "the key's own characters, not a match by __eq__"
    with pytest.raises(freshtoken.ReauthorizationRequired) as raised:
        other.access_token()
    assert raised.value.reason == "no_refresh_token", "nothing stored under ALICE: alice's token is not served"
    assert alice.access_token() == alices_token and emu.refresh_requests() == 1


class GarblingLoad(TokenStoreBase):
    """A store that hands its records back as Garbling strings."""

    def __init__(self):
        self.records = {}

    async def load(self, key):
        record = self.records.get(key)
        return None if record is None else Garbling(record)

    async def save(self, key, record):
        assert type(record) is str
        self.records[key] = record


def test_records_a_store_returns_as_a_subclass_reach_the_core_intact(emu, capfd):
    client, _ = make_sync_client(emu)
    store = GarblingLoad()
    family = emu.seed()
    client.session("u1", store).seed(refresh_token=family["refresh_token"])
    # Another client (another process) reads the record through load().
    other, _ = make_sync_client(emu)
    token = other.session("u1", store).access_token()
    assert emu.refresh_requests() == 1, "the record was read, its refresh token used"
    assert emu.refresh_token_state(family["refresh_token"]) == "consumed"
    assert isinstance(token, str) and capfd.readouterr().err == ""


def test_a_host_error_message_of_a_subclass_crosses_as_its_text(emu, capfd):
    class Failing(TestStore):
        async def load(self, key):
            raise HostError.Failed(detail=Garbling("disk said nö"))

    client, _ = make_sync_client(emu)
    with pytest.raises(freshtoken.StorageError) as raised:
        client.session("u1", Failing()).status()
    assert "disk said nö" in str(raised.value)
    assert capfd.readouterr().err == ""
