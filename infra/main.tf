locals {
  bucket_prefix = coalesce(var.bucket_prefix, "${var.project_id}-mnistkit")
  labels        = merge({ app = "mnist-dataflow-kit", managed-by = "terraform" }, var.labels)
}

module "services" {
  source               = "./modules/services"
  project_id           = var.project_id
  gcs_data_access_logs = var.gcs_data_access_logs
}

# Grants the service agents use of the CMEK key before anything is encrypted with it: the
# modules below take the key from this module's output, not from the variable.
module "cmek" {
  source       = "./modules/cmek"
  project_id   = var.project_id
  kms_key_name = var.kms_key_name

  depends_on = [module.services]
}

module "storage" {
  source        = "./modules/storage"
  project_id    = var.project_id
  location      = var.region
  name_prefix   = local.bucket_prefix
  kms_key_name  = module.cmek.kms_key_name
  force_destroy = var.force_destroy
  labels        = local.labels

  depends_on = [module.services]
}

module "bigquery" {
  source                     = "./modules/bigquery"
  project_id                 = var.project_id
  location                   = var.region
  dataset_id                 = var.dataset_id
  kms_key_name               = module.cmek.kms_key_name
  delete_contents_on_destroy = var.force_destroy
  deletion_protection        = !var.force_destroy
  labels                     = local.labels

  depends_on = [module.services]
}

module "artifact_registry" {
  source        = "./modules/artifact_registry"
  project_id    = var.project_id
  location      = var.region
  repository_id = var.artifact_registry_repository
  kms_key_name  = module.cmek.kms_key_name
  labels        = local.labels

  depends_on = [module.services]
}

module "pubsub" {
  source                = "./modules/pubsub"
  project_id            = var.project_id
  input_topic_name      = var.pubsub_topic_name
  max_delivery_attempts = var.pubsub_max_delivery_attempts
  kms_key_name          = module.cmek.kms_key_name
  labels                = local.labels

  depends_on = [module.services]
}

# Every grant is made in modules/iam, from the resources named here by purpose; tests/infra
# evaluates this block as written and checks each identity's exact roles per resource.
module "iam" {
  source                = "./modules/iam"
  project_id            = var.project_id
  worker_account_id     = var.worker_account_id
  training_account_id   = var.training_account_id
  cloudbuild_account_id = var.cloudbuild_account_id
  buckets = {
    models   = module.storage.bucket_names.models
    data     = module.storage.bucket_names.data
    dataflow = module.storage.bucket_names.dataflow
  }
  prefixes = {
    outputs      = module.storage.prefixes.outputs
    temp         = module.storage.prefixes.temp
    build_source = module.storage.prefixes.build_source
  }
  dataset_id = module.bigquery.dataset_id
  tables = {
    input              = module.bigquery.table_ids.input
    input_bytes        = module.bigquery.table_ids.input_bytes
    predictions        = module.bigquery.table_ids.predictions
    stream_predictions = module.bigquery.table_ids.stream_predictions
  }
  artifact_registry = {
    location   = module.artifact_registry.location
    repository = module.artifact_registry.repository_id
  }
  pubsub = {
    input_topic              = module.pubsub.names.input_topic
    input_subscription       = module.pubsub.names.input_subscription
    dead_letter_topic        = module.pubsub.names.dead_letter_topic
    dead_letter_subscription = module.pubsub.names.dead_letter_subscription
  }
  launcher_members         = var.launcher_members
  model_publisher_members  = var.model_publisher_members
  image_pusher_members     = var.image_pusher_members
  bigquery_direct_read     = var.bigquery_direct_read
  serving_account_id       = var.serving_account_id
  endpoint_invoker_members = var.endpoint_invoker_members
  endpoint_invoker_role_id = var.endpoint_invoker_role_id

  depends_on = [module.services]
}

# The endpoint only: `mnistkit endpoint deploy` puts a model on it (Terraform cannot: the
# provider's deployed_models is output-only). Who may call it is granted in modules/iam.
module "vertex_endpoint" {
  source       = "./modules/vertex_endpoint"
  project_id   = var.project_id
  region       = var.region
  endpoint_id  = var.vertex_endpoint_id
  kms_key_name = module.cmek.kms_key_name
  labels       = local.labels

  depends_on = [module.services]
}

module "network" {
  source                 = "./modules/network"
  project_id             = var.project_id
  region                 = var.region
  network_name           = var.network_name
  subnet_cidr            = var.subnet_cidr
  worker_service_account = module.iam.worker_service_account

  depends_on = [module.services]
}

module "gpu_placement" {
  source               = "./modules/gpu_placement"
  region               = var.region
  gpu_type             = var.gpu_type
  gpu_count            = var.gpu_count
  machine_type         = var.worker_machine_type
  zone                 = var.worker_zone
  max_workers          = var.max_workers
  additional_gpu_zones = var.additional_gpu_zones
  # The module's quota_limits output fails the plan when these limits are below
  # max_workers x gpu_count, naming the quota to raise.
  quota_dimensions_infos = { for k, q in data.google_cloud_quotas_quota_info.gpu : k => q.dimensions_infos }
}

# Limits only: current usage is not exposed here, so the CLI checks it again before launch.
data "google_cloud_quotas_quota_info" "gpu" {
  for_each = { for k, id in module.gpu_placement.quota_ids : k => id if var.check_gpu_quota }

  parent   = "projects/${var.project_id}"
  service  = "compute.googleapis.com"
  quota_id = each.value

  # The Cloud Quotas API must be on before the first read.
  depends_on = [module.services]
}
