"""The HTTP API and the monitoring page of the dispatcher (`dossierflow api`)."""

from dispatcher.api.app import create_app

__all__ = ["create_app"]
