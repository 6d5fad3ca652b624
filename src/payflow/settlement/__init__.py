"""Settlement: merchants paid their payments, less refunds and fees, in batches (one per
merchant per cycle), through the payouts saga. docs/settlement.md tells the whole story.

- domain.py: lines, fees, statuses, derived ids (pure)
- models.py: tables; service.py: what events do; cycle.py + runner.py: the cycle
- handlers.py: the `settlement` consumer; events.py: what settlement emits
- api.py, schemas.py, views.py, queries.py: HTTP
"""
