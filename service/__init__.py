"""The satdask HTTP service: single-tile predictions with Litestar.

`create_app(settings)` builds the application; `satdask serve` runs it under uvicorn.
This package imports `satdask`; `satdask` never imports this package or Litestar.
"""

from service.app import create_app
from service.settings import Settings

__all__ = ["Settings", "create_app"]
