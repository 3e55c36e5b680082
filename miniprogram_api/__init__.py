"""HTTP surface for the WeChat and Alipay mini programs (/api/v1/mp)."""
