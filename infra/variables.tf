variable "project_id" {
  type        = string
  description = "GCP project to deploy into (make deploy PROJECT_ID=...)."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a GCP project id: 6-30 lowercase letters, digits or dashes."
  }
}

variable "region" {
  type        = string
  default     = "us-central1"
  description = "Region for Dataflow, buckets, dataset, subnet and images (make deploy REGION=...)."
}

variable "bucket_prefix" {
  type        = string
  default     = null
  description = "Prefix of the bucket names (PREFIX-models, -data, -dataflow); null uses PROJECT_ID-mnistkit."
}

variable "dataset_id" {
  type        = string
  default     = "mnist"
  description = "BigQuery dataset for inputs and predictions."
}

variable "artifact_registry_repository" {
  type        = string
  default     = "mnistkit"
  description = "Artifact Registry Docker repository for worker images."
}

variable "worker_image_name" {
  type        = string
  default     = "mnistkit-worker"
  description = "Image name of the custom Dataflow worker container inside the repository."
}

variable "worker_image_tag" {
  type        = string
  default     = "latest"
  description = "Tag of the worker image the CLI launches with (worker_image output)."
}

variable "worker_account_id" {
  type        = string
  default     = "mnistkit-worker"
  description = "account_id of the Dataflow worker service account."
}

variable "launcher_members" {
  type        = set(string)
  default     = []
  description = "Principals that run jobs with the kit, e.g. [\"user:you@example.com\"] (see infra/README.md for what they get)."
}

variable "bigquery_direct_read" {
  type        = bool
  default     = true
  description = "Let the pipeline read BigQuery with the Storage Read API (DIRECT_READ): grants the worker SA roles/bigquery.readSessionUser on the project. false: no such grant, and reads use EXPORT (bigquery_read_method output)."
}

variable "network_name" {
  type        = string
  default     = "mnistkit"
  description = "Name of the VPC for workers."
}

variable "subnet_cidr" {
  type        = string
  default     = "10.10.0.0/20"
  description = "IPv4 range of the worker subnet."
}

variable "gpu_type" {
  type        = string
  default     = null
  description = "GPU per worker: nvidia-tesla-t4, nvidia-l4, nvidia-tesla-a100 or nvidia-a100-80gb; null for CPU-only workers."
}

variable "gpu_count" {
  type        = number
  default     = 1
  description = "GPUs per worker."
}

variable "worker_machine_type" {
  type        = string
  default     = null
  description = "Worker machine type; null picks one that fits the GPU (or Dataflow's default without GPU)."
}

variable "worker_zone" {
  type        = string
  default     = null
  description = "Pin workers to one zone; null lets Dataflow pick (the gpu output still carries a hint)."
}

variable "max_workers" {
  type        = number
  default     = 4
  description = "Autoscaling ceiling; with GPUs, max_workers x gpu_count must fit the GPU quota."
}

variable "additional_gpu_zones" {
  type        = map(list(string))
  default     = {}
  description = "Zones per GPU type missing from the gpu_placement catalog (Google adds capacity over time)."
}

variable "check_gpu_quota" {
  type        = bool
  default     = true
  description = "Compare the GPU quota limits with max_workers x gpu_count at plan time (needs cloudquotas.quotas.get)."
}

variable "kms_key_name" {
  type        = string
  default     = null
  description = "Optional Cloud KMS key for CMEK on buckets, dataset and repository; its service agents need encrypt/decrypt on it."
}

variable "force_destroy" {
  type        = bool
  default     = false
  description = "Let destroy delete buckets with objects and BigQuery tables with rows (make destroy FORCE_DESTROY=1)."
}

variable "labels" {
  type        = map(string)
  default     = {}
  description = "Extra labels for every labelled resource."
}
