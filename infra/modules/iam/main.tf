resource "google_service_account" "worker" {
  project      = var.project_id
  account_id   = var.worker_account_id
  display_name = "mnist-dataflow-kit Dataflow worker"
  description  = "Runs Dataflow workers of the mnist-dataflow-kit; no keys, access granted per resource."
}

# Depends on variables only (tests/infra evaluates this block with `terraform console`).
locals {
  # Project-wide grants exist only where no narrower scope does: Dataflow jobs, BigQuery jobs
  # and BigQuery Storage Read API sessions are project resources. Everything else is granted on
  # the bucket, dataset or repo.
  project_roles = {
    worker = concat(
      ["roles/dataflow.worker", "roles/bigquery.jobUser"],
      # ReadFromBigQuery(method=DIRECT_READ) creates read sessions (bigquery.readsessions.create
      # on the project); with EXPORT, jobUser plus dataEditor on the dataset are enough.
      var.bigquery_direct_read ? ["roles/bigquery.readSessionUser"] : [],
    )
    launcher = ["roles/dataflow.developer", "roles/bigquery.jobUser"]
  }
}

locals {
  worker = "serviceAccount:${google_service_account.worker.email}"

  # Launchers stage code, upload inputs and models, and read results: objectAdmin everywhere.
  bucket_roles = merge(
    { for k, b in var.object_admin_buckets : k => { bucket = b, worker = "roles/storage.objectAdmin" } },
    { for k, b in var.object_viewer_buckets : k => { bucket = b, worker = "roles/storage.objectViewer" } },
  )

  # Keyed by "<who> <role or bucket>", never by computed values, so adding a launcher
  # never re-creates the other bindings.
  project_bindings = merge(
    { for r in local.project_roles.worker : "worker ${r}" => { member = local.worker, role = r } },
    { for p in setproduct(var.launcher_members, local.project_roles.launcher) : "${p[0]} ${p[1]}" => { member = p[0], role = p[1] } },
  )
  bucket_bindings = merge(
    { for k, b in local.bucket_roles : "worker ${k}" => { bucket = b.bucket, member = local.worker, role = b.worker } },
    {
      for p in setproduct(var.launcher_members, keys(local.bucket_roles)) : "${p[0]} ${p[1]}" => {
        bucket = local.bucket_roles[p[1]].bucket, member = p[0], role = "roles/storage.objectAdmin"
      }
    },
  )
  dataset_members = merge({ worker = local.worker }, { for m in var.launcher_members : m => m })
  # Workers pull the image; launchers build and push it.
  repository_bindings = merge(
    { worker = { member = local.worker, role = "roles/artifactregistry.reader" } },
    { for m in var.launcher_members : m => { member = m, role = "roles/artifactregistry.writer" } },
  )
}

resource "google_project_iam_member" "this" {
  for_each = local.project_bindings

  project = var.project_id
  role    = each.value.role
  member  = each.value.member
}

resource "google_storage_bucket_iam_member" "this" {
  for_each = local.bucket_bindings

  bucket = each.value.bucket
  role   = each.value.role
  member = each.value.member
}

resource "google_bigquery_dataset_iam_member" "editor" {
  for_each = local.dataset_members

  project    = var.project_id
  dataset_id = var.dataset_id
  role       = "roles/bigquery.dataEditor"
  member     = each.value
}

resource "google_artifact_registry_repository_iam_member" "this" {
  for_each = local.repository_bindings

  project    = var.project_id
  location   = var.artifact_registry_location
  repository = var.artifact_registry_repository
  role       = each.value.role
  member     = each.value.member
}

# Launching a job as the worker SA needs actAs on that one account, not on the project.
resource "google_service_account_iam_member" "launcher" {
  for_each = var.launcher_members

  service_account_id = google_service_account.worker.name
  role               = "roles/iam.serviceAccountUser"
  member             = each.value
}
