"""PayFlow: wallets, payments and payouts on an immutable double-entry ledger."""

__version__ = "0.1.0"
