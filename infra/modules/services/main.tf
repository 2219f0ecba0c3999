resource "google_project_service" "this" {
  for_each = var.services

  project = var.project_id
  service = each.value

  # Other workloads in the project may rely on these APIs; destroying the kit must not
  # switch them off.
  disable_on_destroy         = false
  disable_dependent_services = false
}
