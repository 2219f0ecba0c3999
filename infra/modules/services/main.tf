resource "google_project_service" "this" {
  for_each = var.services

  project = var.project_id
  service = each.value

  # Other workloads in the project may rely on these APIs; destroying the kit must not
  # switch them off.
  disable_on_destroy         = false
  disable_dependent_services = false
}

# Cloud Storage has no Data Access audit logs unless they are switched on. With them, every
# object read and write (who, which object, when) is in Cloud Logging, which is why the buckets
# keep no separate usage-log bucket (CKV_GCP_62). This is the project's audit config for
# storage.googleapis.com as a whole, so it replaces any other one for that service.
resource "google_project_iam_audit_config" "storage" {
  count = var.gcs_data_access_logs ? 1 : 0

  project = var.project_id
  service = "storage.googleapis.com"

  audit_log_config {
    log_type = "DATA_READ"
  }

  audit_log_config {
    log_type = "DATA_WRITE"
  }
}
