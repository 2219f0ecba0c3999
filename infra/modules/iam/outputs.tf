output "worker_service_account" {
  description = "Email of the Dataflow worker service account (--service_account_email)."
  value       = google_service_account.worker.email
}

output "worker_member" {
  description = "The worker as an IAM member string (serviceAccount:...)."
  value       = local.members.worker
}

output "training_service_account" {
  description = "Email of the training service account, the model publisher."
  value       = google_service_account.training.email
}

output "cloudbuild_service_account" {
  description = "Email of the service account Cloud Build runs image builds as."
  value       = google_service_account.cloudbuild.email
}

output "access" {
  description = "Every grant by identity: \"scope:resource role[ if prefix]\" strings (service accounts by key, people by member)."
  value       = local.access
}

output "serving_service_account" {
  description = "Email of the service account the model on the Vertex AI endpoint runs as (mnistkit endpoint deploy --service-account)."
  value       = google_service_account.serving.email
}

output "endpoint_invoker_role" {
  description = "The custom role that may only call Vertex AI endpoints for predictions (projects/P/roles/ID)."
  value       = google_project_iam_custom_role.endpoint_invoker.name
}
