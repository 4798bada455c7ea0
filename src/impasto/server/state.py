"""What one app's routes share (:class:`ServerState`, at ``app.state.server``)."""

from __future__ import annotations

from dataclasses import dataclass

from impasto.server.config import ServerConfig
from impasto.server.intake import IntakeSlots
from impasto.server.jobs import JobManager
from impasto.server.middleware import ApiError
from impasto.server.pool import MethodCatalog, StylizerPool


@dataclass
class ServerState:
    """The settings, models, method catalog, decoding slots and (while the app runs) the job manager."""

    config: ServerConfig
    pool: StylizerPool
    catalog: MethodCatalog
    intake: IntakeSlots
    manager: JobManager | None = None

    def jobs(self) -> JobManager:
        """The job manager; 503 while the app is starting or shutting down."""
        if self.manager is None:
            raise ApiError(503, "the server is not running (starting or shutting down)")
        return self.manager
