"""Fee payment (issue 12): fees assessed per case, payment orders through the gateways, their notifications
stored once and applied, refunds, and the daily reconciliation. docs/payments.md."""
