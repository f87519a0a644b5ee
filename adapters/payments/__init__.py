"""Payment gateway adapters (issue 12): one interface (``base.PaymentGateway``), an Alipay-style and a
UnionPay-style implementation. Like every adapter, nothing here imports ``hub``."""
