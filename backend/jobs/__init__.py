"""Transactional outbox, worker and periodic tasks."""
