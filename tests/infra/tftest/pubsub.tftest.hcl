# Validation of modules/pubsub's variables (run on a copy of its variables.tf).
variables {
  project_id = "demo-proj"
}

run "defaults_are_valid" {
  command = plan
}

run "names_starting_with_goog_are_refused" {
  command = plan
  variables {
    input_topic_name = "google-input"
  }
  expect_failures = [var.input_topic_name]
}

run "names_must_start_with_a_letter" {
  command = plan
  variables {
    input_topic_name = "1-input"
  }
  expect_failures = [var.input_topic_name]
}

run "limits_are_pubsubs" {
  command = plan
  variables {
    ack_deadline_seconds      = 601
    message_retention_seconds = 599
    max_delivery_attempts     = 101
  }
  expect_failures = [var.ack_deadline_seconds, var.message_retention_seconds, var.max_delivery_attempts]
}

run "limits_themselves_are_accepted" {
  command = plan
  variables {
    ack_deadline_seconds      = 600
    message_retention_seconds = 600
    max_delivery_attempts     = 5
  }
}
