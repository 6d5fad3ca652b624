"""CLI entrypoints for identity: the first operator, signing key rotation."""

from __future__ import annotations

from rich.console import Console

from payflow.config import get_settings
from payflow.db import create_engine
from payflow.errors import PayFlowError
from payflow.identity import service
from payflow.identity.domain import Role
from payflow.identity.passwords import hash_password
from payflow.identity.tokens import create_signing_key
from payflow.migrate import upgrade_async


async def run_create_operator(
    console: Console, *, email: str, name: str, handle: str, password: str
) -> bool:
    """Create an operator; prints the reason and returns False if it cannot."""
    from payflow.identity.domain import PASSWORD_LENGTH_MAX, PASSWORD_LENGTH_MIN

    if not PASSWORD_LENGTH_MIN <= len(password) <= PASSWORD_LENGTH_MAX:
        console.print(
            f"[red]a password is {PASSWORD_LENGTH_MIN}-{PASSWORD_LENGTH_MAX} characters[/red]"
        )
        return False
    url = get_settings().database_url
    await upgrade_async(url)
    engine = create_engine(url)
    password_hash = await hash_password(password)
    try:
        async with engine.begin() as conn:
            user = await service.create_user(
                conn,
                email=email,
                password_hash=password_hash,
                name=name,
                handle=handle,
                role=Role.OPERATOR,
            )
    except PayFlowError as error:
        console.print(f"[red]{error.code}[/red]: {error.message}")
        return False
    finally:
        await engine.dispose()
    console.print(f"operator {user.email} created (usr_{user.id.hex})")
    return True


async def run_rotate_signing_key() -> str:
    url = get_settings().database_url
    await upgrade_async(url)
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            return await create_signing_key(conn)
    finally:
        await engine.dispose()
