variable "project_id" {
  type        = string
  description = "Project that owns the repository."
}

variable "location" {
  type        = string
  description = "Repository location; the Dataflow region keeps image pulls in-region and free."
}

variable "repository_id" {
  type        = string
  default     = "mnistkit"
  description = "Docker repository id."

  validation {
    condition     = can(regex("^[a-z]([a-z0-9-]*[a-z0-9])?$", var.repository_id))
    error_message = "repository_id must be lowercase letters, digits and dashes, starting with a letter."
  }
}

variable "kms_key_name" {
  type        = string
  default     = null
  description = "Optional Cloud KMS key for CMEK; null keeps Google-managed encryption."
}

variable "labels" {
  type        = map(string)
  default     = {}
  description = "Labels put on the repository."
}
