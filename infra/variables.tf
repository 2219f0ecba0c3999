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
  default     = "v1"
  description = "Tag of the worker image the CLI launches with (worker_image output). Tags are immutable: build each new image under a new tag."

  validation {
    condition     = can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.worker_image_tag)) && var.worker_image_tag != "latest"
    error_message = "worker_image_tag must be a Docker tag other than latest (the repository's tags are immutable, so latest could never move)."
  }
}

variable "worker_account_id" {
  type        = string
  default     = "mnistkit-worker"
  description = "account_id of the Dataflow worker service account."
}

variable "launcher_members" {
  type        = set(string)
  default     = []
  description = "Principals that run jobs with the kit, e.g. [\"user:you@example.com\"] (infra/README.md lists what they get; not model bucket writes)."

  validation {
    condition     = alltrue([for m in var.launcher_members : can(regex("^(user|group|serviceAccount|principal|principalSet):", m))])
    error_message = "launcher_members entries need a type prefix such as user:you@example.com."
  }
}

variable "training_account_id" {
  type        = string
  default     = "mnistkit-training"
  description = "account_id of the training service account, the identity that publishes models."
}

variable "serving_account_id" {
  type        = string
  default     = "mnistkit-serving"
  description = "account_id of the service account the model on the Vertex AI endpoint runs as (reads the model bucket only)."
}

variable "endpoint_invoker_members" {
  type        = set(string)
  default     = []
  description = "Principals that may call the Vertex AI endpoint for predictions, e.g. [\"serviceAccount:app@p.iam.gserviceaccount.com\"] (a predict-only custom role on the project: Vertex AI endpoints have no IAM of their own in the google provider)."

  validation {
    condition     = alltrue([for m in var.endpoint_invoker_members : can(regex("^(user|group|serviceAccount|principal|principalSet):", m))])
    error_message = "endpoint_invoker_members entries need a type prefix such as serviceAccount:app@my-proj.iam.gserviceaccount.com."
  }
}

variable "endpoint_invoker_role_id" {
  type        = string
  default     = "mnistkitEndpointInvoker"
  description = "role_id of the predict-only custom role (a deleted custom role keeps its id for 44 days: pick another to redeploy sooner)."
}

variable "vertex_endpoint_id" {
  type        = string
  default     = null
  description = "Numeric id of the Vertex AI endpoint (1-10 digits, no leading zero); null derives a stable one from project_id."

  validation {
    condition     = var.vertex_endpoint_id == null || can(regex("^[1-9][0-9]{0,9}$", var.vertex_endpoint_id))
    error_message = "vertex_endpoint_id must be 1-10 digits without a leading zero, or null."
  }
}

variable "serving_image_name" {
  type        = string
  default     = "mnistkit-serve"
  description = "Image name of the serving container (pipeline/cloud/serve/Dockerfile) inside the repository."
}

variable "serving_image_tag" {
  type        = string
  default     = "v1"
  description = "Tag of the serving image endpoint deploy uses (serving_image output); tags are immutable, never latest."

  validation {
    condition     = can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.serving_image_tag)) && var.serving_image_tag != "latest"
    error_message = "serving_image_tag must be a Docker tag other than latest (the repository's tags are immutable)."
  }
}

variable "cloudbuild_account_id" {
  type        = string
  default     = "mnistkit-cloudbuild"
  description = "account_id of the service account Cloud Build runs worker image builds as."
}

variable "model_publisher_members" {
  type        = set(string)
  default     = []
  description = "Principals besides the training service account that may write the model bucket, e.g. [\"group:ml-release@example.com\"]. Running streams serve what they publish."

  validation {
    condition     = alltrue([for m in var.model_publisher_members : can(regex("^(user|group|serviceAccount|principal|principalSet):", m))])
    error_message = "model_publisher_members entries need a type prefix such as group:ml-release@example.com."
  }
}

variable "image_pusher_members" {
  type        = set(string)
  default     = []
  description = "Principals that push worker images with their own docker (mnistkit image build --backend docker); Cloud Build pushes as cloudbuild_account_id."

  validation {
    condition     = alltrue([for m in var.image_pusher_members : can(regex("^(user|group|serviceAccount|principal|principalSet):", m))])
    error_message = "image_pusher_members entries need a type prefix such as user:you@example.com."
  }
}

variable "bigquery_direct_read" {
  type        = bool
  default     = true
  description = "Let the pipeline read BigQuery with the Storage Read API (DIRECT_READ): grants the worker SA roles/bigquery.readSessionUser on the project. false: no such grant, and reads use EXPORT (bigquery_read_method output)."
}

variable "pubsub_topic_name" {
  type        = string
  default     = "mnistkit-input"
  description = "Input topic of streams; its subscription has the same name, the dead-letter topic and subscription add -dead-letter."
}

variable "pubsub_max_delivery_attempts" {
  type        = number
  default     = 10
  description = "Deliveries of a message no job acknowledges before Pub/Sub moves it to the dead-letter topic (5-100)."

  validation {
    condition     = var.pubsub_max_delivery_attempts >= 5 && var.pubsub_max_delivery_attempts <= 100 && floor(var.pubsub_max_delivery_attempts) == var.pubsub_max_delivery_attempts
    error_message = "pubsub_max_delivery_attempts must be a whole number between 5 and 100 (Pub/Sub's limits)."
  }
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
  description = "Optional Cloud KMS key for CMEK on buckets, dataset, tables, repository, topics, the Vertex AI endpoint and Dataflow jobs (dataflow_kms_key output); the kit grants the service agents encrypt/decrypt on it."

  validation {
    condition     = var.kms_key_name == null || can(regex("^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$", var.kms_key_name))
    error_message = "kms_key_name must be a key id: projects/P/locations/L/keyRings/R/cryptoKeys/K."
  }

  # Regional buckets and Dataflow jobs only take a key from their own region.
  validation {
    condition     = var.kms_key_name == null || try(split("/", var.kms_key_name)[3] == var.region, false)
    error_message = "kms_key_name must be a key in the kit's region (projects/P/locations/REGION/...): regional buckets and Dataflow jobs cannot use a key from another location."
  }
}

variable "gcs_data_access_logs" {
  type        = bool
  default     = true
  description = "Turn on Cloud Storage Data Access audit logs in the project (who read or wrote which object); the buckets rely on them instead of usage-log buckets."
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
