"""Kiosk devices: registration, signed requests, the kiosk HTTP surface (/api/v1/kiosk)."""
