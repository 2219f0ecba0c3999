variable "project_id" {
  type        = string
  description = "Project that owns the endpoint."
}

variable "region" {
  type        = string
  description = "Region of the endpoint; the model it serves is read from the kit's regional model bucket."
}

variable "endpoint_id" {
  type        = string
  default     = null
  description = "Numeric endpoint id (1-10 digits, no leading zero), part of projects/P/locations/L/endpoints/ID; null derives a stable one from project_id and display_name."

  validation {
    condition     = var.endpoint_id == null || can(regex("^[1-9][0-9]{0,9}$", var.endpoint_id))
    error_message = "endpoint_id must be 1-10 digits without a leading zero (the google provider's endpoint name), or null."
  }
}

variable "display_name" {
  type        = string
  default     = "mnistkit"
  description = "Display name of the endpoint in the console (1-128 characters)."

  validation {
    condition     = length(var.display_name) >= 1 && length(var.display_name) <= 128
    error_message = "display_name must be 1-128 characters."
  }
}

variable "kms_key_name" {
  type        = string
  default     = null
  description = "Optional Cloud KMS key (CMEK) for the endpoint and the models deployed to it; null keeps Google-managed encryption."

  validation {
    condition     = var.kms_key_name == null || can(regex("^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$", var.kms_key_name))
    error_message = "kms_key_name must be a key id: projects/P/locations/L/keyRings/R/cryptoKeys/K."
  }
}

variable "labels" {
  type        = map(string)
  default     = {}
  description = "Labels put on the endpoint."
}
