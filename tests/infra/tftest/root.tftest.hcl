# Validation of the root module's variables (run by test_tf_modules.py on a copy of
# infra/variables.tf: the google provider is not needed to plan variables alone).
variables {
  project_id = "demo-proj"
}

run "defaults_are_valid" {
  command = plan
}

run "kms_key_in_the_region_is_accepted" {
  command = plan
  variables {
    kms_key_name = "projects/keys-proj/locations/us-central1/keyRings/kit/cryptoKeys/data"
  }
}

run "kms_key_in_another_region_is_refused" {
  command = plan
  variables {
    kms_key_name = "projects/keys-proj/locations/europe-west4/keyRings/kit/cryptoKeys/data"
  }
  expect_failures = [var.kms_key_name]
}

run "kms_key_that_is_not_a_key_id_is_refused" {
  command = plan
  variables {
    kms_key_name = "projects/keys-proj/locations/us-central1/keyRings/kit"
  }
  expect_failures = [var.kms_key_name]
}

run "latest_tag_is_refused" {
  command = plan
  variables {
    worker_image_tag = "latest"
  }
  expect_failures = [var.worker_image_tag]
}

run "malformed_tag_is_refused" {
  command = plan
  variables {
    worker_image_tag = "-v1"
  }
  expect_failures = [var.worker_image_tag]
}

run "members_need_a_type_prefix" {
  command = plan
  variables {
    launcher_members        = ["you@example.com"]
    model_publisher_members = ["ml-release@example.com"]
    image_pusher_members    = ["pusher@example.com"]
  }
  expect_failures = [var.launcher_members, var.model_publisher_members, var.image_pusher_members]
}

run "prefixed_members_are_accepted" {
  command = plan
  variables {
    launcher_members        = ["user:you@example.com", "serviceAccount:ci@demo-proj.iam.gserviceaccount.com"]
    model_publisher_members = ["group:ml-release@example.com"]
    image_pusher_members    = ["user:you@example.com"]
  }
}

run "delivery_attempts_at_the_limits_are_accepted" {
  command = plan
  variables {
    pubsub_max_delivery_attempts = 100
  }
}

run "too_few_delivery_attempts_are_refused" {
  command = plan
  variables {
    pubsub_max_delivery_attempts = 4
  }
  expect_failures = [var.pubsub_max_delivery_attempts]
}

run "fractional_delivery_attempts_are_refused" {
  command = plan
  variables {
    pubsub_max_delivery_attempts = 7.5
  }
  expect_failures = [var.pubsub_max_delivery_attempts]
}

run "endpoint_ids_are_numeric" {
  command = plan
  variables {
    vertex_endpoint_id = "mnistkit"
  }
  expect_failures = [var.vertex_endpoint_id]
}

run "a_numeric_endpoint_id_is_accepted" {
  command = plan
  variables {
    vertex_endpoint_id = "1234567890"
  }
}

run "latest_serving_tag_is_refused" {
  command = plan
  variables {
    serving_image_tag = "latest"
  }
  expect_failures = [var.serving_image_tag]
}

run "invokers_need_a_type_prefix" {
  command = plan
  variables {
    endpoint_invoker_members = ["app@demo-proj.iam.gserviceaccount.com"]
  }
  expect_failures = [var.endpoint_invoker_members]
}
