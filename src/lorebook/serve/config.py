"""ServeConfig: every server option in one dataclass; the field help becomes the `lorebook serve` flag help.

Safe defaults: loopback only, no CORS, bounded request sizes and times. `check()` refuses the unsafe
combination (listening beyond this machine without an API key) before anything loads.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lorebook.errors import InputError


@dataclass
class ServeConfig:
    """How `lorebook serve` listens and what it allows. Saved as serve-config.json in the data dir."""

    host: str = field(default="127.0.0.1", metadata={
        "help": "address to listen on; anything but loopback (e.g. 0.0.0.0) requires --api-key"})
    port: int = field(default=8765, metadata={"help": "TCP port"})
    api_key: str | None = field(default=None, metadata={
        "help": "require 'Authorization: Bearer KEY' (or ?key=KEY for the page and WebSocket) on every route"})
    cors_origins: str = field(default="", metadata={
        "help": "comma-separated origins allowed to call the API from other web pages (default: none)"})
    persona: str = field(default="assistant", metadata={"help": "persona used when a request names none"})
    engine: str = field(default="torch", metadata={"help": "generation engine: torch or llamacpp"})
    slots: int = field(default=8, metadata={
        "help": "conversations generated at once (token by token in turn); more wait in a fair queue"})
    queue_limit: int = field(default=64, metadata={"help": "requests waiting beyond this are refused with 429"})
    max_tokens: int = field(default=512, metadata={"help": "upper bound on max_tokens a request may ask for"})
    max_body_mb: float = field(default=25.0, metadata={"help": "largest request body (uploads included), MB"})
    request_timeout_s: float = field(default=300.0, metadata={
        "help": "a request still generating after this many seconds is stopped"})
    preload: bool = field(default=True, metadata={
        "help": "load the default persona's model before accepting requests (first reply is not slow)"})
    voice: bool = field(default=True, metadata={"help": "load speech models for the voice routes"})

    def check(self) -> None:
        """Refuse unsafe or impossible settings with a one-line error."""
        if not self.is_loopback() and not self.api_key:
            raise InputError(f"refusing to listen on {self.host} without an API key",
                             "add --api-key SECRET, or keep the default --host 127.0.0.1")
        if not 0 < self.port < 65536:
            raise InputError(f"port {self.port} is out of range", "use a port between 1 and 65535")
        if self.slots < 1 or self.queue_limit < 1 or self.max_tokens < 1 or self.max_body_mb <= 0:
            raise InputError("--slots, --queue-limit, --max-tokens and --max-body-mb must be positive",
                             "e.g. --slots 8 --queue-limit 64")
        if self.api_key is not None and len(self.api_key) < 8:
            raise InputError("the API key is shorter than 8 characters", "use a longer, random key")

    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def origins(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]

    def url(self) -> str:
        host = self.host if self.host not in ("0.0.0.0", "::") else "127.0.0.1"
        return f"http://{host}:{self.port}/"

    def save(self, folder: Path) -> Path:
        """Write the settings (never the key itself) beside the server's data."""
        data = asdict(self)
        data["api_key"] = "set" if self.api_key else None
        target = folder / "serve-config.json"
        target.write_text(json.dumps(data, indent=2), encoding="utf-8")
        return target
