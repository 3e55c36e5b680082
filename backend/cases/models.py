"""Applications (办件), materials, history, certificates, evaluations (models arrive with the cases work)."""
