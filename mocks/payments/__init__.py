"""Mock payment gateways (issue 12): an Alipay-style and a UnionPay-style gateway as real HTTP servers — a
cashier page, notifications sent like the real ones, a query API, refunds, a daily statement and fault
switches. Keys are generated at run time (mocks.payments.common.generate_keys: the mocks sign with their own
code, never the adapters')."""
