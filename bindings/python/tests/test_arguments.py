"""The boundary checks what crosses it (DESIGN 16): every argument that is
not what the signature says (a wrong type, a lone surrogate, an int the
core's 64-bit fields cannot hold, an unknown keyword, a host object without
the methods freshtoken calls, a timeout that is not a number of seconds)
raises ``ConfigError`` naming the parameter, before anything is sent; never
a bare ``TypeError``/``UnicodeEncodeError``/``OverflowError`` from uniffi's
generated code. ``ConfigError`` is also a ``TypeError`` and a ``ValueError``.
Against the token emulator, whose counters show what was sent."""

import asyncio
import pickle

import pytest

import freshtoken
from freshtoken import ConfigError, MemoryTokenStore
from freshtoken._ffi import freshtoken as generated

from helpers import CLIENT_ID, CLIENT_SECRET, FakeClock, TestStore, make_sync_client, seeded_sync

REDIRECT_URI = "https://app.example/callback"
SECRET = "s3cret-value"


class BadIndex:
    def __index__(self):
        raise RuntimeError("boom")


class AsyncNowClock(FakeClock):
    """A clock whose now_ms is an async def: the core reads it synchronously,
    so it would answer with a coroutine, never awaited, and be ignored."""

    async def now_ms(self):
        return self.ms


def client_with(emu, **options):
    return freshtoken.Client(emu.token_endpoint, CLIENT_ID, client_secret=CLIENT_SECRET, **options)


# (label, options, field): each refused by Client and AsyncClient alike.
OPTIONS = [
    ("leeway nan", dict(leeway_seconds=float("nan")), "leeway_seconds"),
    ("leeway 2**70", dict(leeway_seconds=2 ** 70), "leeway_seconds"),
    ("leeway True", dict(leeway_seconds=True), "leeway_seconds"),
    ("leeway '5'", dict(leeway_seconds="5"), "leeway_seconds"),
    ("leeway __index__ raises", dict(leeway_seconds=BadIndex()), "leeway_seconds"),
    ("timeout_ms 2**64", dict(timeout_ms=2 ** 64), "timeout_ms"),
    ("timeout_ms inf", dict(timeout_ms=float("inf")), "timeout_ms"),
    ("retry unknown key", dict(retry={"nope": 1}), "retry.nope"),
    ("retry str", dict(retry="x"), "retry"),
    ("retry max_attempts 2**40 (an i32)", dict(retry={"max_attempts": 2 ** 40}), "retry.max_attempts"),
    ("retry record with a float", dict(retry=generated.RetryOptions(budget_ms=1.5)), "retry.budget_ms"),
    ("unknown keyword", dict(bogus=1), "bogus"),
    ("revocation_endpoint lone surrogate", dict(revocation_endpoint="http://127.0.0.1/\ud800"),
     "revocation_endpoint"),
    ("revocation_endpoint bytes", dict(revocation_endpoint=b"http://127.0.0.1/"), "revocation_endpoint"),
    ("client_secret lone surrogate", dict(client_secret=SECRET + "\ud800"), "client_secret"),
    ("http object()", dict(http=object()), "http"),
    ("clock object()", dict(clock=object()), "clock"),
    ("clock with an async now_ms", dict(clock=AsyncNowClock()), "clock"),
]


@pytest.mark.parametrize("label,options,field", OPTIONS, ids=[o[0] for o in OPTIONS])
@pytest.mark.parametrize("cls", [freshtoken.Client, freshtoken.AsyncClient], ids=["sync", "async"])
def test_bad_client_options_are_config_errors_naming_the_option(emu, cls, label, options, field):
    options = dict(options)
    options.setdefault("client_secret", CLIENT_SECRET)
    with pytest.raises(ConfigError) as raised:
        cls(emu.token_endpoint, CLIENT_ID, **options)
    assert raised.value.field == field, repr(raised.value)
    assert raised.value.code == "config"
    assert SECRET not in str(raised.value) and SECRET not in repr(raised.value), "never the value"


@pytest.mark.parametrize("endpoint,client_id,field", [
    (None, CLIENT_ID, "token_endpoint"),
    (b"http://127.0.0.1/token", CLIENT_ID, "token_endpoint"),
    ("http://127.0.0.1/\ud800", CLIENT_ID, "token_endpoint"),
    ("TOKEN", 5, "client_id"),
])
def test_bad_positional_arguments_are_config_errors(emu, endpoint, client_id, field):
    with pytest.raises(ConfigError) as raised:
        freshtoken.Client(emu.token_endpoint if endpoint == "TOKEN" else endpoint, client_id)
    assert raised.value.field == field


def test_config_error_is_also_a_type_error_and_a_value_error(emu):
    for options in (dict(leeway_seconds="5"), dict(leeway_seconds=-5)):  # the layer's, the core's
        with pytest.raises(TypeError):
            client_with(emu, **options)
        with pytest.raises(ValueError):
            client_with(emu, **options)
    err = pickle.loads(pickle.dumps(ConfigError("m", field="timeout")))
    assert (type(err), err.field, str(err)) == (ConfigError, "timeout", "m")


def test_an_http_object_without_send_is_refused_before_any_token_is_in_doubt(emu):
    # Before: accepted, and its first request ended as NetworkError(maybe_sent)
    # with the refresh token marked in doubt.
    with pytest.raises(ConfigError) as raised:
        client_with(emu, http=object())
    assert raised.value.field == "http" and "send()" in str(raised.value)
    assert emu.refresh_requests() == 0


def test_session_arguments_are_checked_before_anything_is_sent(emu):
    client, _ = make_sync_client(emu)
    store = TestStore()
    session, _ = seeded_sync(emu, client, store)
    sent = emu.refresh_requests()
    cases = [
        (lambda: client.session("u2", object()), "store"),
        (lambda: client.session("u2", "not a store"), "store"),
        (lambda: client.session(5, store), "key"),
        (lambda: client.session("\ud800", store), "key"),
        (lambda: session.token_rejected(123), "token"),
        (lambda: session.token_rejected(None), "token"),
        (lambda: session.token_rejected("\ud800"), "token"),
        (lambda: session.seed(refresh_token=b"abc"), "refresh_token"),
        (lambda: session.seed(refresh_token="ab\ud800"), "refresh_token"),
        (lambda: session.seed(), "refresh_token"),
        (lambda: session.seed(bogus=1, refresh_token="x"), "bogus"),
        (lambda: session.seed(refresh_token="x", expires_in=float("nan")), "expires_in"),
        (lambda: session.seed(refresh_token="x", expires_in=2 ** 70), "expires_in"),
        (lambda: session.seed({"refresh_token": "x"}), "options"),
        (lambda: session.seed(generated.SeedOptions(refresh_token=5)), "refresh_token"),
        (lambda: session.seed(generated.SeedOptions(refresh_token="x"), access_token="y"), "options"),
        (lambda: client.client_token([1]), "scopes"),
        (lambda: client.client_token(["\ud800"]), "scopes"),
        (lambda: client.client_token(None), "scopes"),
        (lambda: client.client_token(b"abc"), "scopes"),
        (lambda: client.invalidate_client_token([1]), "scopes"),
        (lambda: client.client_token_rejected([1], "t"), "scopes"),
        (lambda: client.client_token_rejected(["a"], None), "token"),
        (lambda: client.authorization_url(None), "redirect_uri"),
        (lambda: client.authorization_url("http://127.0.0.1/\ud800"), "redirect_uri"),
        (lambda: client.authorization_url(REDIRECT_URI, bogus=1), "bogus"),
        (lambda: client.authorization_url(REDIRECT_URI, scopes=[1]), "scopes"),
        (lambda: client.authorization_url(REDIRECT_URI, scopes="a b"), "scopes"),
    ]
    for call, field in cases:
        with pytest.raises(ConfigError) as raised:
            call()
        assert raised.value.field == field, (field, repr(raised.value))
    assert emu.refresh_requests() == sent and emu.grant_requests("client_credentials") == 0


@pytest.mark.parametrize("timeout", [float("nan"), float("inf"), -1, pytest.param(-(10 ** 400), id="-10**400"), True, "1"])
def test_a_sync_timeout_that_is_not_a_number_of_seconds_is_refused_before_the_call(emu, timeout):
    client, _ = make_sync_client(emu)
    session, _ = seeded_sync(emu, client, TestStore())
    with pytest.raises(ConfigError) as raised:
        session.refresh(timeout=timeout)
    assert raised.value.field == "timeout"
    assert emu.refresh_requests() == 0, "no refresh was started"


@pytest.mark.parametrize("host_clock", [True, False], ids=["host clock", "system clock"])
@pytest.mark.parametrize("timeout", [float("nan"), -1, "1"])
def test_a_bad_sync_timeout_is_refused_while_the_mirrored_token_is_fresh(emu, host_clock, timeout):
    if host_clock:
        client, _ = make_sync_client(emu)
    else:
        client = freshtoken.Client(emu.token_endpoint, CLIENT_ID, client_secret=CLIENT_SECRET)
    session, _ = seeded_sync(emu, client, TestStore())
    token = session.access_token()
    assert session.access_token(timeout=5) == token, "the mirrored token, with a good timeout"
    with pytest.raises(ConfigError) as raised:
        session.access_token(timeout=timeout)
    assert raised.value.field == "timeout"
    assert emu.refresh_requests() == 1


def test_a_sync_timeout_beyond_what_locks_can_wait_is_no_limit(emu):
    client, _ = make_sync_client(emu)
    session, _ = seeded_sync(emu, client, TestStore())
    assert isinstance(session.refresh(timeout=1e300).access_token, str)
    assert isinstance(session.refresh(timeout=2 ** 64).access_token, str)
    assert isinstance(session.refresh(timeout=10 ** 400).access_token, str), "an int no float can hold"
    assert emu.refresh_requests() == 3


@pytest.mark.parametrize("label,kwargs,field", [
    ("store None", dict(store=None), "store"),
    ("store object()", dict(store=object()), "store"),
    ("code int", dict(code=1), "code"),
    ("code lone surrogate", dict(code="\ud800"), "code"),
    ("code None", dict(code=None), "code"),
    ("verifier bytes", dict(code_verifier=b"v"), "code_verifier"),
    ("key int", dict(key=5), "key"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_exchange_code_refuses_bad_arguments_before_the_single_use_code_is_sent(emu, label, kwargs, field):
    client, _ = make_sync_client(emu)
    arguments = dict(key="u1", store=TestStore(), code="the-code", code_verifier="v" * 43,
                     redirect_uri=REDIRECT_URI)
    arguments.update(kwargs)
    key, store = arguments.pop("key"), arguments.pop("store")
    with pytest.raises(ConfigError) as raised:
        client.exchange_code(key, store, **arguments)
    assert raised.value.field == field
    assert emu.grant_requests("authorization_code") == 0, "the code was not spent"

    async def the_async_client():
        aclient = freshtoken.AsyncClient(emu.token_endpoint, CLIENT_ID, client_secret=CLIENT_SECRET,
                                         clock=FakeClock())
        with pytest.raises(ConfigError) as raised:
            await aclient.exchange_code(key, store, **arguments)
        return raised.value.field

    assert asyncio.run(the_async_client()) == field
    assert emu.grant_requests("authorization_code") == 0


def test_discovery_and_credentials_json_arguments_are_checked(emu):
    cases = [
        (lambda: freshtoken.Client.discover(None, CLIENT_ID), "issuer"),
        (lambda: freshtoken.Client.discover(emu.issuer + "\ud800", CLIENT_ID), "issuer"),
        (lambda: freshtoken.Client.discover(emu.issuer, 5), "client_id"),
        (lambda: freshtoken.Client.discover(emu.issuer, CLIENT_ID, bogus=1), "bogus"),
        (lambda: freshtoken.Client.discover(emu.issuer, CLIENT_ID, clock=object()), "clock"),
        (lambda: asyncio.run(freshtoken.AsyncClient.discover(None, CLIENT_ID)), "issuer"),
        (lambda: freshtoken.Client.from_credentials_json(None), "json"),
        (lambda: freshtoken.Client.from_credentials_json('{"clientId": "\ud800"}'), "json"),
    ]
    for call, field in cases:
        with pytest.raises(ConfigError) as raised:
            call()
        assert raised.value.field == field, (field, repr(raised.value))


def test_encryption_arguments_are_checked(emu):
    key = freshtoken.EncryptionKey("k1", b"\0" * 32)
    cases = [
        (lambda: freshtoken.EncryptionKey(None, b"\0" * 32), "id"),
        (lambda: freshtoken.EncryptionKey("\ud800", b"\0" * 32), "id"),
        (lambda: freshtoken.EncryptionKey("k1", "\ud800"), "key"),
        (lambda: freshtoken.EncryptedStore("x", key), "inner"),
        (lambda: freshtoken.EncryptedStore(object(), key), "inner"),
        (lambda: freshtoken.EncryptedStore(MemoryTokenStore(), key, None), "old"),
    ]
    for call, field in cases:
        with pytest.raises(ConfigError) as raised:
            call()
        assert raised.value.field == field, (field, repr(raised.value))


# -- the checking layer follows the generated records --------------------------


RECORDS = [generated.TokenClientOptions, generated.RetryOptions, generated.SeedOptions,
           generated.AuthorizationUrlOptions, generated.ExchangeCodeOptions]
KNOWN_TYPES = {"str", "int", "typing.List[str]", "dict[str, str]", "RetryOptions", "EventListener"}


def required(cls):
    from freshtoken import _check

    return {name: ("x" if annotation == "str" else None)
            for name, (annotation, needed) in _check._fields(cls).items() if needed}


@pytest.mark.parametrize("cls", RECORDS, ids=lambda c: c.__name__)
def test_every_record_field_has_a_type_the_checks_know(cls):
    from freshtoken import _check

    for name, (annotation, _) in _check._fields(cls).items():
        inner = annotation[len("typing.Optional["):-1] if annotation.startswith("typing.Optional[") else annotation
        assert inner in KNOWN_TYPES, f"{cls.__name__}.{name}: {annotation} (teach _check._field this type)"


@pytest.mark.parametrize("cls", RECORDS, ids=lambda c: c.__name__)
def test_the_narrow_int_fields_are_those_the_generated_converters_check(cls):
    # Every int field is an i64 in the FFI except those listed in _check._NARROW:
    # a field the generated converter refuses at 2**40 must be listed there.
    from freshtoken import _check

    converter = getattr(generated, f"_UniffiFfiConverterType{cls.__name__}")
    for name, (annotation, _) in _check._fields(cls).items():
        if annotation not in ("int", "typing.Optional[int]"):
            continue
        values = dict(required(cls), **{name: 2 ** 40})
        try:
            converter.check_lower(cls(**values))
            narrow = False
        except ValueError:
            narrow = True
        assert narrow == ((cls.__name__, name) in _check._NARROW), f"{cls.__name__}.{name}"


@pytest.mark.parametrize("option", ["leeway_seconds", "user_token_lifetime_seconds",
                                    "client_token_lifetime_seconds", "refresh_token_lifetime_seconds"])
def test_the_cores_own_refusals_name_the_keyword_the_caller_used(emu, option):
    # The core's builder says `leeway_secs`; a Python caller wrote `leeway_seconds`.
    with pytest.raises(ConfigError) as raised:
        freshtoken.Client(emu.token_endpoint, "test-client", client_secret="test-secret", **{option: -5})
    assert raised.value.field == option
    assert f"`{option}`" in str(raised.value)


class FloatCallingSelfOff(float):
    """A float whose own __float__ raises: it must count as its value."""

    def __float__(self):
        raise AssertionError("freshtoken called the subclass's __float__")


class IntFloatingNegative(int):
    """An int whose own __float__ gives another number than its value."""

    def __float__(self):
        return -1.0


@pytest.mark.parametrize("timeout", [FloatCallingSelfOff(30.0), IntFloatingNegative(30)],
                         ids=["float subclass", "int subclass"])
def test_a_sync_timeout_of_a_number_subclass_counts_as_its_value(emu, timeout):
    client, _ = make_sync_client(emu)
    session, _ = seeded_sync(emu, client, TestStore())
    info = session.refresh(timeout=timeout)
    assert isinstance(info.access_token, str)
    assert emu.refresh_requests() == 1
