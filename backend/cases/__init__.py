"""Applications (办件), materials, state machine, time limits, evaluation, e-certificates."""
