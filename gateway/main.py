"""The ASGI entry point: `uvicorn gateway.main:app --http gateway.main:HttpProtocol`."""

from gateway.app import create_app
from gateway.http_head import HeadLimits, bounded_http_protocol
from shared.heap import freeze_startup_heap
from shared.settings import get_settings

app = create_app()
HttpProtocol = bounded_http_protocol(HeadLimits.of(get_settings()))
"""uvicorn's httptools protocol with the head bounded (`gateway.http_head`)."""
freeze_startup_heap()
