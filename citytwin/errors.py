"""NGSI-LD ProblemDetails errors (GS CIM 009 6.3.2 and the error table of 5.5.2)."""

from __future__ import annotations

from typing import Any

ERROR_BASE = "https://uri.etsi.org/ngsi-ld/errors/"


class NgsiError(Exception):
    """An error the API answers with a ProblemDetails body."""

    name = "InternalError"
    status = 500
    title = "Internal error"

    def __init__(self, detail: str = "", **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra

    @property
    def type(self) -> str:
        return ERROR_BASE + self.name

    def problem(self) -> dict[str, Any]:
        body: dict[str, Any] = {"type": self.type, "title": self.title, "status": self.status}
        if self.detail:
            body["detail"] = self.detail
        body.update(self.extra)
        return body


class InvalidRequest(NgsiError):
    name, status, title = "InvalidRequest", 400, "Invalid request"


class BadRequestData(NgsiError):
    name, status, title = "BadRequestData", 400, "Bad request data"


class AlreadyExists(NgsiError):
    name, status, title = "AlreadyExists", 409, "Already exists"


class OperationNotSupported(NgsiError):
    name, status, title = "OperationNotSupported", 422, "Operation not supported"


class ResourceNotFound(NgsiError):
    name, status, title = "ResourceNotFound", 404, "Resource not found"


class InternalError(NgsiError):
    pass


class StoreUnavailable(NgsiError):
    """The database cannot be reached for now (it restarts, the network is down): 503, and
    the client may try again. NGSI-LD names no type for this; InternalError is the nearest."""

    status, title = 503, "The store is unavailable for now"


class TooComplexQuery(NgsiError):
    name, status, title = "TooComplexQuery", 403, "Too complex query"


class TooManyResults(NgsiError):
    name, status, title = "TooManyResults", 403, "Too many results"


class LdContextNotAvailable(NgsiError):
    # The ETSI conformance suite asserts 503; V1.9.1's table says 504.
    name, status, title = "LdContextNotAvailable", 503, "@context not available"


class NoMultiTenantSupport(NgsiError):
    name, status, title = "NoMultiTenantSupport", 501, "No multi-tenant support"


class NonexistentTenant(NgsiError):
    name, status, title = "NonexistentTenant", 404, "Nonexistent tenant"


class NotAcceptable(NgsiError):
    """HTTP 406: no representation the client accepts (6.3.4)."""

    name, status, title = "NotAcceptable", 406, "Not acceptable"


class UnsupportedMediaType(NgsiError):
    """HTTP 415: a body in a media type the operation does not take (6.3.4)."""

    name, status, title = "UnsupportedMediaType", 415, "Unsupported media type"


class LengthRequired(NgsiError):
    """HTTP 411: a body without Content-Length (6.3.4)."""

    name, status, title = "LengthRequired", 411, "Length required"


class PayloadTooLarge(NgsiError):
    """HTTP 413: a body over the configured maximum."""

    name, status, title = "PayloadTooLarge", 413, "Payload too large"


class MethodNotAllowed(NgsiError):
    """HTTP 405: the resource exists but not with this method."""

    name, status, title = "MethodNotAllowed", 405, "Method not allowed"


class ServiceUnavailable(NgsiError):
    """HTTP 503: the service cannot take the request now (the device gateway's queue is full)."""

    name, status, title = "ServiceUnavailable", 503, "Service unavailable"
