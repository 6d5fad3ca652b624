"""Identity: users, passwords, access and refresh tokens, merchant API keys, roles."""
