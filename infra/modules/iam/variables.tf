variable "project_id" {
  type        = string
  description = "Project of the worker service account and its project-level roles."
}

variable "worker_account_id" {
  type        = string
  default     = "mnistkit-worker"
  description = "account_id of the Dataflow worker service account (6-30 characters)."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.worker_account_id))
    error_message = "worker_account_id must be 6-30 lowercase letters, digits or dashes, starting with a letter."
  }
}

variable "object_admin_buckets" {
  type        = map(string)
  description = "Buckets (name by a fixed key) where workers read and write objects: data, temp/staging."
}

variable "object_viewer_buckets" {
  type        = map(string)
  description = "Buckets (name by a fixed key) workers only read: the model bucket."
}

variable "dataset_id" {
  type        = string
  description = "BigQuery dataset workers read inputs from and write predictions to."
}

variable "artifact_registry_location" {
  type        = string
  description = "Location of the Artifact Registry repository holding worker images."
}

variable "artifact_registry_repository" {
  type        = string
  description = "Repository id workers pull their container image from."
}

variable "bigquery_direct_read" {
  type        = bool
  default     = true
  description = "Grant the worker roles/bigquery.readSessionUser on the project so the pipeline can read BigQuery with the Storage Read API (DIRECT_READ); false keeps the worker to dataflow.worker and bigquery.jobUser, and reads must use EXPORT."
}

variable "launcher_members" {
  type        = set(string)
  default     = []
  description = "Principals that run the kit (user:, group: or serviceAccount:): serviceAccountUser on the worker SA only, dataflow.developer and bigquery.jobUser on the project, objectAdmin on the buckets, dataEditor on the dataset, artifactregistry.writer on the repository."

  validation {
    condition     = alltrue([for m in var.launcher_members : can(regex("^(user|group|serviceAccount|principal|principalSet):", m))])
    error_message = "launcher_members entries need a type prefix such as user:alice@example.com."
  }
}
