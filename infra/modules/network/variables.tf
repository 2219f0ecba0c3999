variable "project_id" {
  type        = string
  description = "Project that owns the network."
}

variable "region" {
  type        = string
  description = "Region of the worker subnet (the Dataflow region)."
}

variable "network_name" {
  type        = string
  default     = "mnistkit"
  description = "Name of the VPC; the subnet, route, DNS zones and firewall rules are named after it."
}

variable "subnet_cidr" {
  type        = string
  default     = "10.10.0.0/20"
  description = "Primary range of the worker subnet (a /20 holds 4,000 workers)."

  validation {
    condition     = can(cidrhost(var.subnet_cidr, 0))
    error_message = "subnet_cidr must be an IPv4 CIDR block such as 10.10.0.0/20."
  }
}

variable "worker_service_account" {
  type        = string
  description = "Email of the worker service account: the allow rules match instances running as it, not network tags anyone can set."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]@[a-z0-9.-]+\\.iam\\.gserviceaccount\\.com$", var.worker_service_account))
    error_message = "worker_service_account must be a service account email (NAME@PROJECT.iam.gserviceaccount.com)."
  }
}

variable "flow_log_sampling" {
  type        = number
  default     = 0.5
  description = "Fraction of subnet flows VPC Flow Logs record (0 < x <= 1)."

  validation {
    condition     = var.flow_log_sampling > 0 && var.flow_log_sampling <= 1
    error_message = "flow_log_sampling must be in (0, 1]."
  }
}
