"""Transfers: on-us P2P money movement between wallets, top-ups and holds."""
