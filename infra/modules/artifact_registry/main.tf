resource "google_artifact_registry_repository" "this" {
  #checkov:skip=CKV_GCP_84:CMEK is opt-in through var.kms_key_name; the default is Google-managed encryption.
  project       = var.project_id
  location      = var.location
  repository_id = var.repository_id
  format        = "DOCKER"
  description   = "Worker images (CPU and GPU) for the mnist-dataflow-kit."
  kms_key_name  = var.kms_key_name
  labels        = var.labels

  # A job pins its image by tag at launch; a tag that can be re-pushed would change what later
  # jobs (and restarted workers) run without anyone launching anything.
  docker_config {
    immutable_tags = true
  }
}
