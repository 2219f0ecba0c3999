# Harness applied for real by test_tf_modules.py through pytest-terraform. It wires
# gpu_placement the way the root module does (one lookup per quota id the module asks for, fed
# back in as quota_dimensions_infos), with terraform_data standing in for the
# google_cloud_quotas_quota_info data source that needs the google provider.

module "gpu" {
  source = "../../../../infra/modules/gpu_placement"

  region                 = "europe-west4"
  gpu_type               = "nvidia-l4"
  gpu_count              = 2
  max_workers            = 3
  quota_dimensions_infos = { for k, q in terraform_data.quota : k => q.output }
}

resource "terraform_data" "quota" {
  for_each = module.gpu.quota_ids

  # Shaped like the provider's dimensions_infos: the region's own limit first, then the default.
  input = [
    { dimensions = { region = "europe-west4" }, details = [{ value = "8" }], applicable_locations = ["europe-west4"] },
    { dimensions = {}, details = [{ value = "2" }], applicable_locations = ["us-central1"] },
  ]
}

output "gpu" {
  value = module.gpu.gpu
}

output "quota_ids" {
  value = module.gpu.quota_ids
}

output "quota_limits" {
  value = module.gpu.quota_limits
}

output "required_gpus" {
  value = module.gpu.required_gpus
}
