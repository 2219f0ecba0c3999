variable "project_id" {
  type        = string
  description = "Project whose service agents encrypt and decrypt with the key."
}

variable "kms_key_name" {
  type        = string
  default     = null
  description = "Cloud KMS key (projects/P/locations/L/keyRings/R/cryptoKeys/K) the kit encrypts with; null grants nothing."

  validation {
    condition     = var.kms_key_name == null || can(regex("^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$", var.kms_key_name))
    error_message = "kms_key_name must be a key id: projects/P/locations/L/keyRings/R/cryptoKeys/K."
  }
}
