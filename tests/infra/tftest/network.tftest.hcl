# Validation of modules/network's variables (run on a copy of its variables.tf).
variables {
  project_id             = "demo-proj"
  region                 = "us-central1"
  worker_service_account = "mnistkit-worker@demo-proj.iam.gserviceaccount.com"
}

run "realistic_values_are_valid" {
  command = plan
}

run "the_worker_must_be_a_service_account_email" {
  command = plan
  variables {
    worker_service_account = "user:mnistkit-worker@demo-proj.iam.gserviceaccount.com"
  }
  expect_failures = [var.worker_service_account]
}

run "a_user_email_is_not_a_service_account" {
  command = plan
  variables {
    worker_service_account = "someone@example.com"
  }
  expect_failures = [var.worker_service_account]
}
