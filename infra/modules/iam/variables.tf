variable "project_id" {
  type        = string
  description = "Project of the service accounts and their project-level roles."
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

variable "training_account_id" {
  type        = string
  default     = "mnistkit-training"
  description = "account_id of the training service account, the model publisher (6-30 characters)."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.training_account_id))
    error_message = "training_account_id must be 6-30 lowercase letters, digits or dashes, starting with a letter."
  }
}

variable "cloudbuild_account_id" {
  type        = string
  default     = "mnistkit-cloudbuild"
  description = "account_id of the service account Cloud Build runs the worker image build as (6-30 characters)."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.cloudbuild_account_id))
    error_message = "cloudbuild_account_id must be 6-30 lowercase letters, digits or dashes, starting with a letter."
  }
}

variable "buckets" {
  type = object({
    models   = string
    data     = string
    dataflow = string
  })
  description = "Bucket names by purpose: models (exported versions), data (inputs and outputs), dataflow (tmp/, staging/, build contexts)."
}

variable "prefixes" {
  type = object({
    outputs      = string
    temp         = string
    build_source = string
  })
  description = "Object prefixes IAM Conditions narrow writes to: outputs (data bucket), temp and build_source (dataflow bucket)."

  validation {
    condition     = alltrue([for p in values(var.prefixes) : can(regex("^[a-z0-9][a-z0-9_-]*/$", p))])
    error_message = "prefixes must be non-empty folder names ending in /, such as outputs/ (an empty prefix would match the whole bucket)."
  }
}

variable "dataset_id" {
  type        = string
  description = "BigQuery dataset holding the tables below."
}

variable "tables" {
  type = object({
    input              = string
    input_bytes        = string
    predictions        = string
    stream_predictions = string
  })
  description = "Table ids (without project and dataset): two input tables the worker only reads, two prediction tables it writes."
}

variable "artifact_registry" {
  type = object({
    location   = string
    repository = string
  })
  description = "Artifact Registry Docker repository of the worker images: location and repository id."
}

variable "pubsub" {
  type = object({
    input_topic              = string
    input_subscription       = string
    dead_letter_topic        = string
    dead_letter_subscription = string
  })
  description = "Pub/Sub topic and subscription names (or projects/P/... ids) of the stream's input and its dead letters."
}

variable "bigquery_direct_read" {
  type        = bool
  default     = true
  description = "Grant the worker roles/bigquery.readSessionUser on the project so the pipeline can read BigQuery with the Storage Read API (DIRECT_READ); false keeps the worker to dataflow.worker and bigquery.jobUser, and reads must use EXPORT."
}

variable "launcher_members" {
  type        = set(string)
  default     = []
  description = "Principals that run the kit (user:, group: or serviceAccount:); infra/README.md lists exactly what they get (no model bucket writes)."

  validation {
    condition     = alltrue([for m in var.launcher_members : can(regex("^(user|group|serviceAccount|principal|principalSet):", m))])
    error_message = "launcher_members entries need a type prefix such as user:alice@example.com."
  }
}

variable "model_publisher_members" {
  type        = set(string)
  default     = []
  description = "Principals besides the training service account that may write the model bucket (a release group); every running stream picks up what they publish."

  validation {
    condition     = alltrue([for m in var.model_publisher_members : can(regex("^(user|group|serviceAccount|principal|principalSet):", m))])
    error_message = "model_publisher_members entries need a type prefix such as group:ml-release@example.com."
  }
}

variable "image_pusher_members" {
  type        = set(string)
  default     = []
  description = "Principals that push worker images themselves (mnistkit image build --backend docker); Cloud Build builds need none."

  validation {
    condition     = alltrue([for m in var.image_pusher_members : can(regex("^(user|group|serviceAccount|principal|principalSet):", m))])
    error_message = "image_pusher_members entries need a type prefix such as user:alice@example.com."
  }
}

variable "serving_account_id" {
  type        = string
  default     = "mnistkit-serving"
  description = "account_id of the service account the model deployed to the Vertex AI endpoint runs as (6-30 characters)."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.serving_account_id))
    error_message = "serving_account_id must be 6-30 lowercase letters, digits or dashes, starting with a letter."
  }
}

variable "endpoint_invoker_role_id" {
  type        = string
  default     = "mnistkitEndpointInvoker"
  description = "role_id of the project custom role that carries aiplatform.endpoints.predict only (3-64 letters, digits, _ or .)."

  validation {
    condition     = can(regex("^[a-zA-Z0-9_.]{3,64}$", var.endpoint_invoker_role_id))
    error_message = "endpoint_invoker_role_id must be 3-64 letters, digits, underscores or dots (an IAM custom role id)."
  }
}

variable "endpoint_invoker_members" {
  type        = set(string)
  default     = []
  description = "Principals that may call the kit's Vertex AI endpoint for predictions (and, Vertex AI having no per-endpoint IAM here, the project's other endpoints); nothing else."

  validation {
    condition     = alltrue([for m in var.endpoint_invoker_members : can(regex("^(user|group|serviceAccount|principal|principalSet):", m))])
    error_message = "endpoint_invoker_members entries need a type prefix such as serviceAccount:app@example.iam.gserviceaccount.com."
  }
}
