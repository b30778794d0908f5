#!/usr/bin/env python3
"""Every SIM Integrations operation through the official SailPoint Python
SDK 2.x (`sailpoint==2.1.72`, `sailpoint.sim_integrations.SIMIntegrationsApi`,
/sim-integrations/v1 paths).

Environment:
  SIMGATE_URL    base URL of the server (gateway or reference upstream), e.g.
                 http://127.0.0.1:8080 ; the SDK appends /sim-integrations/v1
  SIMGATE_TOKEN  bearer token sent as `Authorization: Bearer …`

Prints one line per operation and exits non-zero on the first failure.

The v1 spec marks `X-SailPoint-Experimental: true` as required; SDK 2.x
sends it only when passed as `x_sail_point_experimental`, and only with
`configuration.experimental = True` (otherwise it raises before sending).
"""

import os
import re
import sys
from datetime import datetime

from sailpoint.configuration import Configuration, ConfigurationParams
from sailpoint.sim_integrations.api_client import ApiClient
from sailpoint.sim_integrations.api.sim_integrations_api import SIMIntegrationsApi
from sailpoint.sim_integrations.exceptions import ApiException
from sailpoint.sim_integrations.models.error_response_dto import ErrorResponseDto
from sailpoint.sim_integrations.models.json_patch import JsonPatch
from sailpoint.sim_integrations.models.json_patch_operation import JsonPatchOperation
from sailpoint.sim_integrations.models.service_desk_integration_dto import ServiceDeskIntegrationDto
from sailpoint.sim_integrations.models.sim_integration_details import SimIntegrationDetails

TAG = "sdk2"
HEX32 = re.compile(r"^[0-9a-f]{32}$")
EXP = {"x_sail_point_experimental": "true"}


class Failed(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failed(what)


def api_from_env():
    url = os.environ["SIMGATE_URL"].rstrip("/")
    token = os.environ["SIMGATE_TOKEN"]
    params = ConfigurationParams()
    # SDK 2.x: base_url is the tenant root; operations carry their full path
    # (/sim-integrations/v1/...).
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


def main():
    api = api_from_env()
    state = {}

    def create():
        details = SimIntegrationDetails(
            name="sdk2 integration",
            description="made by SDK 2.x",
            type="ServiceNow Service Desk",
            attributes={"uid": "Walter White", "lastSyncDate": 1470348809380},
            sources=["2c9180835d191a86015d28455b4a2329"],
            cluster="xyzzy999",
            status_map={"closed_complete": "Committed"},
            request={"short_description": "SailPoint Access Request"},
            before_provisioning_rule={"type": "RULE", "id": "2c918085708c274401708c2a8a760001", "name": "Rule A"},
        )
        resp = api.create_sim_integration_v1_with_http_info(details, **EXP)
        check(resp.status_code == 200, f"status {resp.status_code}")
        dto = resp.data
        check(isinstance(dto, ServiceDeskIntegrationDto), f"got {type(dto)}")
        check(HEX32.match(dto.id or ""), f"id {dto.id!r}")
        check(isinstance(dto.created, datetime) and dto.created.tzinfo, f"created {dto.created!r}")
        check(dto.created == dto.modified, "created != modified")
        check(dto.name == "sdk2 integration", f"name {dto.name!r}")
        check(dto.description == "made by SDK 2.x", f"description {dto.description!r}")
        check(dto.attributes["lastSyncDate"] == 1470348809380, f"attributes {dto.attributes!r}")
        check(dto.cluster == "xyzzy999", f"cluster {dto.cluster!r}")
        check(dto.before_provisioning_rule.name == "Rule A", "beforeProvisioningRule")
        state["dto"] = dto
        return f"id={dto.id}"

    def list_all():
        items = api.get_sim_integrations_v1(**EXP)
        check(isinstance(items, list), f"not a list: {type(items)}")
        check(all(isinstance(i, ServiceDeskIntegrationDto) for i in items), "not DTOs")
        mine = [i for i in items if i.id == state["dto"].id]
        check(mine == [state["dto"]], "created integration not listed as created")
        return f"{len(items)} item(s)"

    def get():
        dto = api.get_sim_integration_v1(state["dto"].id, **EXP)
        check(dto == state["dto"], f"get differs from create: {dto!r}")
        return "ok"

    def put():
        before = state["dto"]
        details = SimIntegrationDetails(
            name="sdk2 integration (replaced)",
            description="replaced by SDK 2.x",
            type="ServiceNow Service Desk",
            attributes={"uid": "Jesse Pinkman"},
        )
        dto = api.put_sim_integration_v1(before.id, details, **EXP)
        check(dto.id == before.id, "id changed")
        check(dto.created == before.created, "created changed")
        check(dto.modified > before.modified, "modified did not move")
        check(dto.name == "sdk2 integration (replaced)", f"name {dto.name!r}")
        check(dto.attributes == {"uid": "Jesse Pinkman"}, f"attributes {dto.attributes!r}")
        check(dto.before_provisioning_rule is None, "full replace kept beforeProvisioningRule")
        check(dto.cluster is None, "full replace kept cluster")
        state["dto"] = dto
        return "ok"

    def patch_attributes():
        before = state["dto"]
        dto = api.patch_sim_attributes_v1(
            before.id,
            patch(
                {"op": "test", "path": "/name", "value": "sdk2 integration (replaced)"},
                {"op": "replace", "path": "/description", "value": "patched by SDK 2.x"},
                {"op": "add", "path": "/attributes/email", "value": "jesse@example.com"},
                # (not an array value: the SDK's JsonPatchOperationValue cannot
                # hold a list of strings, its array branch is List[ArrayInner])
                {"op": "add", "path": "/cluster", "value": "xyzzy000"},
            ),
            **EXP,
        )
        check(dto.description == "patched by SDK 2.x", f"description {dto.description!r}")
        check(dto.attributes == {"uid": "Jesse Pinkman", "email": "jesse@example.com"}, f"attributes {dto.attributes!r}")
        check(dto.cluster == "xyzzy000", f"cluster {dto.cluster!r}")
        check(dto.modified > before.modified and dto.created == before.created, "timestamps")
        state["dto"] = dto
        return "ok"

    def patch_attributes_atomic():
        before = state["dto"]
        for name, ops in [
            ("failing test op", [
                {"op": "replace", "path": "/description", "value": "must not stick"},
                {"op": "test", "path": "/name", "value": "some other name"},
            ]),
            ("read-only id", [{"op": "replace", "path": "/id", "value": "0" * 32}]),
        ]:
            try:
                api.patch_sim_attributes_v1(before.id, patch(*ops), **EXP)
            except ApiException as e:
                check(e.status == 400, f"{name}: status {e.status}")
                check(isinstance(e.data, ErrorResponseDto), f"{name}: error body {e.body!r}")
                continue
            raise Failed(f"{name}: accepted")
        after = api.get_sim_integration_v1(before.id, **EXP)
        check(after == before, "a failed patch changed the integration")
        return "400 ErrorResponseDto, unchanged"

    def patch_rule():
        before = state["dto"]
        dto = api.patch_before_provisioning_rule_v1(
            before.id,
            patch(
                {"op": "add", "path": "/type", "value": "RULE"},
                {"op": "add", "path": "/id", "value": "048eb3d55c5a4758bd07dccb87741c78"},
                {"op": "add", "path": "/name", "value": "Rule B"},
            ),
            **EXP,
        )
        rule = dto.before_provisioning_rule
        check(rule is not None and rule.name == "Rule B" and rule.type == "RULE", f"rule {rule!r}")
        check(rule.id == "048eb3d55c5a4758bd07dccb87741c78", f"rule id {rule.id!r}")
        check(dto.description == before.description, "rule patch touched other fields")
        return "ok"

    def delete():
        resp = api.delete_sim_integration_v1_with_http_info(state["dto"].id, **EXP)
        check(resp.status_code in (200, 204), f"status {resp.status_code}")
        return f"status {resp.status_code}"

    def get_after_delete():
        try:
            api.get_sim_integration_v1(state["dto"].id, **EXP)
        except ApiException as e:
            check(e.status == 404, f"status {e.status}")
            check(isinstance(e.data, ErrorResponseDto), f"error body {e.body!r}")
            check(e.data.tracking_id, "no trackingId")
            check(e.data.messages and e.data.messages[0].text, "no message")
            return "404 ErrorResponseDto"
        raise Failed("still there after delete")

    steps = [
        ("createSIMIntegrationV1", create),
        ("getSIMIntegrationsV1", list_all),
        ("getSIMIntegrationV1", get),
        ("putSIMIntegrationV1", put),
        ("patchSIMAttributesV1", patch_attributes),
        ("patchSIMAttributesV1 (failing patches)", patch_attributes_atomic),
        ("patchBeforeProvisioningRuleV1", patch_rule),
        ("deleteSIMIntegrationV1", delete),
        ("getSIMIntegrationV1 after delete", get_after_delete),
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
