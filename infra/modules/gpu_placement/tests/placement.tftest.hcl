# Valid GPU plans: machine family, service option string, zone hint. Run: terraform test

variables {
  region = "us-central1"
}

run "t4_defaults_to_n1" {
  command = plan

  variables {
    gpu_type = "nvidia-tesla-t4"
  }

  assert {
    condition     = output.machine_type == "n1-standard-4"
    error_message = "T4 should default to n1-standard-4, got ${output.machine_type}"
  }
  assert {
    condition     = output.worker_accelerator == "worker_accelerator=type:nvidia-tesla-t4;count:1;install-nvidia-driver"
    error_message = "unexpected service option ${output.worker_accelerator}"
  }
  assert {
    condition     = output.zone == "us-central1-a" && contains(output.zones, "us-central1-f")
    error_message = "zone hint should be the first T4 zone of us-central1"
  }
  assert {
    condition     = output.gpu.max_workers == 4 && output.gpu.gpu_count == 1 && output.required_gpus == 4
    error_message = "gpu object should carry the defaults"
  }
  assert {
    condition     = output.quota_ids == { regional = "NVIDIA-T4-GPUS-per-project-region", all_regions = "GPUS-ALL-REGIONS-per-project" }
    error_message = "quota ids must follow the Cloud Quotas naming"
  }
}

run "t4_keeps_a_custom_n1_shape" {
  command = plan

  variables {
    gpu_type     = "nvidia-tesla-t4"
    gpu_count    = 2
    machine_type = "n1-highmem-8"
    max_workers  = 3
    zone         = "us-central1-c"
  }

  assert {
    condition     = output.machine_type == "n1-highmem-8" && output.zone == "us-central1-c"
    error_message = "explicit machine type and zone must win"
  }
  assert {
    condition     = output.required_gpus == 6
    error_message = "required GPUs is max_workers x gpu_count"
  }
}

run "l4_count_picks_the_g2_shape" {
  command = plan

  variables {
    gpu_type  = "nvidia-l4"
    gpu_count = 2
    region    = "europe-west4"
  }

  assert {
    condition     = output.machine_type == "g2-standard-24"
    error_message = "2 x L4 come with g2-standard-24, got ${output.machine_type}"
  }
  assert {
    condition     = output.quota_ids.regional == "NVIDIA-L4-GPUS-per-project-region"
    error_message = "L4 quota id"
  }
}

run "one_l4_is_the_smallest_g2" {
  command = plan

  variables {
    gpu_type = "nvidia-l4"
  }

  assert {
    condition     = output.machine_type == "g2-standard-4"
    error_message = "1 x L4 should default to g2-standard-4, got ${output.machine_type}"
  }
}

run "l4_accepts_a_larger_single_gpu_shape" {
  command = plan

  variables {
    gpu_type     = "nvidia-l4"
    machine_type = "g2-standard-16"
  }

  assert {
    condition     = output.machine_type == "g2-standard-16"
    error_message = "g2-standard-16 carries one L4"
  }
}

run "a100_sixteen_is_megagpu" {
  command = plan

  variables {
    gpu_type  = "nvidia-tesla-a100"
    gpu_count = 16
  }

  assert {
    condition     = output.machine_type == "a2-megagpu-16g"
    error_message = "16 x A100 come with a2-megagpu-16g"
  }
}

run "a100_80gb_is_ultragpu" {
  command = plan

  variables {
    gpu_type  = "nvidia-a100-80gb"
    gpu_count = 4
  }

  assert {
    condition     = output.machine_type == "a2-ultragpu-4g" && output.quota_ids.regional == "NVIDIA-A100-80GB-GPUS-per-project-region"
    error_message = "A100 80GB maps to a2-ultragpu and its own quota"
  }
}

run "cpu_only" {
  command = plan

  variables {
    region       = "southamerica-west1"
    machine_type = "e2-standard-4"
  }

  assert {
    condition     = output.gpu == null && output.worker_accelerator == null && !output.enabled
    error_message = "no GPU settings without gpu_type"
  }
  assert {
    condition     = output.machine_type == "e2-standard-4" && output.quota_ids == {} && output.required_gpus == 0
    error_message = "CPU-only passes the machine type through and checks no GPU quota"
  }
}

run "additional_zones_extend_the_catalog" {
  command = plan

  variables {
    gpu_type             = "nvidia-l4"
    region               = "me-central2"
    additional_gpu_zones = { "nvidia-l4" = ["me-central2-a"] }
  }

  assert {
    condition     = output.zone == "me-central2-a"
    error_message = "a zone from additional_gpu_zones should be usable"
  }
}
