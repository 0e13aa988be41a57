"""How a client reaches the master: its token, and the TLS it verifies and presents.

The master's certificate is always verified, against `ca` or else the system's trust store;
there is deliberately no way to skip that. `cert` and `key` are this client's own certificate
for a master that requires one (mTLS). The token travels as `Authorization: Bearer`.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Transport:
    token: str | None = field(default=None, repr=False)  # never in a repr, hence a log
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None

    def __post_init__(self) -> None:
        if self.key is not None and self.cert is None:
            raise ValueError("--key needs --cert")

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=None if self.ca is None else str(self.ca))
        if self.cert is not None:
            context.load_cert_chain(str(self.cert), None if self.key is None else str(self.key))
        return context

    def headers(self) -> dict[str, str]:
        return {} if self.token is None else {"Authorization": f"Bearer {self.token}"}
