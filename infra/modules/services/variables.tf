variable "project_id" {
  type        = string
  description = "Project to enable the APIs in."
}

variable "services" {
  type        = set(string)
  description = "APIs the kit uses: Dataflow and its workers, storage, BigQuery, Pub/Sub, private DNS, images and their builds, IAM, quota checks, Vertex AI training."
  default = [
    "aiplatform.googleapis.com",
    "artifactregistry.googleapis.com",
    "bigquery.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudquotas.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "compute.googleapis.com",
    "dataflow.googleapis.com",
    "dns.googleapis.com",
    "iam.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "pubsub.googleapis.com",
    "storage.googleapis.com",
  ]
}

variable "gcs_data_access_logs" {
  type        = bool
  default     = true
  description = "Turn on Data Access audit logs (DATA_READ, DATA_WRITE) for Cloud Storage in the project: the record of who read or wrote which object."
}
