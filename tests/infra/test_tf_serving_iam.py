"""Online prediction's identities: the serving account the deployed model runs as, who may call
the Vertex AI endpoint, and who may deploy as the serving account; modules/iam as the root module
wires it, applied by real terraform (test_tf_contract's fixture), and the endpoint module itself."""

from __future__ import annotations

from test_tf_contract import INVOKER, INVOKER_ROLE, LAUNCHER, MODELS, PROJECT, PUBLISHER, PUSHER, wired_access
from tfhelpers import INFRA, MODULES, load_module

__all__ = ["wired_access"]  # the fixture, imported so pytest finds it here

ACT_AS_SERVING = "service_account:serving roles/iam.serviceAccountUser"


def test_the_serving_account_reads_the_model_bucket_and_nothing_else(wired_access):
    assert wired_access["serving"] == [f"{MODELS} roles/storage.objectViewer"]


def test_only_launchers_deploy_as_the_serving_account(wired_access):
    holders = {who for who, grants in wired_access.items() if ACT_AS_SERVING in grants}
    assert holders == {LAUNCHER}


def test_invokers_may_predict_and_nothing_more(wired_access):
    assert wired_access[INVOKER] == [f"{PROJECT} {INVOKER_ROLE}"]
    callers = {who for who, grants in wired_access.items() if f"{PROJECT} {INVOKER_ROLE}" in grants}
    # The workers call it for `predict --endpoint vertex://... --runner dataflow`; launchers
    # already predict through aiplatform.user; publishers and pushers may not.
    assert callers == {INVOKER, "worker"}
    assert PUBLISHER not in callers and PUSHER not in callers


def test_the_invoker_role_carries_the_predict_permission_only():
    iam = load_module(MODULES / "iam")
    role = iam["resource"]["google_project_iam_custom_role"]["endpoint_invoker"]
    assert role["permissions"] == ["aiplatform.endpoints.predict"]
    assert role["role_id"] == "${var.endpoint_invoker_role_id}"
    assert iam["locals"]["endpoint_invoker_role"] == "projects/${var.project_id}/roles/${var.endpoint_invoker_role_id}"
    # Grants naming the role must wait for it.
    project = iam["resource"]["google_project_iam_member"]["this"]
    assert project["depends_on"] == ["${google_project_iam_custom_role.endpoint_invoker}"]
    assert iam["output"]["endpoint_invoker_role"]["value"] == "${google_project_iam_custom_role.endpoint_invoker.name}"


def test_the_endpoint_is_created_empty_and_named_for_the_cli():
    endpoint = load_module(MODULES / "vertex_endpoint")
    body = endpoint["resource"]["google_vertex_ai_endpoint"]["this"]
    # deployed_models is output-only: a model is deployed by `mnistkit endpoint deploy`.
    assert "deployed_models" not in body and "traffic_split" not in body
    assert body["location"] == body["region"] == "${var.region}"
    assert endpoint["output"]["endpoint"]["value"] == (
        "projects/${var.project_id}/locations/${var.region}/endpoints/${google_vertex_ai_endpoint.this.name}"
    )
    root = load_module(INFRA)
    assert root["output"]["vertex_endpoint"]["value"] == "${module.vertex_endpoint.endpoint}"
    assert root["output"]["serving_service_account"]["value"] == "${module.iam.serving_service_account}"
    assert root["output"]["serving_image"]["value"] == (
        "${module.artifact_registry.url}/${var.serving_image_name}:${var.serving_image_tag}"
    )
    tag = root["variable"]["serving_image_tag"]
    assert tag["default"] != "latest" and 'var.serving_image_tag != "latest"' in tag["validation"][0]["condition"]
