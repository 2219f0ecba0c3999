variable "project_id" {
  type        = string
  description = "Project that owns the dataset."
}

variable "location" {
  type        = string
  description = "Dataset location; the Dataflow region avoids cross-region reads."
}

variable "dataset_id" {
  type        = string
  default     = "mnist"
  description = "BigQuery dataset id."

  validation {
    condition     = can(regex("^[A-Za-z0-9_]+$", var.dataset_id)) && length(var.dataset_id) <= 1024
    error_message = "dataset_id may only hold letters, digits and underscores (at most 1024)."
  }
}

variable "input_table_id" {
  type        = string
  default     = "images"
  description = "Input table in the original sample's schema: key INTEGER, image STRING (784 comma-separated floats)."
}

variable "input_bytes_table_id" {
  type        = string
  default     = "images_bytes"
  description = "Input table with the image as BYTES (784 uint8 pixels) instead of text."
}

variable "predictions_table_id" {
  type        = string
  default     = "predictions"
  description = "Output table: key, class, confidence, pred0..pred9."
}

variable "stream_predictions_table_id" {
  type        = string
  default     = "stream_predictions"
  description = "Output table of streams: the predictions columns plus event_time, prediction_time, latency_ms, model_version."

  validation {
    condition     = can(regex("^[A-Za-z0-9_]+$", var.stream_predictions_table_id)) && length(var.stream_predictions_table_id) <= 1024
    error_message = "stream_predictions_table_id may only hold letters, digits and underscores."
  }
}

variable "kms_key_name" {
  type        = string
  default     = null
  description = "Optional Cloud KMS key for CMEK on the dataset and tables; null keeps Google-managed encryption."
}

variable "delete_contents_on_destroy" {
  type        = bool
  default     = false
  description = "Let terraform destroy drop the dataset even when it holds tables Terraform does not manage."
}

variable "deletion_protection" {
  type        = bool
  default     = true
  description = "Refuse to destroy the tables (and the rows in them); turn off to tear the kit down."
}

variable "labels" {
  type        = map(string)
  default     = {}
  description = "Labels put on the dataset and tables."
}
