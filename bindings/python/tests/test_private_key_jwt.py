"""private_key_jwt through Python: a client token from the real, independent
oidc-provider (which verifies the RS256 signature against the registered
public key and refuses a repeated jti), configured from the client
credentials JSON with the certificate, as Stitch hands it out."""

import asyncio
import json
import os
import subprocess

import pytest

import freshtoken
from freshtoken import FreshTokenError

from conftest import REPO

SERVER = os.path.join(REPO, "bindings", "js", "support", "oidc-provider-server.mjs")


@pytest.fixture(scope="module")
def oidc():
    process = subprocess.Popen(["node", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    try:
        line = process.stdout.readline()
        if not line:
            pytest.fail("oidc-provider did not start (is bindings/js installed? npm install there)")
        yield json.loads(line)
    finally:
        process.stdin.close()
        process.wait(timeout=10)


def credentials(oidc, **overrides):
    creds = {
        "clientId": oidc["clients"]["jwt"]["clientId"],
        "certificate": oidc["clients"]["jwt"]["privateKeyPem"],
        "slidingRefreshTokenLifetime": 31536000,
        "tokenEndpoint": oidc["token_endpoint"],
        "redirectUris": ["ignored"],
    }
    creds.update(overrides)
    return json.dumps({k: v for k, v in creds.items() if v is not None})


def test_a_client_token_from_oidc_provider_with_a_certificate(oidc):
    async def scenario():
        client = freshtoken.AsyncClient.from_credentials_json(credentials(oidc))
        token = await client.client_token(["api:read"])
        assert isinstance(token, str) and token
        # Each request carries a fresh assertion: the server refuses a replayed jti.
        for _ in range(3):
            client.invalidate_client_token(["api:read"])
            assert await client.client_token(["api:read"]) != token

    asyncio.run(scenario())


def test_missing_members_are_config_errors_naming_them(oidc):
    with pytest.raises(FreshTokenError.Config) as missing:
        freshtoken.AsyncClient.from_credentials_json(credentials(oidc, slidingRefreshTokenLifetime=None))
    assert missing.value.field == "slidingRefreshTokenLifetime"
    with pytest.raises(FreshTokenError.Config) as no_key:
        freshtoken.AsyncClient.from_credentials_json(credentials(oidc, certificate="-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
    assert no_key.value.field == "certificate", "the member of the JSON that held it"
    assert "BEGIN" not in str(no_key.value)
