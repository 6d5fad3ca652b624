"""Wallets: one ledger account per user per currency, addressed by handle or `handle@payflow`."""
