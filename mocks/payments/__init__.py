"""Mock payment gateways (issue 12): an Alipay-style and a UnionPay-style gateway as real HTTP servers — a
cashier page, notifications sent like the real ones, a query API, refunds, a daily statement and fault
switches. Keys are generated at run time (adapters.payments.signing.generate_key_pair)."""
