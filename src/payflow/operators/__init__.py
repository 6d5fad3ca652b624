"""Operators: system accounts, audited manual adjustments, the ledger audit, the action log."""
