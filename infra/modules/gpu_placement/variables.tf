variable "region" {
  type        = string
  description = "Region the Dataflow job runs in (e.g. us-central1)."

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+$", var.region))
    error_message = "region must look like us-central1, got \"${var.region}\"."
  }

  validation {
    condition     = local.gpu == null || anytrue([for z in local.gpu_zones : startswith(z, "${var.region}-")])
    error_message = "Region ${var.region} offers no ${coalesce(var.gpu_type, "GPU")} in this module's catalog. Regions that do: ${try(join(", ", local.gpu_regions), "none")}. If Google added it since, list its zones in additional_gpu_zones."
  }
}

variable "gpu_type" {
  type        = string
  default     = null
  description = "Dataflow accelerator type (nvidia-tesla-t4, nvidia-l4, nvidia-tesla-a100, nvidia-a100-80gb); null runs CPU-only workers."

  validation {
    condition     = var.gpu_type == null || contains(keys(local.catalog), coalesce(var.gpu_type, "-"))
    error_message = "gpu_type must be one of ${join(", ", keys(local.catalog))} (or null for CPU workers), got \"${var.gpu_type == null ? "null" : var.gpu_type}\"."
  }
}

variable "gpu_count" {
  type        = number
  default     = 1
  description = "GPUs attached to each worker VM."

  validation {
    condition     = var.gpu_count > 0 && floor(var.gpu_count) == var.gpu_count
    error_message = "gpu_count must be a whole number greater than 0, got ${var.gpu_count}."
  }

  validation {
    condition     = local.gpu == null || contains(local.gpu_counts, var.gpu_count)
    error_message = "${coalesce(var.gpu_type, "-")} workers take ${join(", ", local.gpu_counts)} GPUs, not ${var.gpu_count}."
  }
}

variable "machine_type" {
  type        = string
  default     = null
  description = "Worker machine type; null picks the smallest one of the GPU's family (CPU-only: Dataflow's default)."

  validation {
    condition = var.machine_type == null || local.gpu == null || try(
      local.gpu.bundled
      ? lookup(local.bundled_machines, var.machine_type, 0) == var.gpu_count
      : startswith(var.machine_type, local.gpu.family),
      true
    )
    error_message = "${coalesce(var.machine_type, "-")} does not fit ${coalesce(var.gpu_type, "-")} x ${var.gpu_count}: ${try(local.gpu.family_hint, "")}."
  }
}

variable "max_workers" {
  type        = number
  default     = 4
  description = "Upper bound for Dataflow autoscaling; the GPU quota must cover max_workers x gpu_count."

  validation {
    condition     = var.max_workers >= 1 && var.max_workers <= 1000 && floor(var.max_workers) == var.max_workers
    error_message = "max_workers must be a whole number from 1 to 1000, got ${var.max_workers}."
  }
}

variable "zone" {
  type        = string
  default     = null
  description = "Pin workers to one zone of the region (Dataflow --worker_zone); null lets Dataflow choose and outputs a hint."

  validation {
    condition     = var.zone == null || startswith(coalesce(var.zone, "-"), "${var.region}-")
    error_message = "zone ${coalesce(var.zone, "-")} is not in region ${var.region}."
  }

  validation {
    condition     = try(var.zone == null || contains(local.region_zones, var.zone), true)
    error_message = "zone ${coalesce(var.zone, "-")} offers no ${coalesce(var.gpu_type, "-")}; zones that do in ${var.region}: ${try(join(", ", local.region_zones), "none")}."
  }
}

variable "additional_gpu_zones" {
  type        = map(list(string))
  default     = {}
  description = "Extra zones per gpu_type, for zones Google added after this catalog was written."

  validation {
    condition     = alltrue([for t in keys(var.additional_gpu_zones) : contains(keys(local.catalog), t)])
    error_message = "additional_gpu_zones keys must be GPU types from ${join(", ", keys(local.catalog))}."
  }
}

variable "quota_dimensions_infos" {
  type = map(list(object({
    # The provider leaves both null when the API omits them.
    dimensions = optional(map(string), {})
    details    = optional(list(object({ value = string })), [])
  })))
  default     = {}
  description = "dimensions_infos of google_cloud_quotas_quota_info per key of the quota_ids output; empty skips the quota check."
}
