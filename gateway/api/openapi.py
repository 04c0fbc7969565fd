"""The OpenAPI 3 description of the gateway's HTTP API (served at /api/openapi.json).

Hand-written: the API is small and this is its reference. A test checks every route of
the app appears here with its method.
"""

from __future__ import annotations

from typing import Any

from gateway.api import complaints, qr

_ERROR = {"$ref": "#/components/responses/Error"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


# For the route modules that document their own paths (gateway/api/org.py, district.py).
response = _json
ERROR_RESPONSE = _ERROR


def _errors(*codes: int) -> dict[str, Any]:
    return {str(c): _ERROR for c in codes}


INVITATION_ID = {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,32}$"}


def openapi_spec() -> dict[str, Any]:
    from gateway.api import district as district_api  # lazy: each route module documents its own paths
    from gateway.api import org as org_api
    inv_ref = {"$ref": "#/components/schemas/Invitation"}
    binding_ref = {"$ref": "#/components/schemas/Binding"}
    window_auth: list[dict[str, list[str]]] = [{"windowToken": []}, {"adminToken": []}]
    admin_auth: list[dict[str, list[str]]] = [{"adminToken": []}]
    inv_param = {"name": "inv_id", "in": "path", "required": True, "schema": INVITATION_ID}
    spec: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": {
            "title": "haochaping hall gateway API",
            "version": "1",
            "description": "Invitations (一次一评) for the window system; devices and bindings "
                           "(一码一账号) for hall admins. Errors: JSON {error, message}.",
        },
        "servers": [{"url": "http://127.0.0.1:8080"}],
        "paths": {
            "/api/v1/invitations": {
                "post": {
                    "summary": "Invite the citizen at a window to rate a case",
                    "description": "Sends `invite` to the device bound at the window (or to the staff "
                                   "account's device). A pending invitation at that device is closed as "
                                   "`superseded` (the device gets `cancel` for it). A case that already "
                                   "has its rating is refused (409 case_already_rated). A client-chosen "
                                   "invitation_id makes a retried POST idempotent (200 + the existing one).",
                    "security": window_auth,
                    "requestBody": {"required": True, "content": {"application/json": {"schema": {
                        "$ref": "#/components/schemas/InvitationRequest"}}}},
                    "responses": {
                        "201": _json({"$ref": "#/components/schemas/InvitationCreated"}, "created and sent"),
                        "200": _json({"$ref": "#/components/schemas/InvitationCreated"},
                                     "idempotent retry: the existing invitation"),
                        **_errors(400, 401, 404, 409),
                    },
                },
                "get": {
                    "summary": "List invitations",
                    "security": window_auth,
                    "parameters": [{"name": "status", "in": "query", "required": False, "schema": {
                        "type": "string", "enum": ["pending", "rated", "unrated", "cancelled", "expired",
                                                   "superseded"]}},
                                   {"name": "limit", "in": "query", "required": False,
                                    "schema": {"type": "integer", "minimum": 1, "maximum": 10000,
                                               "default": 1000}, "description": "the newest N"}],
                    "responses": {"200": _json({"type": "object", "properties": {
                        "invitations": {"type": "array", "items": inv_ref}}}, "invitations"),
                        **_errors(400, 401)},
                },
            },
            "/api/v1/invitations/{inv_id}": {
                "get": {
                    "summary": "Status of one invitation (with the grade when rated)",
                    "security": window_auth, "parameters": [inv_param],
                    "responses": {"200": _json(inv_ref, "the invitation"), **_errors(400, 401, 404)},
                },
                "delete": {
                    "summary": "Cancel a pending invitation (the device gets `cancel`)",
                    "security": window_auth, "parameters": [inv_param],
                    "responses": {"200": _json(inv_ref, "cancelled"), **_errors(400, 401, 404, 409)},
                },
            },
            "/api/v1/devices": {
                "post": {
                    "summary": "Register (or re-key) a device: key + broker password entry",
                    "security": admin_auth,
                    "requestBody": {"required": True, "content": {"application/json": {"schema": {
                        "type": "object", "required": ["id", "secret", "broker_password"],
                        "additionalProperties": False,
                        "properties": {
                            "id": {"type": "string", "pattern": "^[a-z0-9-]{1,32}$"},
                            "secret": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                            "broker_password": {"type": "string", "minLength": 1},
                            "fw": {"type": "string", "maxLength": 16}}}}}},
                    "responses": {
                        "201": _json({"type": "object", "properties": {"id": {"type": "string"},
                                                                       "created": {"type": "boolean"}}},
                                     "registered"),
                        "200": _json({"type": "object"}, "re-registered (key replaced)"),
                        **_errors(400, 401)},
                },
            },
            "/api/v1/bindings": {
                "post": {
                    "summary": "Bind a device to a window and a clerk (the device gets `paired`)",
                    "description": "409 already_bound when the device, window or clerk has an active "
                                   "binding, unless force=true: those bindings are closed now (audited) "
                                   "and their devices get `unpaired`.",
                    "security": admin_auth,
                    "requestBody": {"required": True, "content": {"application/json": {"schema": {
                        "type": "object", "required": ["device", "window", "staff_account"],
                        "additionalProperties": False,
                        "properties": {"device": {"type": "string"}, "window": {"type": "string"},
                                       "staff_account": {"type": "string"},
                                       "force": {"type": "boolean", "default": False},
                                       "actor": {"type": "string", "description": "who, for the audit"}}}}}},
                    "responses": {"201": _json({"$ref": "#/components/schemas/BindingChange"}, "bound"),
                                  "200": _json({"$ref": "#/components/schemas/BindingChange"},
                                               "already bound exactly so"),
                                  **_errors(400, 401, 404, 409)},
                },
                "get": {
                    "summary": "Active bindings (history=1: all, with their periods)",
                    "security": admin_auth,
                    "parameters": [{"name": "history", "in": "query", "required": False,
                                    "schema": {"type": "string", "enum": ["0", "1"]}}],
                    "responses": {"200": _json({"type": "object", "properties": {
                        "bindings": {"type": "array", "items": binding_ref}}}, "bindings"), **_errors(401)},
                },
            },
            "/api/v1/bindings/{device}": {
                "delete": {
                    "summary": "Unbind a device (the device gets `unpaired`)",
                    "security": admin_auth,
                    "parameters": [{"name": "device", "in": "path", "required": True,
                                    "schema": {"type": "string"}},
                                   {"name": "actor", "in": "query", "required": False,
                                    "schema": {"type": "string"}}],
                    "responses": {"200": _json({"$ref": "#/components/schemas/BindingChange"}, "unbound"),
                                  **_errors(401, 404)},
                },
            },
            "/api/openapi.json": {
                "get": {"summary": "This document", "security": [],
                        "responses": {"200": _json({"type": "object"}, "OpenAPI 3 document")}},
            },
            **org_api.OPENAPI_PATHS,
            **district_api.OPENAPI_PATHS,
        },
        "components": {
            "securitySchemes": {
                "windowToken": {"type": "http", "scheme": "bearer", "description": "[http] window_token"},
                "adminToken": {"type": "http", "scheme": "bearer", "description": "[http] admin_token"},
            },
            "responses": {"Error": _json({"$ref": "#/components/schemas/Error"}, "refused")},
            "schemas": {
                "Error": {"type": "object", "required": ["error", "message"], "properties": {
                    "error": {"type": "string", "description": "stable code, e.g. unknown_window, "
                              "no_device_bound, case_already_rated, not_pending, unauthorized, bad_json"},
                    "message": {"type": "string"}}},
                "InvitationRequest": {
                    "type": "object", "required": ["case_no"], "additionalProperties": False,
                    "description": "Exactly one of window and staff_account.",
                    "properties": {
                        "window": {"type": "string", "maxLength": 16},
                        "staff_account": {"type": "string", "maxLength": 64},
                        "case_no": {"type": "string", "minLength": 1, "maxLength": 64,
                                    "description": "办件 number (projectNo)"},
                        "task_code": {"type": "string", "maxLength": 64},
                        "task_name": {"type": "string", "maxLength": 200},
                        "dept_code": {"type": "string", "maxLength": 32},
                        "applicant_type": {"type": "integer", "enum": [1, 2]},
                        "countdown_s": {"type": "integer", "minimum": 5, "maximum": 600},
                        "invitation_id": INVITATION_ID,
                        "follow_up": {"type": "boolean", "default": False,
                                      "description": "a follow-up rating (追加评价, assessNumber 2) of "
                                                     "a case with its first rating, within 5 working "
                                                     "days"}}},
                "InvitationCreated": {"type": "object", "properties": {
                    "invitation_id": INVITATION_ID, "device_id": {"type": "string"},
                    "status": {"type": "string"}, "window": {"type": "string"},
                    "staff_account": {"type": "string"}, "expires_ms": {"type": "integer"},
                    "assess_number": {"type": "integer", "enum": [1, 2]},
                    "superseded": {"type": "array", "items": INVITATION_ID},
                    "sent": {"type": "boolean"}, "note": {"type": "string"}}},
                "Invitation": {"type": "object", "properties": {
                    "invitation_id": INVITATION_ID, "device_id": {"type": "string"},
                    "window_id": {"type": "string"}, "staff_account": {"type": "string"},
                    "case_no": {"type": "string"}, "task_code": {"type": "string"},
                    "task_name": {"type": "string"}, "dept_code": {"type": "string"},
                    "applicant_type": {"type": "integer", "nullable": True},
                    "countdown_s": {"type": "integer"},
                    "assess_number": {"type": "integer", "enum": [1, 2],
                                      "description": "1 the case's first rating, 2 a follow-up"},
                    "status": {"type": "string", "enum": ["pending", "rated", "unrated", "cancelled",
                                                          "expired", "superseded"]},
                    "created_ms": {"type": "integer"}, "expires_ms": {"type": "integer"},
                    "closed_ms": {"type": "integer", "nullable": True},
                    "close_reason": {"type": "string", "nullable": True},
                    "record_id": {"type": "string", "nullable": True,
                                  "description": "<device>:<boot>:<seq> of the record that closed it"},
                    "grade": {"type": "string", "enum": ["vs", "s", "bs", "d", "vd"],
                              "description": "only when status is rated"}}},
                "Binding": {"type": "object", "properties": {
                    "id": {"type": "integer"}, "device_id": {"type": "string"},
                    "window_id": {"type": "string"}, "staff_account": {"type": "string"},
                    "display_name": {"type": "string"}, "valid_from_ms": {"type": "integer"},
                    "valid_to_ms": {"type": "integer", "nullable": True},
                    "created_by": {"type": "string"}, "ended_by": {"type": "string", "nullable": True}}},
                "BindingChange": {"type": "object", "properties": {
                    "binding": binding_ref, "closed": {"type": "array", "items": binding_ref},
                    "unchanged": {"type": "boolean"},
                    "cancelled_invitations": {"type": "array", "items": INVITATION_ID},
                    "notified": {"type": "array", "items": {"type": "string"}},
                    "unreachable": {"type": "array", "items": {"type": "string"}}}},
            },
        },
    }
    complaints.openapi(spec)
    qr.openapi(spec)
    return spec
