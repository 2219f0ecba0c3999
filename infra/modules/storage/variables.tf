variable "project_id" {
  type        = string
  description = "Project that owns the buckets."
}

variable "location" {
  type        = string
  description = "Bucket location; the Dataflow region keeps reads and writes in-region."
}

variable "name_prefix" {
  type        = string
  description = "Bucket names are NAME_PREFIX-models, -data and -dataflow; globally unique, so it usually contains the project id."

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{1,52}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix must be 3-54 lowercase letters, digits or dashes so that bucket names stay under 63 characters."
  }
}

variable "temp_retention_days" {
  type        = number
  default     = 7
  description = "Days Dataflow temp and staging objects live before lifecycle deletion."

  validation {
    condition     = var.temp_retention_days >= 1
    error_message = "temp_retention_days must be at least 1."
  }
}

variable "noncurrent_retention_days" {
  type        = number
  default     = 30
  description = "Days an overwritten or deleted object version stays recoverable in the versioned buckets."

  validation {
    condition     = var.noncurrent_retention_days >= 1
    error_message = "noncurrent_retention_days must be at least 1."
  }
}

variable "kms_key_name" {
  type        = string
  default     = null
  description = "Optional Cloud KMS key (projects/.../cryptoKeys/...) for CMEK; null keeps Google-managed encryption."
}

variable "force_destroy" {
  type        = bool
  default     = false
  description = "Let terraform destroy delete buckets that still hold objects."
}

variable "labels" {
  type        = map(string)
  default     = {}
  description = "Labels put on every bucket."
}
