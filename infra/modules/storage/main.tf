locals {
  # Object layout shared with the iam module, whose IAM Conditions narrow writes to these
  # prefixes: the worker writes only outputs/ (data) and tmp/ (dataflow); launchers upload
  # inputs/, staging/ and the Cloud Build contexts under cloudbuild/.
  prefixes = {
    inputs       = "inputs/"
    outputs      = "outputs/"
    temp         = "tmp/"
    staging      = "staging/"
    build_source = "cloudbuild/"
  }

  # Dataflow only needs temp/ and staging/ for the life of a job, so that bucket keeps old
  # versions for a day and has no soft delete (Beam warns about soft delete on temp buckets:
  # every temp file would be billed for another week). Models and data are worth keeping.
  buckets = {
    models   = { noncurrent_days = var.noncurrent_retention_days, soft_delete_seconds = 604800, scratch_prefixes = [] }
    data     = { noncurrent_days = var.noncurrent_retention_days, soft_delete_seconds = 604800, scratch_prefixes = [] }
    dataflow = { noncurrent_days = 1, soft_delete_seconds = 0, scratch_prefixes = [local.prefixes.temp, local.prefixes.staging, local.prefixes.build_source] }
  }
}

resource "google_storage_bucket" "this" {
  #checkov:skip=CKV_GCP_62:Usage logs would need a second log bucket; the services module turns on Data Access audit logs for Cloud Storage instead (gcs_data_access_logs, default true), which record who read or wrote each object.
  for_each = local.buckets

  project                     = var.project_id
  name                        = "${var.name_prefix}-${each.key}"
  location                    = var.location
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy
  labels                      = merge(var.labels, { purpose = each.key })

  versioning {
    enabled = true
  }

  soft_delete_policy {
    retention_duration_seconds = each.value.soft_delete_seconds
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = each.value.noncurrent_days
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  dynamic "lifecycle_rule" {
    for_each = length(each.value.scratch_prefixes) > 0 ? [each.value.scratch_prefixes] : []
    content {
      condition {
        age            = var.temp_retention_days
        matches_prefix = lifecycle_rule.value
      }
      action {
        type = "Delete"
      }
    }
  }

  dynamic "encryption" {
    for_each = var.kms_key_name == null ? [] : [var.kms_key_name]
    content {
      default_kms_key_name = encryption.value
    }
  }
}
