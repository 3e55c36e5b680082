"""Payment orders, WeChat Pay v3 and Alipay channels, callbacks, refunds, reconciliation."""
