output "enabled" {
  description = "Whether workers get GPUs."
  value       = local.enabled
}

output "machine_type" {
  description = "Dataflow --machine_type (null: CPU-only job on Dataflow's default shape)."
  value       = local.machine_type
}

output "worker_accelerator" {
  description = "The Dataflow service option that attaches the GPUs, for --dataflow_service_options (null without GPU)."
  value       = local.worker_accelerator
}

output "zone" {
  description = "Zone to pin with --worker_zone: var.zone, else the first zone of the region offering the GPU."
  value       = local.zone
}

output "zones" {
  description = "Zones of the region that offer the GPU (empty without GPU)."
  value       = coalesce(local.region_zones, [])
}

output "quota_ids" {
  description = "Cloud Quotas ids (service compute.googleapis.com) to look up, keyed like quota_dimensions_infos."
  value       = { for k, q in local.quotas : k => q.quota_id }
}

output "required_gpus" {
  description = "GPUs a fully scaled-out job holds: max_workers x gpu_count (0 without GPU)."
  value       = local.required_gpus
}

output "quota_limits" {
  description = "Limits read from quota_dimensions_infos for this region (null where unknown)."
  value       = local.quota_limits

  precondition {
    condition     = length(local.quota_shortfalls) == 0
    error_message = <<-EOT
      GPU quota too low: max_workers (${var.max_workers}) x gpu_count (${var.gpu_count}) = ${local.required_gpus} GPUs, but ${join("; ", [for s in values(local.quota_shortfalls) : "${s.metric} (${s.scope}) is ${s.limit}"])}.
      Raise ${join(" and ", [for s in values(local.quota_shortfalls) : s.metric])} to at least ${local.required_gpus} at https://console.cloud.google.com/iam-admin/quotas (service compute.googleapis.com), or lower max_workers / gpu_count.
    EOT
  }
}

output "gpu" {
  description = "Worker GPU settings for the CLI, or null for CPU-only workers."
  value = local.enabled ? {
    gpu_type           = var.gpu_type
    gpu_count          = var.gpu_count
    machine_type       = local.machine_type
    worker_accelerator = local.worker_accelerator
    zone               = local.zone
    max_workers        = var.max_workers
  } : null
}
