data "google_project" "this" {
  project_id = var.project_id
}

# The GCS and BigQuery agents are created on first use; these lookups create them if needed.
data "google_storage_project_service_account" "this" {
  project = var.project_id
}

data "google_bigquery_default_service_account" "this" {
  project = var.project_id
}

locals {
  number = data.google_project.this.number

  # Every Google service that encrypts the kit's data with the key does so as its service agent:
  # buckets, dataset and tables, images, topics, and Dataflow job state (--dataflow_kms_key),
  # which the Dataflow agent and the Compute Engine agent (worker disks) both need, and the
  # Vertex AI endpoint with the models deployed to it.
  agents = {
    storage           = "serviceAccount:${data.google_storage_project_service_account.this.email_address}"
    bigquery          = "serviceAccount:${data.google_bigquery_default_service_account.this.email}"
    artifact_registry = "serviceAccount:service-${local.number}@gcp-sa-artifactregistry.iam.gserviceaccount.com"
    pubsub            = "serviceAccount:service-${local.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
    dataflow          = "serviceAccount:service-${local.number}@dataflow-service-producer-prod.iam.gserviceaccount.com"
    compute           = "serviceAccount:service-${local.number}@compute-system.iam.gserviceaccount.com"
    vertex_ai         = "serviceAccount:service-${local.number}@gcp-sa-aiplatform.iam.gserviceaccount.com"
  }
}

# On the key only (it may live in another project), and before anything is encrypted with it:
# the root makes storage, bigquery, artifact_registry and pubsub depend on this module.
resource "google_kms_crypto_key_iam_member" "agents" {
  for_each = var.kms_key_name == null ? {} : local.agents

  crypto_key_id = var.kms_key_name
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = each.value
}
