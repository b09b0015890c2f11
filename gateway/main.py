"""The ASGI entry point: `uvicorn gateway.main:app --http gateway.main:HttpProtocol`."""

from gateway.app import create_app
from gateway.http_head import HeadLimits, bounded_http_protocol
from shared.heap import freeze_startup_heap
from shared.settings import settings_or_exit

settings = settings_or_exit()
app = create_app(settings)
HttpProtocol = bounded_http_protocol(HeadLimits.of(settings))
"""uvicorn's httptools protocol with the head bounded (`gateway.http_head`)."""
freeze_startup_heap()
