# Validation of modules/vertex_endpoint's variables (run on a copy of its variables.tf).
variables {
  project_id = "demo-proj"
  region     = "us-central1"
}

run "defaults_are_valid" {
  command = plan
}

run "a_numeric_id_and_a_key_are_accepted" {
  command = plan
  variables {
    endpoint_id  = "4294967295"
    kms_key_name = "projects/keys-proj/locations/us-central1/keyRings/kit/cryptoKeys/data"
  }
}

run "ids_are_numeric_without_a_leading_zero" {
  command = plan
  variables {
    endpoint_id = "0123"
  }
  expect_failures = [var.endpoint_id]
}

run "ids_are_at_most_ten_digits" {
  command = plan
  variables {
    endpoint_id = "12345678901"
  }
  expect_failures = [var.endpoint_id]
}

run "names_and_keys_are_checked" {
  command = plan
  variables {
    display_name = ""
    kms_key_name = "projects/keys-proj/locations/us-central1/keyRings/kit"
  }
  expect_failures = [var.display_name, var.kms_key_name]
}
