"""The ASGI entry point: `uvicorn gateway.main:app`."""

from gateway.app import create_app
from shared.heap import freeze_startup_heap
from shared.settings import settings_or_exit

app = create_app(settings_or_exit())
freeze_startup_heap()
