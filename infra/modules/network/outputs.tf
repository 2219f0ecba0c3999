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

output "worker_tag" {
  description = "Network tag the firewall rule expects on workers."
  value       = var.worker_tag
}
