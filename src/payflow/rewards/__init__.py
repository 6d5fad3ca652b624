"""Rewards: cashback on payments to merchants, paid from a funded pool, clawed back on refunds.

`handlers.CONSUMER` pays cashback (exactly once per payment) and takes it back when a
payment is refunded; `service.claw_back` and `domain.clawback_due` are the hook for the
payments context; `api.operator_router` manages rules and the pool, `api.router` shows
users their cashback (docs/rewards.md).
"""
