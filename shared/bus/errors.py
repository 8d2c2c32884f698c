"""How a handler failure is classified, once for the whole bus.

- PermanentError (and InvalidEvent): the input can never succeed. The message goes straight to
  its dead-letter queue with the reason in the `x-kiln-error` header. Never retried.
- TransientError, and any other exception: retried MAX_RETRIES times with exponential back-off,
  then dead-lettered with the last reason. A bug therefore costs a few retries, not a lost event.
"""

from __future__ import annotations


class PermanentError(Exception):
    """Bad input or a state retrying cannot fix; the message belongs in the dead-letter queue."""


class TransientError(Exception):
    """A dependency is unavailable (broker, database, registry, daemon): worth retrying later."""


ERROR_HEADER = "x-kiln-error"
ERROR_KIND_HEADER = "x-kiln-error-kind"
RETRIES_HEADER = "x-kiln-retries"
