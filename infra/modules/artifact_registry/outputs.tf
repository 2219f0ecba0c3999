output "repository_id" {
  description = "Repository id."
  value       = google_artifact_registry_repository.this.repository_id
}

output "location" {
  description = "Repository location."
  value       = google_artifact_registry_repository.this.location
}

output "url" {
  description = "Docker URL prefix for images: LOCATION-docker.pkg.dev/PROJECT/REPOSITORY."
  value       = "${google_artifact_registry_repository.this.location}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.this.repository_id}"
}
