"""jobgate's configuration: `Settings`, read from `JOBGATE_*` variables.

`model` holds the `Settings` class, `groups` its `__`-nested groups, `loading` reads them once
per process (`get_settings`) and reports refused ones without quoting a value.
"""

from shared.settings.groups import CircuitPolicy, CircuitSettings, WebhookScheme, WebhookSettings
from shared.settings.loading import (
    describe_problems,
    exit_on_settings_problems,
    get_settings,
    settings_or_exit,
)
from shared.settings.model import (
    DATABASE_URL_EXAMPLE,
    REDIS_SCHEMES,
    REDIS_URL_EXAMPLE,
    Settings,
)

__all__ = [
    "DATABASE_URL_EXAMPLE",
    "REDIS_SCHEMES",
    "REDIS_URL_EXAMPLE",
    "CircuitPolicy",
    "CircuitSettings",
    "Settings",
    "WebhookScheme",
    "WebhookSettings",
    "describe_problems",
    "exit_on_settings_problems",
    "get_settings",
    "settings_or_exit",
]
