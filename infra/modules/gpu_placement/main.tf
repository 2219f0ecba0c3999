# Provider-free on purpose: everything here is checked by `terraform test` offline.

locals {
  # Which zones offer which GPU (Compute Engine "GPU regions and zones", early 2025). It goes
  # stale as Google adds capacity, hence var.additional_gpu_zones instead of editing this table.
  catalog = {
    "nvidia-tesla-t4" = {
      quota_metric = "NVIDIA_T4_GPUS"
      # T4s attach to any N1 shape; the default grows vCPUs with the GPUs to keep them fed.
      bundled        = false
      family         = "n1-"
      family_hint    = "T4 GPUs attach to N1 machine types (n1-standard-*, n1-highmem-*)"
      defaults       = { "1" = "n1-standard-4", "2" = "n1-standard-8", "4" = "n1-standard-16" }
      extra_machines = {}
      zones = [
        "asia-east1-a", "asia-east1-c", "asia-east2-a", "asia-east2-c", "asia-northeast1-a",
        "asia-northeast1-c", "asia-northeast3-b", "asia-northeast3-c", "asia-south1-a", "asia-south1-b",
        "asia-southeast1-a", "asia-southeast1-b", "asia-southeast1-c", "asia-southeast2-a",
        "asia-southeast2-b", "australia-southeast1-a", "europe-central2-b", "europe-central2-c",
        "europe-west1-b", "europe-west1-c", "europe-west1-d", "europe-west2-a", "europe-west2-b",
        "europe-west3-b", "europe-west4-a", "europe-west4-b", "europe-west4-c",
        "northamerica-northeast1-c", "southamerica-east1-a", "southamerica-east1-c", "us-central1-a",
        "us-central1-b", "us-central1-c", "us-central1-f", "us-east1-c", "us-east1-d", "us-east4-a",
        "us-east4-b", "us-east4-c", "us-west1-a", "us-west1-b", "us-west2-b", "us-west2-c",
        "us-west3-b", "us-west4-a", "us-west4-b",
      ]
    }
    "nvidia-l4" = {
      quota_metric = "NVIDIA_L4_GPUS"
      # G2 shapes come with a fixed number of L4s, so the machine type decides the count.
      bundled        = true
      family         = "g2-"
      family_hint    = "L4 GPUs come only with G2 machine types: g2-standard-4/8/12/16/32 (1 GPU), -24 (2), -48 (4), -96 (8)"
      defaults       = { "1" = "g2-standard-4", "2" = "g2-standard-24", "4" = "g2-standard-48", "8" = "g2-standard-96" }
      extra_machines = { "g2-standard-8" = 1, "g2-standard-12" = 1, "g2-standard-16" = 1, "g2-standard-32" = 1 }
      zones = [
        "asia-east1-a", "asia-east1-c", "asia-northeast1-a", "asia-northeast1-c", "asia-northeast3-a",
        "asia-northeast3-b", "asia-south1-a", "asia-south1-b", "asia-south1-c", "asia-southeast1-a",
        "asia-southeast1-b", "asia-southeast1-c", "europe-west1-b", "europe-west1-c", "europe-west2-a",
        "europe-west2-b", "europe-west3-a", "europe-west3-b", "europe-west4-a", "europe-west4-b",
        "europe-west4-c", "northamerica-northeast2-a", "northamerica-northeast2-b", "us-central1-a",
        "us-central1-b", "us-central1-c", "us-east1-b", "us-east1-c", "us-east1-d", "us-east4-a",
        "us-east4-c", "us-west1-a", "us-west1-b", "us-west1-c", "us-west4-a", "us-west4-c",
      ]
    }
    "nvidia-tesla-a100" = {
      quota_metric = "NVIDIA_A100_GPUS"
      bundled      = true
      family       = "a2-"
      family_hint  = "A100 40GB GPUs come only with A2 machine types: a2-highgpu-1g/2g/4g/8g, a2-megagpu-16g"
      defaults = {
        "1"  = "a2-highgpu-1g", "2" = "a2-highgpu-2g", "4" = "a2-highgpu-4g", "8" = "a2-highgpu-8g",
        "16" = "a2-megagpu-16g",
      }
      extra_machines = {}
      zones = [
        "asia-northeast1-a", "asia-northeast1-c", "asia-northeast3-a", "asia-northeast3-b",
        "asia-southeast1-b", "asia-southeast1-c", "europe-west4-a", "europe-west4-b", "me-west1-b",
        "me-west1-c", "us-central1-a", "us-central1-b", "us-central1-c", "us-central1-f", "us-east1-b",
        "us-west1-b", "us-west3-b", "us-west4-b",
      ]
    }
    "nvidia-a100-80gb" = {
      quota_metric   = "NVIDIA_A100_80GB_GPUS"
      bundled        = true
      family         = "a2-"
      family_hint    = "A100 80GB GPUs come only with A2 ultra machine types: a2-ultragpu-1g/2g/4g/8g"
      defaults       = { "1" = "a2-ultragpu-1g", "2" = "a2-ultragpu-2g", "4" = "a2-ultragpu-4g", "8" = "a2-ultragpu-8g" }
      extra_machines = {}
      zones = [
        "asia-southeast1-c", "europe-west4-a", "us-central1-a", "us-central1-c", "us-east4-c",
        "us-east5-b",
      ]
    }
  }

  enabled = var.gpu_type != null
  # Null when CPU-only (or gpu_type is invalid: its own validation reports that).
  gpu = try(local.catalog[var.gpu_type], null)

  gpu_zones = local.gpu == null ? [] : sort(distinct(concat(
    local.gpu.zones, lookup(var.additional_gpu_zones, var.gpu_type, [])
  )))
  gpu_regions  = distinct([for z in local.gpu_zones : regex("^(.*)-[a-z]$", z)[0]])
  region_zones = local.gpu == null ? null : [for z in local.gpu_zones : z if startswith(z, "${var.region}-")]

  # defaults maps a GPU count to the smallest shape carrying it, so its keys are the counts
  # offered (numerically sorted for messages); for bundled families, every shape -> its count.
  gpu_counts = local.gpu == null ? [] : [
    for n in sort([for k in keys(local.gpu.defaults) : format("%03d", tonumber(k))]) : tonumber(n)
  ]
  bundled_machines = local.gpu == null ? {} : merge(
    local.gpu.extra_machines, { for n, machine in local.gpu.defaults : machine => tonumber(n) }
  )
  machine_type = local.enabled ? coalesce(var.machine_type, lookup(local.gpu.defaults, tostring(var.gpu_count), null)) : var.machine_type

  worker_accelerator = local.enabled ? "worker_accelerator=type:${var.gpu_type};count:${var.gpu_count};install-nvidia-driver" : null

  # Dataflow picks a zone itself; the hint is where the CLI should pin --worker_zone if it must.
  zone = local.enabled ? coalesce(var.zone, try(local.region_zones[0], null)) : var.zone

  # Two quotas gate GPU VMs: the per-region one for this GPU type and the global GPUS_ALL_REGIONS
  # (0 on many new projects). Ids are Cloud Quotas ids; metrics are what the console shows.
  quotas = local.enabled ? {
    regional = {
      metric   = local.gpu.quota_metric
      quota_id = "${replace(local.gpu.quota_metric, "_", "-")}-per-project-region"
      region   = var.region
    }
    all_regions = {
      metric   = "GPUS_ALL_REGIONS"
      quota_id = "GPUS-ALL-REGIONS-per-project"
      region   = null
    }
  } : {}
  required_gpus = local.enabled ? var.max_workers * var.gpu_count : 0

  # The most specific dimensions info that applies: the API lists specific ones first, and
  # an info without a region dimension covers every region not listed separately.
  quota_limits = {
    for k, infos in var.quota_dimensions_infos : k => try([
      for d in infos : tonumber(d.details[0].value)
      if length(d.details) > 0 && lookup(d.dimensions, "region", var.region) == var.region
    ][0], null)
  }
  # -1 means unlimited; an unknown or missing limit is not treated as a failure.
  quota_shortfalls = {
    for k, limit in local.quota_limits : k => {
      metric = try(local.quotas[k].metric, k)
      scope  = try(local.quotas[k].region, null) == null ? "all regions" : "region ${var.region}"
      limit  = limit
    }
    if try(limit >= 0 && limit < local.required_gpus, false)
  }
}
