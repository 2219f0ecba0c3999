output "worker_service_account" {
  description = "Email of the Dataflow worker service account (--service_account_email)."
  value       = google_service_account.worker.email
}

output "worker_member" {
  description = "The worker as an IAM member string (serviceAccount:...)."
  value       = local.worker
}
