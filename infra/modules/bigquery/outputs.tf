output "dataset_id" {
  description = "Dataset id (without project)."
  value       = google_bigquery_dataset.this.dataset_id
}

output "dataset" {
  description = "Dataset as project.dataset."
  value       = "${var.project_id}.${google_bigquery_dataset.this.dataset_id}"
}

output "tables" {
  description = "Fully qualified table ids (project.dataset.table) keyed by input, input_bytes, predictions, stream_predictions."
  value       = { for k, t in google_bigquery_table.this : k => "${var.project_id}.${t.dataset_id}.${t.table_id}" }
}

output "table_ids" {
  description = "Table ids without project and dataset, keyed like tables (what table IAM members take)."
  value       = { for k, t in google_bigquery_table.this : k => t.table_id }
}
