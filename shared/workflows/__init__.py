"""Workflows: their declaration, its checks and shapes, their plan and their runs."""
