"""The ASGI entry point: `uvicorn gateway.main:app`."""

from gateway.app import create_app
from shared.heap import freeze_startup_heap

app = create_app()
freeze_startup_heap()
