#!/usr/bin/env python3
"""Every SIM Integrations operation through the official SailPoint Python
SDK 1.x (`sailpoint==1.4.2`, `sailpoint.beta.SIMIntegrationsApi`, /beta paths).

Environment:
  SIMGATE_URL    base URL of the server (gateway or reference upstream), e.g.
                 http://127.0.0.1:8080 ; the SDK appends /beta itself
  SIMGATE_TOKEN  bearer token sent as `Authorization: Bearer …`

Prints one line per operation and exits non-zero on the first failure.

Quirks of SDK 1.4.2 (it is generated from the vendor's beta spec) that this
script works around, each noted where it happens:
  * the beta `ServiceDeskIntegrationDto` model has no `id`, `created` or
    `modified`, so the id comes from the raw response (`*_with_http_info`);
  * `get_sim_integrations()` is declared to return ONE ServiceDeskIntegrationDto
    (the beta spec says so) although the endpoint lists, so the list is read
    raw and each element is deserialised with the SDK's model;
  * its `JsonPatchOperation` warns that `op` must be 'remove' or 'replace'
    (an enum narrower than RFC 6902); the warning is silenced, the operations
    are sent as given.
"""

import json
import os
import re
import sys
import warnings

from sailpoint.configuration import Configuration, ConfigurationParams
from sailpoint.beta.api_client import ApiClient
from sailpoint.beta.api.sim_integrations_api import SIMIntegrationsApi
from sailpoint.beta.exceptions import ApiException
from sailpoint.beta.models.error_response_dto import ErrorResponseDto
from sailpoint.beta.models.json_patch import JsonPatch
from sailpoint.beta.models.json_patch_operation import JsonPatchOperation
from sailpoint.beta.models.service_desk_integration_dto import ServiceDeskIntegrationDto
from sailpoint.beta.models.sim_integration_details import SimIntegrationDetails

warnings.filterwarnings("ignore", message="must be one of enum values")

TAG = "sdk1"
HEX32 = re.compile(r"^[0-9a-f]{32}$")


class Failed(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failed(what)


def api_from_env():
    url = os.environ["SIMGATE_URL"].rstrip("/")
    token = os.environ["SIMGATE_TOKEN"]
    params = ConfigurationParams()
    # SDK 1.x: base_url is the tenant root; the beta client adds "/beta".
    params.base_url = url
    # With an access token given, Configuration() does not call the
    # client-credentials endpoint ({base_url}/oauth/token); the token is sent
    # as "Authorization: Bearer <token>".
    params.access_token = token
    config = Configuration(params)
    config.experimental = True
    config.suppress_experimental_warnings = True
    return SIMIntegrationsApi(ApiClient(config))


def patch(*ops):
    return JsonPatch(operations=[JsonPatchOperation.from_dict(op) for op in ops])


def raw(resp):
    return json.loads(resp.raw_data)


def main():
    api = api_from_env()
    state = {}

    def create():
        details = SimIntegrationDetails(
            name="sdk1 integration",
            description="made by SDK 1.x",
            type="ServiceNow Service Desk",
            attributes={"uid": "Walter White", "lastSyncDate": 1470348809380},
            sources=["2c9180835d191a86015d28455b4a2329"],
            cluster="xyzzy999",
            status_map={"closed_complete": "Committed"},
            before_provisioning_rule={"type": "RULE", "id": "2c918085708c274401708c2a8a760001", "name": "Rule A"},
        )
        resp = api.create_sim_integration_with_http_info(details)
        check(resp.status_code == 200, f"status {resp.status_code}")
        dto = resp.data
        check(isinstance(dto, ServiceDeskIntegrationDto), f"got {type(dto)}")
        check(dto.name == "sdk1 integration", f"name {dto.name!r}")
        check(dto.description == "made by SDK 1.x", f"description {dto.description!r}")
        check(dto.attributes["uid"] == "Walter White", f"attributes {dto.attributes!r}")
        check(dto.before_provisioning_rule.name == "Rule A", "beforeProvisioningRule")
        # Quirk: the beta model has no id/created/modified; read them raw.
        body = raw(resp)
        check(HEX32.match(body.get("id", "")), f"id {body.get('id')!r}")
        check(body.get("created") and body["created"] == body.get("modified"), "created/modified")
        state.update(id=body["id"], created=body["created"], modified=body["modified"])
        return f"id={body['id']}"

    def list_all():
        # Quirk: get_sim_integrations() expects a single object; read raw.
        resp = api.get_sim_integrations_without_preload_content()
        check(resp.status == 200, f"status {resp.status}")
        items = json.loads(resp.data)
        check(isinstance(items, list), f"not a list: {type(items)}")
        dtos = [ServiceDeskIntegrationDto.from_dict(item) for item in items]
        check(any(i["id"] == state["id"] for i in items), "created integration not listed")
        check(all(d.name for d in dtos), "an item without a name")
        return f"{len(items)} item(s)"

    def get():
        resp = api.get_sim_integration_with_http_info(state["id"])
        dto = resp.data
        check(dto.name == "sdk1 integration", f"name {dto.name!r}")
        check(dto.type == "ServiceNow Service Desk", f"type {dto.type!r}")
        check(raw(resp)["id"] == state["id"], "id")
        typed = api.get_sim_integration(state["id"])
        check(typed == dto, "typed and with_http_info differ")
        return "ok"

    def put():
        details = SimIntegrationDetails(
            name="sdk1 integration (replaced)",
            description="replaced by SDK 1.x",
            type="ServiceNow Service Desk",
            attributes={"uid": "Jesse Pinkman"},
        )
        resp = api.put_sim_integration_with_http_info(state["id"], details)
        dto = resp.data
        check(dto.name == "sdk1 integration (replaced)", f"name {dto.name!r}")
        check(dto.attributes == {"uid": "Jesse Pinkman"}, f"attributes {dto.attributes!r}")
        check(dto.before_provisioning_rule is None, "full replace kept beforeProvisioningRule")
        body = raw(resp)
        check(body["id"] == state["id"], "id changed")
        check(body["created"] == state["created"], "created changed")
        check(body["modified"] > state["modified"], "modified did not move")
        state["modified"] = body["modified"]
        return "ok"

    def patch_attributes():
        dto = api.patch_sim_attributes(
            state["id"],
            patch(
                {"op": "replace", "path": "/description", "value": "patched by SDK 1.x"},
                {"op": "add", "path": "/attributes/email", "value": "jesse@example.com"},
            ),
        )
        check(dto.description == "patched by SDK 1.x", f"description {dto.description!r}")
        check(dto.attributes.get("email") == "jesse@example.com", f"attributes {dto.attributes!r}")
        check(dto.attributes.get("uid") == "Jesse Pinkman", "other attributes lost")
        return "ok"

    def patch_attributes_atomic():
        try:
            api.patch_sim_attributes(
                state["id"],
                patch(
                    {"op": "replace", "path": "/description", "value": "must not stick"},
                    {"op": "test", "path": "/name", "value": "some other name"},
                ),
            )
        except ApiException as e:
            check(e.status == 400, f"status {e.status}")
            check(isinstance(e.data, ErrorResponseDto), f"error body {e.body!r}")
            after = api.get_sim_integration(state["id"])
            check(after.description == "patched by SDK 1.x", "failed patch was partly applied")
            return "400 ErrorResponseDto, unchanged"
        raise Failed("a failing test op was accepted")

    def patch_rule():
        dto = api.patch_before_provisioning_rule(
            state["id"],
            patch(
                {"op": "add", "path": "/type", "value": "RULE"},
                {"op": "add", "path": "/id", "value": "048eb3d55c5a4758bd07dccb87741c78"},
                {"op": "add", "path": "/name", "value": "Rule B"},
            ),
        )
        rule = dto.before_provisioning_rule
        check(rule is not None and rule.name == "Rule B", f"rule {rule!r}")
        check(rule.id == "048eb3d55c5a4758bd07dccb87741c78", f"rule id {rule.id!r}")
        check(dto.description == "patched by SDK 1.x", "rule patch touched other fields")
        return "ok"

    def delete():
        resp = api.delete_sim_integration_with_http_info(state["id"])
        check(resp.status_code in (200, 204), f"status {resp.status_code}")
        return f"status {resp.status_code}"

    def get_after_delete():
        try:
            api.get_sim_integration(state["id"])
        except ApiException as e:
            check(e.status == 404, f"status {e.status}")
            check(isinstance(e.data, ErrorResponseDto), f"error body {e.body!r}")
            check(e.data.tracking_id, "no trackingId")
            check(e.data.messages and e.data.messages[0].text, "no message")
            return "404 ErrorResponseDto"
        raise Failed("still there after delete")

    steps = [
        ("createSIMIntegration", create),
        ("getSIMIntegrations", list_all),
        ("getSIMIntegration", get),
        ("putSIMIntegration", put),
        ("patchSIMAttributes", patch_attributes),
        ("patchSIMAttributes (failing test op)", patch_attributes_atomic),
        ("patchBeforeProvisioningRule", patch_rule),
        ("deleteSIMIntegration", delete),
        ("getSIMIntegration after delete", get_after_delete),
    ]
    for name, step in steps:
        try:
            detail = step()
        except Exception as e:  # noqa: BLE001 - report anything, then stop
            print(f"{TAG} {name}: FAILED: {type(e).__name__}: {e}", flush=True)
            return 1
        print(f"{TAG} {name}: ok ({detail})", flush=True)
    print(f"{TAG}: all {len(steps)} operations passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
