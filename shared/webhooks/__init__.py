"""Outbound webhooks: deliveries and their queue, destination checks, payload signing."""
