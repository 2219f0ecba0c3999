# Impossible GPU plans fail at plan time on the variable that is wrong.

variables {
  region   = "us-central1"
  gpu_type = "nvidia-tesla-t4"
}

run "t4_rejects_g2_machine" {
  command = plan
  variables {
    machine_type = "g2-standard-4"
  }
  expect_failures = [var.machine_type]
}

run "l4_rejects_n1_machine" {
  command = plan
  variables {
    gpu_type     = "nvidia-l4"
    machine_type = "n1-standard-4"
  }
  expect_failures = [var.machine_type]
}

run "l4_machine_must_carry_gpu_count" {
  command = plan
  variables {
    gpu_type     = "nvidia-l4"
    gpu_count    = 2
    machine_type = "g2-standard-4"
  }
  expect_failures = [var.machine_type]
}

run "a100_rejects_ultragpu_machine" {
  command = plan
  variables {
    gpu_type     = "nvidia-tesla-a100"
    machine_type = "a2-ultragpu-1g"
  }
  expect_failures = [var.machine_type]
}

run "region_without_the_gpu" {
  command = plan
  variables {
    region = "me-west1"
  }
  expect_failures = [var.region]
}

run "a100_80gb_not_in_europe_west1" {
  command = plan
  variables {
    gpu_type = "nvidia-a100-80gb"
    region   = "europe-west1"
  }
  expect_failures = [var.region]
}

run "malformed_region" {
  command = plan
  variables {
    gpu_type = null
    region   = "US Central"
  }
  expect_failures = [var.region]
}

run "zero_gpus" {
  command = plan
  variables {
    gpu_count = 0
  }
  expect_failures = [var.gpu_count]
}

run "three_t4s" {
  command = plan
  variables {
    gpu_count = 3
  }
  expect_failures = [var.gpu_count]
}

run "unknown_gpu_type" {
  command = plan
  variables {
    gpu_type = "nvidia-h100"
  }
  expect_failures = [var.gpu_type]
}

run "zone_outside_region" {
  command = plan
  variables {
    zone = "us-east1-c"
  }
  expect_failures = [var.zone]
}

run "zone_without_the_gpu" {
  command = plan
  variables {
    zone = "us-central1-d"
  }
  expect_failures = [var.zone]
}

run "no_workers" {
  command = plan
  variables {
    max_workers = 0
  }
  expect_failures = [var.max_workers]
}
