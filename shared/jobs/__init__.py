"""Job persistence: every statement that stores, moves or reads jobs, and their hand-off to ARQ."""
