# The quota gate: limits as google_cloud_quotas_quota_info returns them (details[].value is a
# string; the most specific dimensions info comes first).

variables {
  region      = "us-central1"
  gpu_type    = "nvidia-tesla-t4"
  gpu_count   = 2
  max_workers = 4
}

run "enough_quota" {
  command = plan
  variables {
    quota_dimensions_infos = {
      regional = [
        { dimensions = { region = "us-central1" }, details = [{ value = "8" }] },
        { dimensions = {}, details = [{ value = "4" }] },
      ]
      all_regions = [{ dimensions = {}, details = [{ value = "-1" }] }]
    }
  }
  assert {
    condition     = output.quota_limits == { regional = 8, all_regions = -1 }
    error_message = "the region-specific limit should win over the default"
  }
}

run "default_dimension_applies_to_unlisted_regions" {
  command = plan
  variables {
    quota_dimensions_infos = {
      regional = [
        { dimensions = { region = "europe-west4" }, details = [{ value = "64" }] },
        { dimensions = null, details = [{ value = "16" }] },
      ]
    }
  }
  assert {
    condition     = output.quota_limits.regional == 16
    error_message = "us-central1 is not listed, so the default limit applies"
  }
}

run "missing_details_do_not_block" {
  command = plan
  variables {
    quota_dimensions_infos = { regional = [{ dimensions = {}, details = null }] }
  }
  assert {
    condition     = output.quota_limits.regional == null
    error_message = "an unreadable limit is reported as null"
  }
}

run "regional_quota_too_low" {
  command = plan
  variables {
    quota_dimensions_infos = {
      regional    = [{ dimensions = { region = "us-central1" }, details = [{ value = "4" }] }]
      all_regions = [{ dimensions = {}, details = [{ value = "64" }] }]
    }
  }
  expect_failures = [output.quota_limits]
}

run "new_project_without_global_gpu_quota" {
  command = plan
  variables {
    quota_dimensions_infos = {
      regional    = [{ dimensions = {}, details = [{ value = "16" }] }]
      all_regions = [{ dimensions = {}, details = [{ value = "0" }] }]
    }
  }
  expect_failures = [output.quota_limits]
}
