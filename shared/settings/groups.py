"""Groups of settings, each set by `JOBGATE_<GROUP>__<FIELD>` variables."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, IPvAnyNetwork, field_validator, model_validator
from pydantic_settings import NoDecode

WebhookScheme = Literal["https", "http"]


def _both_schemes() -> list[WebhookScheme]:
    return ["https", "http"]


class WebhookSettings(BaseModel):
    """Outbound webhooks; `JOBGATE_WEBHOOKS__<FIELD>` sets each field.

    Destinations: by default webhooks reach public unicast addresses only, so a tenant cannot
    make workers call 127.0.0.1, 10/8, 169.254.169.254 (cloud metadata), ::1, fc00::/7 ...
    `allowed_networks` and `allowed_hosts` let internal receivers through, `allowed_schemes`
    can drop plain `http` (see `shared.webhooks.destinations`). Lists are comma-separated in
    the environment: `JOBGATE_WEBHOOKS__ALLOWED_NETWORKS=10.1.2.0/24,fd00::1`.
    """

    timeout_seconds: float = Field(
        10.0, gt=0, description="Bound on one delivery attempt (connect, send, response headers)."
    )
    max_attempts: int = Field(
        8, ge=1, le=50, description="Attempts before a delivery is given up as `failed`."
    )
    backoff_base_seconds: float = Field(
        5.0, gt=0, description="Wait after the first failed attempt; doubles after each next one."
    )
    backoff_max_seconds: float = Field(3600.0, gt=0, description="Longest wait between attempts.")
    poll_interval_seconds: float = Field(
        1.0, gt=0, description="How often each worker looks for due deliveries."
    )
    # Concurrency (see `worker.webhook_sender`): each delivery is sent as soon as a slot is free;
    # the per-tenant and per-host caps keep slow receivers from taking every slot.
    max_in_flight: int = Field(
        50, ge=2, le=1000, description="Deliveries one worker sends at once, all tenants together."
    )
    max_in_flight_per_tenant: int = Field(
        10, ge=1, description="Deliveries of one tenant one worker sends at once."
    )
    max_in_flight_per_host: int = Field(
        10, ge=1, description="Deliveries to one receiver (host and port) one worker sends at once."
    )
    # Destinations (see `shared.webhooks.destinations`): public unicast addresses only, by default.
    allowed_schemes: Annotated[list[WebhookScheme], NoDecode] = Field(
        default_factory=_both_schemes,
        min_length=1,
        description="URL schemes a `webhook_url` may have, e.g. `https` alone.",
    )
    allowed_networks: Annotated[list[IPvAnyNetwork], NoDecode] = Field(
        default_factory=list,
        description="Addresses or CIDR networks webhooks may reach although they are not public "
        "(loopback, private, link-local, ...), e.g. `10.1.2.0/24,fd00::1`. Default: none.",
    )
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Host names webhooks may reach whatever addresses they resolve to, e.g. an "
        "internal receiver `hooks.internal`. Default: none.",
    )

    @model_validator(mode="after")
    def _caps_leave_room_for_others(self) -> WebhookSettings:
        # A cap as large as the whole would let one tenant's dead receivers hold every slot.
        for name in ("max_in_flight_per_tenant", "max_in_flight_per_host"):
            if getattr(self, name) >= self.max_in_flight:
                raise ValueError(f"{name} must be below max_in_flight ({self.max_in_flight})")
        return self

    @field_validator("allowed_schemes", "allowed_networks", "allowed_hosts", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        # Comma-separated in the environment, like the other lists.
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value


class CircuitPolicy(BaseModel):
    """When a circuit breaker opens and when it lets a call try again (see `worker.circuit`)."""

    failure_threshold: int = Field(5, ge=1, description="Failures within the window that open it.")
    window_seconds: float = Field(60.0, gt=0, description="How far back failures are counted.")
    recovery_seconds: float = Field(
        30.0, gt=0, description="How long it stays open before a trial call may pass (half-open)."
    )
    half_open_trials: int = Field(1, ge=1, description="Trial calls let through when half-open.")


class CircuitSettings(CircuitPolicy):
    """Circuit breakers: `JOBGATE_CIRCUITS__<FIELD>` sets what code leaves untuned."""

    overrides: dict[str, CircuitPolicy] = Field(
        default_factory=dict,
        description='What wins over code, per breaker, as JSON: `{"smtp": {"window_seconds": 9}}`',
    )
