output "endpoint" {
  description = "Resource name of the endpoint: projects/P/locations/L/endpoints/ID (mnistkit endpoint --endpoint, predict --endpoint vertex://...)."
  value       = "projects/${var.project_id}/locations/${var.region}/endpoints/${google_vertex_ai_endpoint.this.name}"
}

output "endpoint_id" {
  description = "The endpoint's numeric id."
  value       = google_vertex_ai_endpoint.this.name
}

output "location" {
  description = "Region of the endpoint."
  value       = google_vertex_ai_endpoint.this.location
}
