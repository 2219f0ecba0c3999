locals {
  # private.googleapis.com: Google APIs on four addresses that are only reachable from VPCs.
  google_api_range     = "199.36.153.8/30"
  google_api_addresses = [for i in range(4) : cidrhost(local.google_api_range, i)]

  # Dataflow workers exchange shuffle and streaming data on these ports.
  worker_ports = ["12345-12346"]

  # Domains workers resolve to the private addresses: the APIs, Artifact Registry (the worker
  # image) and Container Registry (Dataflow's own harness images). Each zone answers its apex
  # (or private.googleapis.com) with the four addresses and every name under it with a CNAME.
  google_domains = {
    googleapis = { dns_name = "googleapis.com.", target = "private.googleapis.com." }
    pkg-dev    = { dns_name = "pkg.dev.", target = "pkg.dev." }
    gcr-io     = { dns_name = "gcr.io.", target = "gcr.io." }
  }
  worker_sa = [var.worker_service_account]
}

# No default route to the internet: the only way out is the route to private.googleapis.com.
resource "google_compute_network" "this" {
  project                         = var.project_id
  name                            = var.network_name
  description                     = "Private network for mnist-dataflow-kit Dataflow workers."
  auto_create_subnetworks         = false
  routing_mode                    = "REGIONAL"
  delete_default_routes_on_create = true
}

resource "google_compute_route" "google_apis" {
  project          = var.project_id
  name             = "${var.network_name}-private-google-apis"
  network          = google_compute_network.this.id
  description      = "private.googleapis.com only; there is no route to the rest of the internet."
  dest_range       = local.google_api_range
  next_hop_gateway = "default-internet-gateway"
  priority         = 1000
}

# Workers have no public IPs: Private Google Access is how they reach GCS, BigQuery, Pub/Sub and
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

resource "google_dns_managed_zone" "google" {
  #checkov:skip=CKV_GCP_16:DNSSEC applies to public zones; these are private zones visible only to the worker VPC.
  for_each = local.google_domains

  project     = var.project_id
  name        = "${var.network_name}-${each.key}"
  dns_name    = each.value.dns_name
  description = "Sends ${each.value.dns_name} to private.googleapis.com for the worker VPC."
  visibility  = "private"

  private_visibility_config {
    networks {
      network_url = google_compute_network.this.id
    }
  }
}

resource "google_dns_record_set" "addresses" {
  for_each = local.google_domains

  project      = var.project_id
  managed_zone = google_dns_managed_zone.google[each.key].name
  name         = each.value.target
  type         = "A"
  ttl          = 300
  rrdatas      = local.google_api_addresses
}

resource "google_dns_record_set" "wildcard" {
  for_each = local.google_domains

  project      = var.project_id
  managed_zone = google_dns_managed_zone.google[each.key].name
  name         = "*.${each.value.dns_name}"
  type         = "CNAME"
  ttl          = 300
  rrdatas      = [each.value.target]
}

# Egress is denied by default, for every instance on the network; the allow rules below open
# exactly what the worker service account needs. All rules log, so a denied connection shows up
# in Cloud Logging with the rule's name.
resource "google_compute_firewall" "deny_all_egress" {
  project            = var.project_id
  name               = "${var.network_name}-deny-all-egress"
  network            = google_compute_network.this.id
  description        = "Default deny for egress; narrower allow rules win by priority."
  direction          = "EGRESS"
  priority           = 65534
  destination_ranges = ["0.0.0.0/0"]

  deny {
    protocol = "all"
  }

  log_config {
    metadata = "INCLUDE_ALL_METADATA"
  }
}

resource "google_compute_firewall" "allow_google_apis_egress" {
  project                 = var.project_id
  name                    = "${var.network_name}-allow-google-apis-egress"
  network                 = google_compute_network.this.id
  description             = "Workers to private.googleapis.com over HTTPS."
  direction               = "EGRESS"
  priority                = 1000
  destination_ranges      = [local.google_api_range]
  target_service_accounts = local.worker_sa

  allow {
    protocol = "tcp"
    ports    = ["443"]
  }

  log_config {
    metadata = "INCLUDE_ALL_METADATA"
  }
}

resource "google_compute_firewall" "allow_worker_egress" {
  project                 = var.project_id
  name                    = "${var.network_name}-allow-worker-egress"
  network                 = google_compute_network.this.id
  description             = "Workers to other workers in the subnet, Dataflow ports only."
  direction               = "EGRESS"
  priority                = 1000
  destination_ranges      = [var.subnet_cidr]
  target_service_accounts = local.worker_sa

  allow {
    protocol = "tcp"
    ports    = local.worker_ports
  }

  log_config {
    metadata = "INCLUDE_ALL_METADATA"
  }
}

# The one ingress rule; all other ingress hits the VPC's implied deny.
resource "google_compute_firewall" "allow_worker_ingress" {
  project                 = var.project_id
  name                    = "${var.network_name}-allow-worker-ingress"
  network                 = google_compute_network.this.id
  description             = "Worker-to-worker traffic on the Dataflow ports only."
  direction               = "INGRESS"
  priority                = 1000
  source_service_accounts = local.worker_sa
  target_service_accounts = local.worker_sa

  allow {
    protocol = "tcp"
    ports    = local.worker_ports
  }

  log_config {
    metadata = "INCLUDE_ALL_METADATA"
  }
}
