# Validation of modules/iam's variables (run on a copy of its variables.tf).
variables {
  project_id        = "demo-proj"
  buckets           = { models = "m", data = "d", dataflow = "f" }
  prefixes          = { outputs = "outputs/", temp = "tmp/", build_source = "cloudbuild/" }
  dataset_id        = "mnist"
  tables            = { input = "images", input_bytes = "images_bytes", predictions = "predictions", stream_predictions = "stream_predictions" }
  artifact_registry = { location = "us-central1", repository = "mnistkit" }
  pubsub            = { input_topic = "t", input_subscription = "s", dead_letter_topic = "dt", dead_letter_subscription = "ds" }
}

run "realistic_values_are_valid" {
  command = plan
  variables {
    model_publisher_members = ["group:ml-release@example.com"]
    image_pusher_members    = ["user:you@example.com"]
  }
}

run "an_empty_prefix_would_open_the_whole_bucket" {
  command = plan
  variables {
    prefixes = { outputs = "", temp = "tmp/", build_source = "cloudbuild/" }
  }
  expect_failures = [var.prefixes]
}

run "a_prefix_must_be_a_folder" {
  command = plan
  variables {
    prefixes = { outputs = "outputs", temp = "tmp/", build_source = "cloudbuild/" }
  }
  expect_failures = [var.prefixes]
}

run "account_ids_are_checked" {
  command = plan
  variables {
    training_account_id   = "Training"
    cloudbuild_account_id = "cb"
  }
  expect_failures = [var.training_account_id, var.cloudbuild_account_id]
}

run "publishers_and_pushers_need_a_type_prefix" {
  command = plan
  variables {
    model_publisher_members = ["ml-release@example.com"]
    image_pusher_members    = ["you@example.com"]
  }
  expect_failures = [var.model_publisher_members, var.image_pusher_members]
}

run "invokers_need_a_type_prefix" {
  command = plan
  variables {
    endpoint_invoker_members = ["app@demo-proj.iam.gserviceaccount.com"]
  }
  expect_failures = [var.endpoint_invoker_members]
}

run "serving_account_and_role_ids_are_checked" {
  command = plan
  variables {
    serving_account_id       = "Serving"
    endpoint_invoker_role_id = "mnistkit-invoker"
  }
  expect_failures = [var.serving_account_id, var.endpoint_invoker_role_id]
}

run "invokers_with_a_prefix_are_accepted" {
  command = plan
  variables {
    endpoint_invoker_members = ["serviceAccount:app@demo-proj.iam.gserviceaccount.com", "group:apps@example.com"]
    serving_account_id       = "kit-serving"
    endpoint_invoker_role_id = "kit.endpointInvoker"
  }
}
