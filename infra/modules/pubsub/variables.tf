variable "project_id" {
  type        = string
  description = "Project that owns the topics and subscriptions."
}

variable "input_topic_name" {
  type        = string
  default     = "mnistkit-input"
  description = "Topic streams read images from; its subscription has the same name and the dead-letter topic and subscription add -dead-letter."

  validation {
    # 3-255 characters overall, leaving room for the -dead-letter suffix.
    condition     = can(regex("^[A-Za-z][A-Za-z0-9._~%+-]{2,243}$", var.input_topic_name)) && !startswith(lower(var.input_topic_name), "goog")
    error_message = "input_topic_name must be 3-244 letters, digits or ._~%+-, start with a letter and not start with goog."
  }
}

variable "ack_deadline_seconds" {
  type        = number
  default     = 60
  description = "Seconds a puller has to acknowledge a message before Pub/Sub redelivers it (Dataflow extends it while it works)."

  validation {
    condition     = var.ack_deadline_seconds >= 10 && var.ack_deadline_seconds <= 600
    error_message = "ack_deadline_seconds must be between 10 and 600."
  }
}

variable "message_retention_seconds" {
  type        = number
  default     = 604800
  description = "How long unacknowledged messages (and dead letters) are kept: 600 (10 minutes) to 604800 (7 days)."

  validation {
    condition     = var.message_retention_seconds >= 600 && var.message_retention_seconds <= 604800
    error_message = "message_retention_seconds must be between 600 and 604800."
  }
}

variable "max_delivery_attempts" {
  type        = number
  default     = 10
  description = "Deliveries of one message before Pub/Sub moves it to the dead-letter topic (5-100)."

  validation {
    condition     = var.max_delivery_attempts >= 5 && var.max_delivery_attempts <= 100 && floor(var.max_delivery_attempts) == var.max_delivery_attempts
    error_message = "max_delivery_attempts must be a whole number between 5 and 100 (Pub/Sub's limits)."
  }
}

variable "kms_key_name" {
  type        = string
  default     = null
  description = "Optional Cloud KMS key for CMEK on both topics; null keeps Google-managed encryption."
}

variable "labels" {
  type        = map(string)
  default     = {}
  description = "Labels put on the topics and subscriptions."
}
