# Validation of modules/bigquery's variables (run on a copy of its variables.tf).
variables {
  project_id = "demo-proj"
  location   = "us-central1"
}

run "defaults_are_valid" {
  command = plan
}

run "stream_table_ids_are_checked" {
  command = plan
  variables {
    stream_predictions_table_id = "stream-predictions"
  }
  expect_failures = [var.stream_predictions_table_id]
}
