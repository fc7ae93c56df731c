"""One vocabulary, Python style: top-level exception classes with `code` and
`reason` strings and the core's sentence as str(); times as aware UTC
datetimes; no generated slow twin at top level."""

import asyncio
import json
import os
import pickle
import re
from datetime import datetime, timedelta, timezone

import pytest

import freshtoken
from freshtoken import _errors

from helpers import CLIENT_SECRET, REPO, YEAR_MS, TestStore, make_client, make_sync_client, seeded_sync

CLASSES = {
    "reauthorization_required": freshtoken.ReauthorizationRequired,
    "invalid_client": freshtoken.InvalidClientError,
    "oauth": freshtoken.OAuthError,
    "transient": freshtoken.TransientError,
    "network": freshtoken.NetworkError,
    "timeout": freshtoken.TimeoutError,
    "invalid_response": freshtoken.InvalidResponseError,
    "storage": freshtoken.StorageError,
    "conflict": freshtoken.ConflictError,
    "config": freshtoken.ConfigError,
}


def test_the_version_is_the_packages_and_the_package_is_typed():
    pyproject = open(os.path.join(REPO, "bindings", "python", "pyproject.toml"), encoding="utf-8").read()
    assert f'version = "{freshtoken.__version__}"' in pyproject
    assert os.path.exists(os.path.join(os.path.dirname(freshtoken.__file__), "py.typed")), "PEP 561 marker"


def test_one_top_level_class_per_stable_code():
    core = open(os.path.join(REPO, "src", "error.rs"), encoding="utf-8").read()
    codes = set(re.findall(r'ErrorCode::\w+ => "(\w+)"', core))
    assert codes == set(CLASSES), "one class per code of Rust's ErrorCode"
    for code, cls in CLASSES.items():
        assert issubclass(cls, freshtoken.FreshTokenError) and cls.code == code
        assert freshtoken.ERROR_CODES[cls] == code
    assert issubclass(freshtoken.TimeoutError, TimeoutError), "also the built-in TimeoutError"
    assert issubclass(freshtoken.ConfigError, ValueError)
    assert "TimeoutError" not in freshtoken.__all__, "a star import does not shadow the built-in"
    # The generated objects with async twins of the fast path are not at top level.
    for generated in ("TokenClient", "UserSession", "ClientTokens"):
        assert not hasattr(freshtoken, generated), generated


@pytest.mark.parametrize("retry_after", ["86400000000000", "99999999999999999999"])
def test_a_retry_after_too_far_for_a_timedelta_reads_as_the_longest_one(emu, retry_after):
    # The server alone chooses the number: reading it never raises.
    client, _ = make_sync_client(emu, retry={"max_attempts": 2})
    session, _ = seeded_sync(emu, client, TestStore())
    emu.fault({"kind": "rate_limit", "retry_after": retry_after, "count": 2})
    with pytest.raises(freshtoken.TransientError) as raised:
        session.access_token(timeout=20)
    assert raised.value.retry_after_ms >= 86400000000000 * 1000
    assert timedelta.max - raised.value.retry_after < timedelta(milliseconds=1), "the longest, to the millisecond"


def test_instants_outside_what_a_datetime_holds_read_as_its_bounds(emu):
    # A foreign or damaged record, or a host clock far ahead: the *_ms fields
    # keep the number, the datetime properties never raise.
    client, _ = make_sync_client(emu)
    store = TestStore()
    session, _ = seeded_sync(emu, client, store)
    session.access_token()
    record = json.loads(store.get("u1"))
    record["refresh_expires_at"] = 2 ** 63 - 1
    store._records["u1"] = json.dumps(record)
    status = make_sync_client(emu)[0].session("u1", store).status(timeout=10)
    assert status.refresh_expires_at_ms == 2 ** 63 - 1
    last = datetime.max.replace(tzinfo=timezone.utc)
    assert last - status.refresh_expires_at < timedelta(milliseconds=1), "the last instant, to the millisecond"
    assert freshtoken._times.from_ms(-(2 ** 63)) == datetime.min.replace(tzinfo=timezone.utc)


def test_every_generated_variant_translates_with_its_fields():
    generated = freshtoken._generated.FreshTokenError
    err = _errors.translate(generated.ReauthorizationRequired(
        freshtoken.ReauthorizationReason.LOST_ROTATION, None,
        "reauthorization required (lost_rotation): the user must authorize again", False))
    assert type(err) is freshtoken.ReauthorizationRequired
    assert err.server_may_hold_token is False
    assert (err.code, err.reason) == ("reauthorization_required", "lost_rotation")
    assert str(err) == "reauthorization required (lost_rotation): the user must authorize again"
    err = _errors.translate(generated.OAuth(400, "invalid_scope", "no such scope", "the token endpoint said invalid_scope", False))
    assert (err.code, err.oauth_error, err.status, err.description) == ("oauth", "invalid_scope", 400, "no such scope")
    err = _errors.translate(generated.Transient(503, 2500, "the session is marked revoked, but …", True))
    assert err.retry_after == timedelta(milliseconds=2500) and err.status == 503
    assert err.server_may_hold_token is True
    err = _errors.translate(generated.Config("timeout_ms", "invalid configuration `timeout_ms`: must be positive", False))
    assert (err.field, err.reason) == ("timeout_ms", None)
    assert isinstance(err, freshtoken.FreshTokenError.Config), "the generated variant names still catch"
    copy = pickle.loads(pickle.dumps(err))
    assert (type(copy), str(copy), copy.field) == (type(err), str(err), err.field)
    assert repr(err).startswith("ConfigError('invalid configuration") and "code='config'" in repr(err)
    other = ValueError("x")
    assert _errors.translate(other) is other and freshtoken.error_code(other) is None


def test_errors_from_the_core_carry_the_rust_sentence_and_no_secret(emu):
    client, _ = make_sync_client(emu)
    store = TestStore()
    session, family = seeded_sync(emu, client, store)
    emu.fault({"kind": "body", "status": 400, "body": '{"error":"invalid_grant"}'})
    with pytest.raises(freshtoken.ReauthorizationRequired) as raised:
        session.access_token()
    err = raised.value
    assert str(err) == "reauthorization required (invalid_grant): the user must authorize again"
    assert (err.code, err.reason, err.reason_code) == ("reauthorization_required", "invalid_grant", "invalid_grant")
    text = " ".join([str(err), repr(err), *(str(v) for v in vars(err).values())])
    for secret in (family["refresh_token"], CLIENT_SECRET):
        assert secret not in text


def test_async_errors_are_the_same_classes(emu):
    async def scenario():
        client, _ = make_client(emu)
        with pytest.raises(freshtoken.ReauthorizationRequired) as raised:
            await client.session("nobody", TestStore()).access_token()
        assert raised.value.reason == "no_refresh_token"
        with pytest.raises(freshtoken.ConfigError) as bad:
            await client.client_token("accounts")
        assert bad.value.field == "scopes"

    asyncio.run(scenario())


def test_times_are_aware_utc_datetimes_beside_the_milliseconds(emu):
    client, clock = make_sync_client(emu)
    session, _ = seeded_sync(emu, client, TestStore())
    sent_at = clock.now_ms()
    info = session.tokens()
    assert info.expires_at == datetime.fromtimestamp((sent_at + 900_000) / 1000, tz=timezone.utc)
    assert info.expires_at.tzinfo is timezone.utc
    assert info.refresh_expires_at - info.expires_at == timedelta(milliseconds=YEAR_MS - 900_000)
    status = session.status()
    assert status.access_expires_at == info.expires_at
    assert status.refresh_expires_at == info.refresh_expires_at
    assert freshtoken.from_ms(None) is None
    assert freshtoken.from_ms(1_500) == datetime(1970, 1, 1, 0, 0, 1, 500_000, tzinfo=timezone.utc)


def test_records_compare_only_with_their_own_type(emu):
    # The generated __eq__ read the other object's fields: `info == None`
    # raised AttributeError.
    client, _ = make_sync_client(emu)
    session, _ = seeded_sync(emu, client, TestStore())
    info = session.tokens()
    status = session.status()
    header = freshtoken.HttpHeader(name="a", value="b")
    for record in (info, status, header, freshtoken.CasResult.SAVED(version="v1")):
        assert record != None and not (record == None)  # noqa: E711
        assert record not in [1, "a", object()]
    assert header == freshtoken.HttpHeader(name="a", value="b")
    assert header != freshtoken.HttpHeader(name="a", value="c")
    assert session.status() == status
