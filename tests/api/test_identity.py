"""Identity over HTTP, on both backends: registration, login, access tokens, refresh token
rotation with reuse detection, logout, signing key rotation, merchant API keys.

Every refused request must answer a problem document with a stable `code` and leave the
database as it was.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import func, or_, select, update

from payflow.identity import models
from payflow.identity.tokens import create_signing_key
from tests.api.conftest import (
    PASSWORD,
    Server,
    User,
    create_operator,
    register,
    unique_handle,
)

MISSING = object()


def assert_problem(
    response: httpx.Response, status: int, code: str, *, who: str = ""
) -> dict[str, Any]:
    """The response is an RFC 9457 problem with this status and machine code. (`who`
    names the caller in the failure message.)"""
    assert response.status_code == status, (who, response.text)
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["code"] == code, (who, body)
    assert body["status"] == status
    assert body["type"] == f"urn:payflow:problem:{code}"
    assert body["title"] and body["detail"]
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def registration(**changes: Any) -> dict[str, Any]:
    """A valid registration body with a fresh handle and e-mail, then `changes`."""
    handle = unique_handle("r")
    body: dict[str, Any] = {
        "email": f"{handle}@example.com",
        "password": PASSWORD,
        "name": "Asha Rao",
        "handle": handle,
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not MISSING}


async def users_matching(server: Server, *, email: Any = None, handle: Any = None) -> int:
    """How many users have this e-mail (any case) or this handle. Values that are not
    strings, or that PostgreSQL could not even compare (NUL, lone surrogates), match nobody."""

    def usable(value: Any) -> bool:
        return (
            isinstance(value, str)
            and "\x00" not in value
            and not any("\ud800" <= c <= "\udfff" for c in value)
        )

    table = models.users
    conditions = []
    if usable(email):
        conditions.append(func.lower(table.c.email) == email.strip().lower())
    if usable(handle):
        conditions.append(table.c.handle == handle)
    if not conditions:
        return 0
    async with server.engine.connect() as conn:
        count = await conn.scalar(select(func.count()).select_from(table).where(or_(*conditions)))
    return int(count or 0)


async def post_json(
    client: httpx.AsyncClient, path: str, body: Any, **headers: str
) -> httpx.Response:
    """POST `body` as ASCII JSON: escaped, so that even text UTF-8 cannot encode (a lone
    surrogate) reaches the server."""
    return await client.post(
        path, content=json.dumps(body), headers={"content-type": "application/json", **headers}
    )


async def login_tokens(client: httpx.AsyncClient, user: User) -> dict[str, Any]:
    response = await client.post("/v1/auth/login", json={"email": user.email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post("/v1/auth/refresh", json={"refresh_token": token})


class TestRegister:
    async def test_created_user_and_empty_wallet(self, api: Server) -> None:
        body = registration(name="Asha Rao")
        response = await api.client.post("/v1/auth/register", json=body)
        assert response.status_code == 201, response.text
        user = response.json()
        assert set(user) == {
            "id",
            "object",
            "email",
            "name",
            "handle",
            "address",
            "role",
            "created_at",
        }
        assert user["id"].startswith("usr_") and len(user["id"]) == 4 + 32
        assert user["object"] == "user"
        assert user["email"] == body["email"]
        assert user["name"] == "Asha Rao"
        assert user["handle"] == body["handle"]
        assert user["address"] == f"{body['handle']}@payflow"
        assert user["role"] == "customer"
        assert user["created_at"].endswith("Z")

        tokens = await api.client.post(
            "/v1/auth/login", json={"email": body["email"], "password": PASSWORD}
        )
        assert tokens.status_code == 200, tokens.text
        auth = bearer(tokens.json()["access_token"])
        wallets = await api.client.get("/v1/wallets", headers=auth)
        assert wallets.status_code == 200, wallets.text
        [wallet] = wallets.json()
        assert wallet["currency"] == "INR"
        assert wallet["address"] == user["address"]
        assert wallet["balance"] == {"posted": 0, "pending": 0, "available": 0}
        me = await api.client.get("/v1/me", headers=auth)
        assert me.status_code == 200 and me.json() == user

    async def test_merchant_role(self, api: Server) -> None:
        response = await api.client.post("/v1/auth/register", json=registration(role="merchant"))
        assert response.status_code == 201, response.text
        assert response.json()["role"] == "merchant"

    async def test_email_is_stored_lower_case(self, api: Server) -> None:
        body = registration()
        body["email"] = body["email"].upper()
        response = await api.client.post("/v1/auth/register", json=body)
        assert response.status_code == 201, response.text
        assert response.json()["email"] == body["email"].lower()
        login = await api.client.post(
            "/v1/auth/login", json={"email": body["email"].lower(), "password": PASSWORD}
        )
        assert login.status_code == 200, login.text

    async def test_duplicate_email(self, api: Server) -> None:
        first = registration()
        assert (await api.client.post("/v1/auth/register", json=first)).status_code == 201
        again = registration(email=first["email"])
        response = await api.client.post("/v1/auth/register", json=again)
        assert_problem(response, 409, "email_taken")
        assert await users_matching(api, handle=again["handle"]) == 0

    async def test_duplicate_email_in_another_case(self, api: Server) -> None:
        first = registration()
        assert (await api.client.post("/v1/auth/register", json=first)).status_code == 201
        again = registration(email=first["email"].upper())
        response = await api.client.post("/v1/auth/register", json=again)
        assert_problem(response, 409, "email_taken")
        assert await users_matching(api, email=first["email"]) == 1

    async def test_duplicate_handle(self, api: Server) -> None:
        first = registration()
        assert (await api.client.post("/v1/auth/register", json=first)).status_code == 201
        again = registration(handle=first["handle"])
        response = await api.client.post("/v1/auth/register", json=again)
        assert_problem(response, 409, "handle_taken")
        assert await users_matching(api, email=again["email"]) == 0

    @pytest.mark.parametrize(
        ("changes", "code"),
        [
            pytest.param({"email": "no-at-sign.example.com"}, "validation_error", id="email-no-at"),
            pytest.param({"email": "asha@localhost"}, "validation_error", id="email-no-dot"),
            pytest.param({"email": "a@b@example.com"}, "validation_error", id="email-two-ats"),
            pytest.param({"email": "as ha@example.com"}, "validation_error", id="email-space"),
            pytest.param({"email": " asha@example.com"}, "validation_error", id="email-padded"),
            pytest.param({"email": "a\u0000b@example.com"}, "validation_error", id="email-nul"),
            pytest.param({"email": "a\tb@example.com"}, "validation_error", id="email-tab"),
            pytest.param({"email": ""}, "validation_error", id="email-empty"),
            pytest.param(
                {"email": "a" * 65 + "@example.com"}, "validation_error", id="email-local-65"
            ),
            pytest.param({"email": "a@" + "b" * 250 + ".com"}, "validation_error", id="email-255"),
            pytest.param({"handle": "Asha_1"}, "validation_error", id="handle-uppercase"),
            pytest.param({"handle": "ab"}, "validation_error", id="handle-too-short"),
            pytest.param({"handle": "a" * 33}, "validation_error", id="handle-too-long"),
            pytest.param({"handle": "asha-rao"}, "validation_error", id="handle-dash"),
            pytest.param({"handle": "asha.rao"}, "validation_error", id="handle-dot"),
            pytest.param({"handle": "asha rao"}, "validation_error", id="handle-space"),
            pytest.param({"handle": "asha@payflow"}, "validation_error", id="handle-address"),
            pytest.param({"handle": "áshaa"}, "validation_error", id="handle-non-ascii"),
            pytest.param({"handle": ""}, "validation_error", id="handle-empty"),
            pytest.param({"handle": "payflow"}, "handle_reserved", id="handle-payflow"),
            pytest.param({"handle": "admin"}, "handle_reserved", id="handle-admin"),
            pytest.param({"handle": "operator"}, "handle_reserved", id="handle-operator"),
            pytest.param({"password": "x" * 7}, "validation_error", id="password-7"),
            pytest.param({"password": "x" * 129}, "validation_error", id="password-129"),
            pytest.param({"password": ""}, "validation_error", id="password-empty"),
            pytest.param({"name": ""}, "validation_error", id="name-empty"),
            pytest.param({"name": "n" * 101}, "validation_error", id="name-101"),
            pytest.param({"name": "   "}, "name_invalid", id="name-blank"),
            pytest.param({"name": "As\u0000ha"}, "validation_error", id="name-nul"),
            pytest.param({"name": "As\u0007ha"}, "name_invalid", id="name-control"),
            pytest.param({"name": "As\ud800ha"}, "validation_error", id="name-surrogate"),
            pytest.param(
                {"email": "a\udfff@example.com"}, "validation_error", id="email-surrogate"
            ),
            pytest.param(
                {"password": "pass\ud800word"}, "validation_error", id="password-surrogate"
            ),
            pytest.param({"email": MISSING}, "validation_error", id="missing-email"),
            pytest.param({"password": MISSING}, "validation_error", id="missing-password"),
            pytest.param({"name": MISSING}, "validation_error", id="missing-name"),
            pytest.param({"handle": MISSING}, "validation_error", id="missing-handle"),
            pytest.param({"is_admin": True}, "validation_error", id="unknown-field"),
            pytest.param({"email": 42}, "validation_error", id="email-int"),
            pytest.param({"password": 12345678}, "validation_error", id="password-int"),
            pytest.param({"handle": 123}, "validation_error", id="handle-int"),
            pytest.param({"name": None}, "validation_error", id="name-null"),
            pytest.param({"name": ["Asha"]}, "validation_error", id="name-list"),
            pytest.param({"role": "operator"}, "validation_error", id="role-operator"),
            pytest.param({"role": "admin"}, "validation_error", id="role-unknown"),
            pytest.param({"role": "MERCHANT"}, "validation_error", id="role-uppercase"),
            pytest.param({"role": None}, "validation_error", id="role-null"),
        ],
    )
    async def test_invalid(self, api: Server, changes: dict[str, Any], code: str) -> None:
        body = registration(**changes)
        response = await post_json(api.client, "/v1/auth/register", body)
        problem = assert_problem(response, 422, code)
        if code == "validation_error":
            assert problem["errors"], problem
            for error in problem["errors"]:
                assert set(error) == {"loc", "msg", "type"}
                assert error["loc"][0] == "body"
            named = {e["loc"][1] for e in problem["errors"] if len(e["loc"]) > 1}
            assert named & set(changes), problem["errors"]
        assert await users_matching(api, email=body.get("email")) == 0
        assert await users_matching(api, handle=body.get("handle")) == 0

    @pytest.mark.parametrize(
        ("content", "status", "code"),
        [
            pytest.param(b'{"email": ', 400, "malformed_json", id="truncated"),
            pytest.param(b"{'email': 'a@example.com'}", 400, "malformed_json", id="single-quotes"),
            pytest.param(b"\xff\xfe{}", 400, "malformed_json", id="not-utf8"),
            pytest.param(
                b'{"email": "a@example.com",}', 400, "malformed_json", id="trailing-comma"
            ),
            pytest.param(b"", 422, "validation_error", id="empty"),
            pytest.param(b"[]", 422, "validation_error", id="array"),
            pytest.param(b"null", 422, "validation_error", id="null"),
            pytest.param(b'"asha"', 422, "validation_error", id="string"),
        ],
    )
    async def test_malformed_body(
        self, api: Server, content: bytes, status: int, code: str
    ) -> None:
        response = await api.client.post(
            "/v1/auth/register", content=content, headers={"content-type": "application/json"}
        )
        assert_problem(response, status, code)

    async def test_concurrent_same_email(self, api: Server) -> None:
        email = f"{unique_handle('c')}@example.com"
        bodies = [registration(email=email) for _ in range(5)]
        responses = await asyncio.gather(
            *(api.client.post("/v1/auth/register", json=body) for body in bodies)
        )
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [201, 409, 409, 409, 409], [r.text for r in responses]
        for response in responses:
            if response.status_code == 409:
                assert_problem(response, 409, "email_taken")
        assert await users_matching(api, email=email) == 1
        [winner] = [b for b, r in zip(bodies, responses, strict=True) if r.status_code == 201]
        for body in bodies:
            assert await users_matching(api, handle=body["handle"]) == (1 if body is winner else 0)

    async def test_concurrent_same_handle(self, api: Server) -> None:
        handle = unique_handle("c")
        bodies = [
            registration(handle=handle, email=f"{uuid.uuid4().hex}@example.com") for _ in range(5)
        ]
        responses = await asyncio.gather(
            *(api.client.post("/v1/auth/register", json=body) for body in bodies)
        )
        assert sorted(r.status_code for r in responses) == [201, 409, 409, 409, 409]
        for response in responses:
            if response.status_code == 409:
                assert_problem(response, 409, "handle_taken")
        assert await users_matching(api, handle=handle) == 1


class TestLogin:
    async def test_token_pair(self, api: Server) -> None:
        user = await register(api.client)
        body = await login_tokens(api.client, user)
        assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in"}
        assert body["token_type"] == "bearer"
        assert body["expires_in"] == api.settings.access_token_ttl_s
        assert body["refresh_token"].startswith("rt_")
        header = jwt.get_unverified_header(body["access_token"])
        assert header["alg"] == "HS256" and isinstance(header["kid"], str)
        claims = jwt.decode(body["access_token"], options={"verify_signature": False})
        assert claims["sub"] == str(uuid.UUID(hex=user.id.removeprefix("usr_")))
        assert claims["role"] == "customer" and claims["iss"] == "payflow"
        assert claims["exp"] - claims["iat"] == api.settings.access_token_ttl_s
        me = await api.client.get("/v1/me", headers=bearer(body["access_token"]))
        assert me.status_code == 200, me.text
        assert me.json()["id"] == user.id and me.json()["handle"] == user.handle

    async def test_email_any_case(self, api: Server) -> None:
        user = await register(api.client)
        response = await api.client.post(
            "/v1/auth/login", json={"email": user.email.upper(), "password": PASSWORD}
        )
        assert response.status_code == 200, response.text

    async def test_wrong_password(self, api: Server) -> None:
        user = await register(api.client)
        response = await api.client.post(
            "/v1/auth/login", json={"email": user.email, "password": PASSWORD + "x"}
        )
        assert_problem(response, 401, "invalid_credentials")
        assert "access_token" not in response.text

    async def test_password_is_case_sensitive(self, api: Server) -> None:
        user = await register(api.client)
        response = await api.client.post(
            "/v1/auth/login", json={"email": user.email, "password": PASSWORD.upper()}
        )
        assert_problem(response, 401, "invalid_credentials")

    @pytest.mark.parametrize(
        "email",
        [
            pytest.param("nobody-{}@example.com", id="unknown"),
            pytest.param("not an e-mail {}", id="not-an-address"),
        ],
    )
    async def test_unknown_email_same_answer(self, api: Server, email: str) -> None:
        response = await post_json(
            api.client,
            "/v1/auth/login",
            {"email": email.format(uuid.uuid4().hex), "password": PASSWORD},
        )
        assert_problem(response, 401, "invalid_credentials")

    @pytest.mark.parametrize(
        "body",
        [
            pytest.param({"email": "a@example.com"}, id="missing-password"),
            pytest.param({"password": PASSWORD}, id="missing-email"),
            pytest.param({"email": "", "password": PASSWORD}, id="empty-email"),
            pytest.param({"email": "a@example.com", "password": ""}, id="empty-password"),
            pytest.param({"email": "a@example.com", "password": "x" * 129}, id="password-129"),
            pytest.param({"email": "a" * 255, "password": PASSWORD}, id="email-255"),
            pytest.param({"email": "a\u0000@example.com", "password": PASSWORD}, id="email-nul"),
            pytest.param({"email": 1, "password": PASSWORD}, id="email-int"),
            pytest.param({"email": "a@example.com", "password": 12345678}, id="password-int"),
            pytest.param(
                {"email": "a@example.com", "password": PASSWORD, "otp": "1"}, id="unknown"
            ),
            pytest.param([], id="array"),
        ],
    )
    async def test_invalid_body(self, api: Server, body: Any) -> None:
        response = await post_json(api.client, "/v1/auth/login", body)
        assert_problem(response, 422, "validation_error")

    async def test_malformed_json(self, api: Server) -> None:
        response = await api.client.post(
            "/v1/auth/login", content=b'{"email":', headers={"content-type": "application/json"}
        )
        assert_problem(response, 400, "malformed_json")


async def token_secret(server: Server, token: str) -> tuple[str, str]:
    """The kid that signed `token` and that key's secret, from the database."""
    kid = jwt.get_unverified_header(token)["kid"]
    async with server.engine.connect() as conn:
        secret = await conn.scalar(
            select(models.signing_keys.c.secret).where(models.signing_keys.c.kid == kid)
        )
    assert isinstance(secret, str)
    return kid, secret


def claims_for(user: User, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": "payflow",
        "sub": str(uuid.UUID(hex=user.id.removeprefix("usr_"))),
        "role": user.role,
        "iat": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not MISSING}


def sign_hs256(header: dict[str, Any], claims: dict[str, Any], secret: str) -> str:
    """A JWT with any header at all (PyJWT refuses to write some of the ones tested)."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


class TestAccessToken:
    async def test_crafted_with_the_servers_key_works(self, api: Server) -> None:
        """The control for the tests below: a token made like the server makes them."""
        user = await register(api.client)
        kid, secret = await token_secret(api, user.access_token)
        token = jwt.encode(claims_for(user), secret, algorithm="HS256", headers={"kid": kid})
        response = await api.client.get("/v1/me", headers=bearer(token))
        assert response.status_code == 200, response.text
        assert response.json()["id"] == user.id

    async def test_expired(self, api: Server) -> None:
        user = await register(api.client)
        kid, secret = await token_secret(api, user.access_token)
        now = int(time.time())
        claims = claims_for(user, iat=now - 1000, exp=now - 100)
        token = jwt.encode(claims, secret, algorithm="HS256", headers={"kid": kid})
        assert_problem(await api.client.get("/v1/me", headers=bearer(token)), 401, "token_expired")

    async def test_tampered(self, api: Server) -> None:
        """A customer's token edited to say operator: the signature no longer matches."""
        user = await register(api.client)
        header, _, signature = user.access_token.split(".")
        forged = jwt.encode(claims_for(user, role="operator"), "x" * 32, algorithm="HS256")
        payload = forged.split(".")[1]
        token = f"{header}.{payload}.{signature}"
        assert_problem(await api.client.get("/v1/me", headers=bearer(token)), 401, "invalid_token")
        response = await api.client.get("/v1/operator/system-accounts", headers=bearer(token))
        assert_problem(response, 401, "invalid_token")

    @pytest.mark.parametrize(
        "header",
        [
            pytest.param({"alg": "HS256", "kid": "nosuchkey0000000"}, id="unknown"),
            pytest.param({"alg": "HS256", "kid": 7}, id="int"),
            pytest.param({"alg": "HS256", "kid": None}, id="null"),
            pytest.param({"alg": "HS256"}, id="none"),
        ],
    )
    async def test_kid(self, api: Server, header: dict[str, Any]) -> None:
        """Signed with the server's own secret, but not naming its key: refused."""
        user = await register(api.client)
        _, secret = await token_secret(api, user.access_token)
        token = sign_hs256(header, claims_for(user), secret)
        assert_problem(await api.client.get("/v1/me", headers=bearer(token)), 401, "invalid_token")

    async def test_wrong_secret_with_known_kid(self, api: Server) -> None:
        user = await register(api.client)
        kid, _ = await token_secret(api, user.access_token)
        token = jwt.encode(claims_for(user), "y" * 64, algorithm="HS256", headers={"kid": kid})
        assert_problem(await api.client.get("/v1/me", headers=bearer(token)), 401, "invalid_token")

    @pytest.mark.parametrize(
        "changes",
        [
            pytest.param({"iss": "someone-else"}, id="issuer"),
            pytest.param({"iss": MISSING}, id="no-issuer"),
            pytest.param({"exp": MISSING}, id="no-exp"),
            pytest.param({"sub": MISSING}, id="no-sub"),
            pytest.param({"sub": "not-a-uuid"}, id="bad-sub"),
            pytest.param({"role": "superuser"}, id="bad-role"),
            pytest.param({"role": MISSING}, id="no-role"),
        ],
    )
    async def test_bad_claims(self, api: Server, changes: dict[str, Any]) -> None:
        user = await register(api.client)
        kid, secret = await token_secret(api, user.access_token)
        token = jwt.encode(
            claims_for(user, **changes), secret, algorithm="HS256", headers={"kid": kid}
        )
        assert_problem(await api.client.get("/v1/me", headers=bearer(token)), 401, "invalid_token")

    async def test_alg_none(self, api: Server) -> None:
        user = await register(api.client)
        kid, _ = await token_secret(api, user.access_token)
        token = jwt.encode(claims_for(user), None, algorithm="none", headers={"kid": kid})
        assert_problem(await api.client.get("/v1/me", headers=bearer(token)), 401, "invalid_token")

    async def test_user_that_does_not_exist(self, api: Server) -> None:
        user = await register(api.client)
        kid, secret = await token_secret(api, user.access_token)
        claims = claims_for(user, sub=str(uuid.uuid4()))
        token = jwt.encode(claims, secret, algorithm="HS256", headers={"kid": kid})
        assert_problem(await api.client.get("/v1/me", headers=bearer(token)), 401, "invalid_token")

    @pytest.mark.parametrize(
        ("token", "code"),
        [
            ("garbage", "invalid_token"),
            ("a.b.c", "invalid_token"),
            ("eyJhbGciOiJIUzI1NiJ9..", "invalid_token"),
            ("rt_x_y", "invalid_token"),
            ("pfk_garbage", "invalid_api_key"),
        ],
    )
    async def test_garbage(self, api: Server, token: str, code: str) -> None:
        assert_problem(await api.client.get("/v1/me", headers=bearer(token)), 401, code)

    @pytest.mark.parametrize(
        "headers",
        [
            pytest.param({}, id="none"),
            pytest.param({"Authorization": ""}, id="empty"),
            pytest.param({"Authorization": "Bearer"}, id="no-token"),
            pytest.param({"Authorization": "Basic YTpi"}, id="basic"),
        ],
    )
    async def test_missing(self, api: Server, headers: dict[str, str]) -> None:
        response = await api.client.get("/v1/me", headers=headers)
        assert_problem(response, 401, "unauthenticated")

    async def test_signing_key_rotation(self, api: Server) -> None:
        """A new key may start signing at any time: tokens of the old one keep working, and
        a token signed with the new key works on a process that has not loaded it yet."""
        user = await register(api.client)
        async with api.engine.begin() as conn:
            new_kid = await create_signing_key(conn)
        async with api.engine.connect() as conn:
            new_secret = await conn.scalar(
                select(models.signing_keys.c.secret).where(models.signing_keys.c.kid == new_kid)
            )
        assert isinstance(new_secret, str)
        old_kid, _ = await token_secret(api, user.access_token)
        assert old_kid != new_kid
        token = jwt.encode(
            claims_for(user), new_secret, algorithm="HS256", headers={"kid": new_kid}
        )
        # An unknown kid makes the process reload its keys, at most once a second.
        deadline = time.monotonic() + 3
        while True:
            response = await api.client.get("/v1/me", headers=bearer(token))
            if response.status_code == 200 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert response.status_code == 200, response.text
        old = await api.client.get("/v1/me", headers=user.auth)
        assert old.status_code == 200, old.text
        fresh = await login_tokens(api.client, user)
        assert (
            await api.client.get("/v1/me", headers=bearer(fresh["access_token"]))
        ).status_code == 200


class TestRefresh:
    async def test_rotation(self, api: Server) -> None:
        user = await register(api.client)
        response = await refresh(api.client, user.refresh_token)
        assert response.status_code == 200, response.text
        pair = response.json()
        assert set(pair) == {"access_token", "refresh_token", "token_type", "expires_in"}
        assert pair["token_type"] == "bearer"
        assert pair["refresh_token"] != user.refresh_token
        assert pair["access_token"] != user.access_token
        me = await api.client.get("/v1/me", headers=bearer(pair["access_token"]))
        assert me.status_code == 200 and me.json()["id"] == user.id
        again = await refresh(api.client, pair["refresh_token"])
        assert again.status_code == 200, again.text

    async def test_reuse_revokes_the_family(self, api: Server) -> None:
        user = await register(api.client)
        other_login = await login_tokens(api.client, user)
        first = (await refresh(api.client, user.refresh_token)).json()
        assert_problem(await refresh(api.client, user.refresh_token), 401, "refresh_token_reused")
        # The token issued by the honest rotation is revoked with its family...
        assert_problem(
            await refresh(api.client, first["refresh_token"]), 401, "invalid_refresh_token"
        )
        # ...and the spent one stays dead.
        assert_problem(await refresh(api.client, user.refresh_token), 401, "invalid_refresh_token")
        # Another login is another family.
        response = await refresh(api.client, other_login["refresh_token"])
        assert response.status_code == 200, response.text

    async def test_concurrent_use_of_one_token(self, api: Server) -> None:
        """The same token presented four times at once: one rotation, and the others are
        reuse, which revokes the family (the winner's new token with it)."""
        user = await register(api.client)
        responses = await asyncio.gather(
            *(refresh(api.client, user.refresh_token) for _ in range(4))
        )
        [winner] = [r for r in responses if r.status_code == 200]
        for response in responses:
            if response is not winner:
                assert response.status_code == 401, response.text
                assert response.json()["code"] in {"refresh_token_reused", "invalid_refresh_token"}
        assert any(r.json().get("code") == "refresh_token_reused" for r in responses)
        new_token = winner.json()["refresh_token"]
        assert_problem(await refresh(api.client, new_token), 401, "invalid_refresh_token")

    async def test_expired(self, api: Server) -> None:
        user = await register(api.client)
        token_id = uuid.UUID(hex=user.refresh_token.split("_")[1])
        async with api.engine.begin() as conn:
            await conn.execute(
                update(models.refresh_tokens)
                .where(models.refresh_tokens.c.id == token_id)
                .values(expires_at=time.time_ns() - 1)
            )
        assert_problem(await refresh(api.client, user.refresh_token), 401, "invalid_refresh_token")

    async def test_logout_revokes_the_family(self, api: Server) -> None:
        user = await register(api.client)
        other_login = await login_tokens(api.client, user)
        rotated = (await refresh(api.client, user.refresh_token)).json()
        response = await api.client.post(
            "/v1/auth/logout", json={"refresh_token": rotated["refresh_token"]}
        )
        assert response.status_code == 204, response.text
        assert response.content == b""
        assert_problem(
            await refresh(api.client, rotated["refresh_token"]), 401, "invalid_refresh_token"
        )
        assert (await refresh(api.client, other_login["refresh_token"])).status_code == 200

    @pytest.mark.parametrize(
        ("token", "status", "code"),
        [
            pytest.param("garbage", 401, "invalid_refresh_token", id="garbage"),
            pytest.param("rt_", 401, "invalid_refresh_token", id="prefix-only"),
            pytest.param("rt_nothex_secret", 401, "invalid_refresh_token", id="bad-id"),
            pytest.param(
                f"rt_{uuid.uuid4().hex}_secret", 401, "invalid_refresh_token", id="unknown-id"
            ),
            pytest.param(
                f"pfk_{uuid.uuid4().hex}_secret", 401, "invalid_refresh_token", id="api-key"
            ),
            pytest.param("", 422, "validation_error", id="empty"),
            pytest.param("r" * 201, 422, "validation_error", id="too-long"),
        ],
    )
    async def test_garbage(self, api: Server, token: str, status: int, code: str) -> None:
        assert_problem(await refresh(api.client, token), status, code)
        response = await api.client.post("/v1/auth/logout", json={"refresh_token": token})
        assert_problem(response, status, code)

    async def test_wrong_secret_for_a_real_token(self, api: Server) -> None:
        user = await register(api.client)
        prefix, token_id, _ = user.refresh_token.split("_", 2)
        forged = f"{prefix}_{token_id}_{'A' * 43}"
        assert_problem(await refresh(api.client, forged), 401, "invalid_refresh_token")
        response = await api.client.post("/v1/auth/logout", json={"refresh_token": forged})
        assert_problem(response, 401, "invalid_refresh_token")
        # The forgery neither spent nor revoked the real token.
        assert (await refresh(api.client, user.refresh_token)).status_code == 200

    @pytest.mark.parametrize(
        "body",
        [
            pytest.param({}, id="missing"),
            pytest.param({"refresh_token": 5}, id="int"),
            pytest.param({"refresh_token": None}, id="null"),
            pytest.param({"refresh_token": "x", "extra": 1}, id="unknown-field"),
        ],
    )
    async def test_invalid_body(self, api: Server, body: dict[str, Any]) -> None:
        for path in ("/v1/auth/refresh", "/v1/auth/logout"):
            assert_problem(await post_json(api.client, path, body), 422, "validation_error")

    async def test_access_token_is_not_a_refresh_token(self, api: Server) -> None:
        user = await register(api.client)
        response = await refresh(api.client, user.access_token[:200])
        assert_problem(response, 401, "invalid_refresh_token")


async def merchant(server: Server) -> User:
    return await register(server.client, role="merchant")


async def create_key(server: Server, user: User, name: str = "shop") -> httpx.Response:
    return await server.client.post("/v1/api-keys", json={"name": name}, headers=user.auth)


class TestApiKeys:
    async def test_create_list_use(self, api: Server) -> None:
        shop = await merchant(api)
        response = await create_key(api, shop, "checkout")
        assert response.status_code == 201, response.text
        created = response.json()
        assert set(created) == {"id", "object", "name", "prefix", "created_at", "revoked_at", "key"}
        assert created["object"] == "api_key" and created["name"] == "checkout"
        assert created["id"].startswith("key_")
        assert created["key"].startswith("pfk_")
        assert created["key"].startswith(created["prefix"])
        assert created["revoked_at"] is None

        listed = await api.client.get("/v1/api-keys", headers=shop.auth)
        assert listed.status_code == 200, listed.text
        [item] = listed.json()
        assert "key" not in item
        assert created["key"] not in listed.text
        assert item == {k: v for k, v in created.items() if k != "key"}

        key_auth = bearer(created["key"])
        me = await api.client.get("/v1/me", headers=key_auth)
        assert me.status_code == 200, me.text
        assert me.json()["id"] == shop.id and me.json()["role"] == "merchant"
        wallets = await api.client.get("/v1/wallets", headers=key_auth)
        assert wallets.status_code == 200, wallets.text
        assert [w["id"] for w in wallets.json()] == [shop.wallet_id]

    async def test_revoke(self, api: Server) -> None:
        shop = await merchant(api)
        created = (await create_key(api, shop)).json()
        key_auth = bearer(created["key"])
        assert (await api.client.get("/v1/me", headers=key_auth)).status_code == 200
        response = await api.client.delete(f"/v1/api-keys/{created['id']}", headers=shop.auth)
        assert response.status_code == 200, response.text
        revoked = response.json()
        assert revoked["id"] == created["id"] and revoked["revoked_at"] is not None
        assert "key" not in revoked
        # Each process re-checks a key at most every 5 s.
        deadline = time.monotonic() + 6.5
        while True:
            response = await api.client.get("/v1/me", headers=key_auth)
            if response.status_code != 200 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.25)
        assert_problem(response, 401, "invalid_api_key")
        assert_problem(
            await api.client.get("/v1/wallets", headers=key_auth), 401, "invalid_api_key"
        )
        # Revoking again changes nothing.
        again = await api.client.delete(f"/v1/api-keys/{created['id']}", headers=shop.auth)
        assert again.status_code == 200 and again.json() == revoked
        [listed] = (await api.client.get("/v1/api-keys", headers=shop.auth)).json()
        assert listed["revoked_at"] == revoked["revoked_at"]

    async def test_only_merchants(self, api: Server) -> None:
        customer = await register(api.client)
        operator = await create_operator(api)
        for user in (customer, operator):
            assert_problem(await create_key(api, user), 403, "forbidden")
            assert_problem(
                await api.client.get("/v1/api-keys", headers=user.auth), 403, "forbidden"
            )
        async with api.engine.connect() as conn:
            count = await conn.scalar(
                select(func.count())
                .select_from(models.api_keys)
                .where(
                    models.api_keys.c.user_id.in_(
                        [uuid.UUID(hex=u.id.removeprefix("usr_")) for u in (customer, operator)]
                    )
                )
            )
        assert count == 0

    async def test_a_key_cannot_manage_keys(self, api: Server) -> None:
        shop = await merchant(api)
        created = (await create_key(api, shop)).json()
        key_auth = bearer(created["key"])
        response = await api.client.post("/v1/api-keys", json={"name": "more"}, headers=key_auth)
        assert_problem(response, 403, "forbidden")
        assert_problem(await api.client.get("/v1/api-keys", headers=key_auth), 403, "forbidden")
        response = await api.client.delete(f"/v1/api-keys/{created['id']}", headers=key_auth)
        assert_problem(response, 403, "forbidden")
        assert len((await api.client.get("/v1/api-keys", headers=shop.auth)).json()) == 1
        assert (await api.client.get("/v1/me", headers=key_auth)).status_code == 200

    async def test_someone_elses_key(self, api: Server) -> None:
        shop, rival = await merchant(api), await merchant(api)
        created = (await create_key(api, shop)).json()
        response = await api.client.delete(f"/v1/api-keys/{created['id']}", headers=rival.auth)
        assert_problem(response, 404, "api_key_not_found")
        assert (await api.client.get("/v1/me", headers=bearer(created["key"]))).status_code == 200
        assert (await api.client.get("/v1/api-keys", headers=rival.auth)).json() == []

    @pytest.mark.parametrize(
        "key_id",
        [
            "nope",
            "key_123",
            "key_" + "g" * 32,
            "txn_6f8725ed493c4fffa0396c32d6e6b591",
            "key_d1d4d5f654ec412fb6dc9e8b9b9e227f",
        ],
    )
    async def test_revoke_unknown_or_malformed(self, api: Server, key_id: str) -> None:
        shop = await merchant(api)
        response = await api.client.delete(f"/v1/api-keys/{key_id}", headers=shop.auth)
        assert_problem(response, 404, "api_key_not_found")

    @pytest.mark.parametrize(
        "token",
        [
            pytest.param("pfk_", id="prefix-only"),
            pytest.param("pfk_garbage", id="no-secret"),
            pytest.param("pfk_nothex_secret", id="bad-id"),
            pytest.param(f"pfk_{uuid.uuid4().hex}_secret", id="unknown-id"),
        ],
    )
    async def test_invalid_key(self, api: Server, token: str) -> None:
        assert_problem(
            await api.client.get("/v1/me", headers=bearer(token)), 401, "invalid_api_key"
        )

    async def test_wrong_secret(self, api: Server) -> None:
        shop = await merchant(api)
        created = (await create_key(api, shop)).json()
        prefix, key_id, _ = created["key"].split("_", 2)
        forged = f"{prefix}_{key_id}_{'A' * 43}"
        assert_problem(
            await api.client.get("/v1/me", headers=bearer(forged)), 401, "invalid_api_key"
        )

    @pytest.mark.parametrize(
        "body",
        [
            pytest.param({}, id="missing"),
            pytest.param({"name": ""}, id="empty"),
            pytest.param({"name": "n" * 101}, id="too-long"),
            pytest.param({"name": 5}, id="int"),
            pytest.param({"name": "k", "scopes": ["all"]}, id="unknown-field"),
        ],
    )
    async def test_invalid_body(self, api: Server, body: dict[str, Any]) -> None:
        shop = await merchant(api)
        response = await post_json(api.client, "/v1/api-keys", body, **shop.auth)
        assert_problem(response, 422, "validation_error")
        assert (await api.client.get("/v1/api-keys", headers=shop.auth)).json() == []

    @pytest.mark.parametrize(
        ("name", "code"),
        [("   ", "name_invalid"), ("k\u001b[31m", "name_invalid"), ("k\u0000", "validation_error")],
    )
    async def test_invalid_name(self, api: Server, name: str, code: str) -> None:
        shop = await merchant(api)
        response = await post_json(api.client, "/v1/api-keys", {"name": name}, **shop.auth)
        assert_problem(response, 422, code)
        assert (await api.client.get("/v1/api-keys", headers=shop.auth)).json() == []

    async def test_at_most_20_active(self, api: Server) -> None:
        """Even asked for all at once: the limit holds under concurrency."""
        shop = await merchant(api)
        responses = await asyncio.gather(*(create_key(api, shop, f"k{i}") for i in range(24)))
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [201] * 20 + [409] * 4, [
            r.text for r in responses if r.status_code != 201
        ]
        for response in responses:
            if response.status_code == 409:
                assert_problem(response, 409, "api_key_limit")
        listed = (await api.client.get("/v1/api-keys", headers=shop.auth)).json()
        assert len(listed) == 20
        assert_problem(await create_key(api, shop), 409, "api_key_limit")
        # Revoking one makes room for one.
        revoked = await api.client.delete(f"/v1/api-keys/{listed[0]['id']}", headers=shop.auth)
        assert revoked.status_code == 200
        assert (await create_key(api, shop)).status_code == 201
        assert_problem(await create_key(api, shop), 409, "api_key_limit")
