output "bucket_names" {
  description = "Bucket names keyed by purpose: models, data, dataflow."
  value       = { for k, b in google_storage_bucket.this : k => b.name }
}

output "model_bucket" {
  description = "gs:// URI of the model bucket."
  value       = "gs://${google_storage_bucket.this["models"].name}"
}

output "data_bucket" {
  description = "gs:// URI of the bucket for inputs and prediction outputs."
  value       = "gs://${google_storage_bucket.this["data"].name}"
}

output "temp_location" {
  description = "Dataflow --temp_location."
  value       = "gs://${google_storage_bucket.this["dataflow"].name}/tmp"
}

output "staging_location" {
  description = "Dataflow --staging_location."
  value       = "gs://${google_storage_bucket.this["dataflow"].name}/staging"
}
