"""Slots, appointments, check-in and queue tickets (取号/叫号)."""
