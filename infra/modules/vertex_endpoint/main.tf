locals {
  # The provider wants a numeric endpoint id (at most 10 digits, no leading zero). Without one,
  # a stable id is derived from the project and the display name: the same deployment always
  # gets the same endpoint, two deployments in one project (other display names) do not collide.
  endpoint_id = coalesce(var.endpoint_id, tostring(parseint(substr(sha256("${var.project_id}/${var.display_name}"), 0, 8), 16) + 1))
}

# An empty endpoint: nothing runs (or bills) until `mnistkit endpoint deploy` deploys a model.
# Terraform cannot do that part: the provider's deployed_models attribute is output-only.
resource "google_vertex_ai_endpoint" "this" {
  #checkov:skip=CKV2_GCP_33:CMEK is opt-in through var.kms_key_name; the default is Google-managed encryption.
  project      = var.project_id
  location     = var.region
  region       = var.region
  name         = local.endpoint_id
  display_name = var.display_name
  description  = "Online predictions of the mnist-dataflow-kit (mnistkit endpoint deploy puts a model on it)."
  labels       = var.labels

  dynamic "encryption_spec" {
    for_each = var.kms_key_name == null ? [] : [var.kms_key_name]
    content {
      kms_key_name = encryption_spec.value
    }
  }
}
