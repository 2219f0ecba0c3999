# The CLI reads these with `terraform -chdir=infra output -json`: renaming one breaks it
# (tests/infra checks the names). Document changes in infra/README.md.

output "project_id" {
  description = "Project the kit is deployed in."
  value       = var.project_id
}

output "region" {
  description = "Dataflow region (--region)."
  value       = var.region
}

output "model_bucket" {
  description = "gs:// URI for exported models."
  value       = module.storage.model_bucket
}

output "data_bucket" {
  description = "gs:// URI for inputs and prediction outputs."
  value       = module.storage.data_bucket
}

output "input_location" {
  description = "gs:// folder for uploaded inputs; workers only read the data bucket outside output_location."
  value       = module.storage.input_location
}

output "output_location" {
  description = "gs:// folder workers may write (predictions, dead letters, --errors-output): nowhere else in the data bucket."
  value       = module.storage.output_location
}

output "temp_location" {
  description = "Dataflow --temp_location (gs://.../tmp)."
  value       = module.storage.temp_location
}

output "staging_location" {
  description = "Dataflow --staging_location (gs://.../staging)."
  value       = module.storage.staging_location
}

output "bigquery_dataset" {
  description = "Dataset as project.dataset."
  value       = module.bigquery.dataset
}

output "input_table" {
  description = "project.dataset.table with key INTEGER, image STRING."
  value       = module.bigquery.tables.input
}

output "input_bytes_table" {
  description = "project.dataset.table with key INTEGER, image BYTES."
  value       = module.bigquery.tables.input_bytes
}

output "predictions_table" {
  description = "project.dataset.table for key, class, confidence, pred0..pred9."
  value       = module.bigquery.tables.predictions
}

output "stream_predictions_table" {
  description = "project.dataset.table for streams: the predictions columns plus event_time, prediction_time, latency_ms, model_version."
  value       = module.bigquery.tables.stream_predictions
}

output "pubsub_input_topic" {
  description = "projects/P/topics/T streams are fed through (mnistkit simulate-stream publishes here)."
  value       = module.pubsub.input_topic
}

output "pubsub_input_subscription" {
  description = "projects/P/subscriptions/S a stream reads (--input pubsub://...); the worker may pull from it and from nothing else."
  value       = module.pubsub.input_subscription
}

output "pubsub_dead_letter_topic" {
  description = "projects/P/topics/T where Pub/Sub moves messages no job acknowledged after pubsub_max_delivery_attempts."
  value       = module.pubsub.dead_letter_topic
}

output "pubsub_dead_letter_subscription" {
  description = "projects/P/subscriptions/S holding those dead letters for inspection (launchers may pull)."
  value       = module.pubsub.dead_letter_subscription
}

output "bigquery_read_method" {
  description = "ReadFromBigQuery method the worker SA is provisioned for: DIRECT_READ (Storage Read API) or EXPORT (bigquery_direct_read = false)."
  value       = var.bigquery_direct_read ? "DIRECT_READ" : "EXPORT"
}

output "worker_service_account" {
  description = "Email of the worker service account (--service_account_email)."
  value       = module.iam.worker_service_account
}

output "training_service_account" {
  description = "Email of the training service account: the one service account that writes the model bucket."
  value       = module.iam.training_service_account
}

output "cloudbuild_service_account" {
  description = "Email of the account Cloud Build runs image builds as (gcloud builds submit --service-account=projects/PROJECT/serviceAccounts/EMAIL)."
  value       = module.iam.cloudbuild_service_account
}

output "build_source_location" {
  description = "gs:// folder for Cloud Build contexts (gcloud builds submit --gcs-source-staging-dir); the builder can read nothing else."
  value       = module.storage.build_source_location
}

output "dataflow_kms_key" {
  description = "Cloud KMS key for --dataflow_kms_key, or null without CMEK; set only once the service agents may use it."
  value       = module.cmek.kms_key_name
}

output "network" {
  description = "Self link of the worker VPC (--network takes its name: network_name)."
  value       = module.network.network
}

output "network_name" {
  description = "Name of the worker VPC."
  value       = module.network.network_name
}

output "subnetwork" {
  description = "Self link of the worker subnet (--subnetwork)."
  value       = module.network.subnetwork
}

output "use_public_ips" {
  description = "Always false: workers have no route but to private.googleapis.com, and launches refuse public IPs (--no_use_public_ips)."
  value       = false
}

output "artifact_registry_repo" {
  description = "Docker repository URL: REGION-docker.pkg.dev/PROJECT/REPO."
  value       = module.artifact_registry.url
}

output "worker_image" {
  description = "Worker container image (--sdk_container_image)."
  value       = "${module.artifact_registry.url}/${var.worker_image_name}:${var.worker_image_tag}"
}

output "serving_image" {
  description = "Serving container image (mnistkit serve) that mnistkit endpoint deploy runs on the endpoint."
  value       = "${module.artifact_registry.url}/${var.serving_image_name}:${var.serving_image_tag}"
}

output "vertex_endpoint" {
  description = "Vertex AI endpoint for online predictions: projects/P/locations/L/endpoints/ID (empty until mnistkit endpoint deploy)."
  value       = module.vertex_endpoint.endpoint
}

output "serving_service_account" {
  description = "Email of the service account the deployed model runs as (endpoint deploy --service-account); it reads the model bucket only."
  value       = module.iam.serving_service_account
}

output "worker_machine_type" {
  description = "Worker machine type (--machine_type); null leaves Dataflow's default."
  value       = module.gpu_placement.machine_type
}

output "max_workers" {
  description = "Autoscaling ceiling (--max_num_workers)."
  value       = var.max_workers
}

output "gpu" {
  description = "GPU worker settings (gpu_type, gpu_count, machine_type, worker_accelerator service option, zone, max_workers), or null for CPU-only."
  value       = module.gpu_placement.gpu
}

output "gpu_quota" {
  description = "GPUs a full scale-out needs and the quota limits read at plan time (null where unknown)."
  value = {
    required = module.gpu_placement.required_gpus
    limits   = module.gpu_placement.quota_limits
    quotas   = module.gpu_placement.quota_ids
  }
}
