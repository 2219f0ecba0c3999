terraform {
  required_version = ">= 1.9"

  # Bucket and prefix come from `make deploy` (-backend-config): backend blocks cannot read
  # variables. `make bootstrap-state` creates the versioned bucket.
  backend "gcs" {}

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.0, < 8"
    }
  }
}

provider "google" {
  project = var.project_id
  region  = var.region
  # The Cloud Quotas API refuses end-user credentials without a quota project; bill those
  # calls to the kit's project instead of gcloud's default one.
  user_project_override = true
  billing_project       = var.project_id
}
