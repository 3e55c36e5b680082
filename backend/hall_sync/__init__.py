"""The main hall (实体大厅) gateway: push cases, receive status, reconcile."""
