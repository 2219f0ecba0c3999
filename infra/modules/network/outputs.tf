output "network" {
  description = "Self link of the VPC."
  value       = google_compute_network.this.self_link
}

output "network_name" {
  description = "Name of the VPC (Dataflow --network)."
  value       = google_compute_network.this.name
}

output "subnetwork" {
  description = "Self link of the worker subnet (Dataflow --subnetwork)."
  value       = google_compute_subnetwork.workers.self_link
}

output "google_api_range" {
  description = "The private.googleapis.com range (199.36.153.8/30) workers reach Google APIs through on 443."
  value       = local.google_api_range
}
