"""Tenants: their API keys, their accounts and limits, and their rate limits."""
