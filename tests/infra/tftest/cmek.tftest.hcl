# Validation of modules/cmek's variables (run on a copy of its variables.tf).
variables {
  project_id = "demo-proj"
}

run "no_key_is_valid" {
  command = plan
}

run "a_key_id_is_accepted" {
  command = plan
  variables {
    kms_key_name = "projects/keys-proj/locations/us-central1/keyRings/kit/cryptoKeys/data"
  }
}

run "a_key_ring_is_not_a_key" {
  command = plan
  variables {
    kms_key_name = "projects/keys-proj/locations/us-central1/keyRings/kit"
  }
  expect_failures = [var.kms_key_name]
}
