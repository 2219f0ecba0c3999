variable "project_id" {
  type        = string
  description = "Project to enable the APIs in."
}

variable "services" {
  type        = set(string)
  description = "APIs the kit uses: Dataflow and its workers, storage, BigQuery, images, IAM, quota checks."
  default = [
    "artifactregistry.googleapis.com",
    "bigquery.googleapis.com",
    "cloudquotas.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "compute.googleapis.com",
    "dataflow.googleapis.com",
    "iam.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "storage.googleapis.com",
  ]
}
