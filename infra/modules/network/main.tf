resource "google_compute_network" "this" {
  project                 = var.project_id
  name                    = var.network_name
  description             = "Private network for mnist-dataflow-kit Dataflow workers."
  auto_create_subnetworks = false
  routing_mode            = "REGIONAL"
}

# Workers have no public IPs: Private Google Access is how they reach GCS, BigQuery and
# Artifact Registry. There is no NAT, so everything a worker needs is baked into its image.
resource "google_compute_subnetwork" "workers" {
  project                  = var.project_id
  name                     = "${var.network_name}-${var.region}"
  region                   = var.region
  network                  = google_compute_network.this.id
  ip_cidr_range            = var.subnet_cidr
  private_ip_google_access = true

  log_config {
    aggregation_interval = "INTERVAL_5_SEC"
    flow_sampling        = var.flow_log_sampling
    metadata             = "INCLUDE_ALL_METADATA"
  }
}

# The one ingress rule: Dataflow workers exchange shuffle and streaming data on 12345-12346.
# Nothing else may connect in (the VPC's implied rule denies all other ingress).
resource "google_compute_firewall" "worker_to_worker" {
  project     = var.project_id
  name        = "${var.network_name}-dataflow-workers"
  network     = google_compute_network.this.id
  description = "Dataflow worker-to-worker traffic only."
  direction   = "INGRESS"
  priority    = 1000
  source_tags = [var.worker_tag]
  target_tags = [var.worker_tag]

  allow {
    protocol = "tcp"
    ports    = ["12345-12346"]
  }
}
