output "bucket_names" {
  description = "Bucket names keyed by purpose: models, data, dataflow."
  value       = { for k, b in google_storage_bucket.this : k => b.name }
}

output "prefixes" {
  description = "Object prefixes by purpose (inputs, outputs, temp, staging, build_source), each ending in /."
  value       = local.prefixes
}

output "model_bucket" {
  description = "gs:// URI of the model bucket."
  value       = "gs://${google_storage_bucket.this["models"].name}"
}

output "data_bucket" {
  description = "gs:// URI of the bucket for inputs and prediction outputs."
  value       = "gs://${google_storage_bucket.this["data"].name}"
}

output "input_location" {
  description = "gs:// folder for uploaded inputs (workers read it, never write it)."
  value       = "gs://${google_storage_bucket.this["data"].name}/${trimsuffix(local.prefixes.inputs, "/")}"
}

output "output_location" {
  description = "gs:// folder under which workers may write (predictions, dead letters); nowhere else in the data bucket."
  value       = "gs://${google_storage_bucket.this["data"].name}/${trimsuffix(local.prefixes.outputs, "/")}"
}

output "temp_location" {
  description = "Dataflow --temp_location."
  value       = "gs://${google_storage_bucket.this["dataflow"].name}/${trimsuffix(local.prefixes.temp, "/")}"
}

output "staging_location" {
  description = "Dataflow --staging_location."
  value       = "gs://${google_storage_bucket.this["dataflow"].name}/${trimsuffix(local.prefixes.staging, "/")}"
}

output "build_source_location" {
  description = "gs:// folder for Cloud Build contexts (gcloud builds submit --gcs-source-staging-dir); the builder reads only this."
  value       = "gs://${google_storage_bucket.this["dataflow"].name}/${trimsuffix(local.prefixes.build_source, "/")}"
}
